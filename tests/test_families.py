"""The lock-free metric families expose exactly what prometheus_client's own would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from router.telemetry.families import FastCounter, FastGauge, FastHistogram

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5)
LABELS = st.sampled_from(["a", "b", "c"])
AMOUNTS = st.floats(min_value=0, max_value=1e6, allow_nan=False)
VALUES = st.one_of(
    st.floats(min_value=-10, max_value=100, allow_nan=False), st.sampled_from(BUCKETS)
)


def samples(registry: CollectorRegistry) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample but the ``_created`` ones (the fast families have none)."""
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    )


@given(st.lists(st.tuples(LABELS, LABELS, AMOUNTS), max_size=30))
def test_a_fast_counter_reads_as_a_prometheus_counter(incs: list[tuple[str, str, float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = FastCounter("x_total", "doc", ["k", "v"], ours)
    slow = Counter("x_total", "doc", ["k", "v"], registry=theirs)
    for k, v, amount in incs:
        fast.labels(k, v).inc(amount)
        slow.labels(k, v).inc(amount)
    assert samples(ours) == samples(theirs)


@given(st.lists(st.tuples(LABELS, VALUES), max_size=40))
def test_a_fast_histogram_reads_as_a_prometheus_histogram(
    observations: list[tuple[str, float]],
) -> None:
    """Bucket bounds are inclusive (a value equal to a bound counts in it), counts are
    cumulative, +Inf holds everything, sum and count agree."""
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = FastHistogram("h_seconds", "doc", ["k"], ours, BUCKETS)
    slow = Histogram("h_seconds", "doc", ["k"], registry=theirs, buckets=BUCKETS)
    for k, value in observations:
        fast.labels(k).observe(value)
        slow.labels(k).observe(value)
    got, want = samples(ours), samples(theirs)
    assert [(n, lab) for n, lab, _ in got] == [(n, lab) for n, lab, _ in want]
    assert [v for *_, v in got] == pytest.approx([v for *_, v in want])


def test_a_fast_gauge_goes_up_and_down() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast, slow = FastGauge("g", "doc", ours), Gauge("g", "doc", registry=theirs)
    for gauge in (fast, slow):
        gauge.inc()
        gauge.inc(3)
        gauge.dec()
    assert samples(ours) == samples(theirs) == [("g", (), 3.0)]


def test_an_exemplar_is_kept_for_its_bucket_in_openmetrics() -> None:
    registry = CollectorRegistry()
    fast = FastHistogram("lat_seconds", "doc", ["k"], registry, BUCKETS)
    fast.labels("a").observe(0.07, {"trace_id": "abc123"})
    fast.labels("a").observe(0.02)  # no exemplar: the 0.05 bucket has none
    text = openmetrics_latest(registry).decode()  # type: ignore[no-untyped-call, unused-ignore]
    [line] = [x for x in text.splitlines() if 'le="0.1"' in x]
    assert '# {trace_id="abc123"} 0.07' in line
    assert "#" not in next(x for x in text.splitlines() if 'le="0.05"' in x)


@pytest.mark.parametrize(
    "make",
    [
        lambda r: FastCounter("dup_total", "doc", [], r),
        lambda r: FastHistogram("dup", "doc", [], r, BUCKETS),
    ],
)
def test_a_name_registered_twice_is_refused(make: Any) -> None:
    registry = CollectorRegistry()
    make(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        make(registry)


def test_wrong_labels_and_bad_buckets_say_what_is_wrong() -> None:
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="takes labels"):
        FastCounter("c_total", "doc", ["a", "b"], registry).labels("only-one")
    with pytest.raises(ValueError, match="increasing"):
        FastHistogram("h", "doc", [], registry, (1.0, 0.5))

"""Metric families for the per-send path: plain numbers while sending, Prometheus families at
scrape time.

prometheus_client's ``Counter``/``Histogram`` take a lock on every update (made for threaded
servers): with pre-bound children a send's dozen updates still cost ~7 us. These families keep
each labelled child's value in a slotted attribute (``inc`` is one addition, ``observe`` one
bisect and two additions) and build the exposition in :meth:`collect`, which the registry calls
when scraped. Same names, labels, buckets and exemplars as the library's families; no
``_created`` series.

One writer: every update comes from the router's event loop (one ``MetricsSink`` per registry,
one router per sink), so no update is lost without a lock. A scrape from another thread reads
floats that CPython stores atomically; a histogram read mid-update may show one observation in
its count and not yet in its sum, as prometheus_client's own histogram can.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (never negative: callers pass counts and costs)."""
        self.value += amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float, exemplar: dict[str, str] | None = None) -> None:
        """Count ``value`` in the first bucket whose bound is >= it; ``exemplar`` (labels, e.g.
        a trace id) is kept for that bucket, the latest one winning."""
        i = bisect_left(self.bounds, value)
        self.counts[i] += 1
        self.sum += value
        if exemplar:
            self.exemplars[i] = Exemplar(exemplar, value, time.time())


Child = TypeVar("Child")


class _Family(Generic[Child]):
    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        registry.register(self)  # type: ignore[arg-type]

    def labels(self, *values: str) -> Child:
        """The child of these label values (made on first use)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self._children[values] = self._new_child()
        return child

    def describe(self) -> list[Metric]:
        return [self._empty()]

    def _new_child(self) -> Child:
        raise NotImplementedError

    def _empty(self) -> Metric:
        raise NotImplementedError


class FastCounter(_Family[CounterChild]):
    """A labelled counter: ``labels(...)`` returns a child to ``inc``."""

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def _empty(self) -> Metric:
        return CounterMetricFamily(self.name, self.doc, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class FastHistogram(_Family[HistogramChild]):
    """A labelled histogram with fixed buckets: ``labels(...)`` returns a child to ``observe``."""

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"{name}: buckets must be distinct and increasing")
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        super().__init__(name, doc, labelnames, registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def _empty(self) -> Metric:
        return HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in list(self._children.items()):
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            total = 0
            for le, n, exemplar in zip(self._le, list(child.counts), child.exemplars, strict=True):
                total += n
                buckets.append((le, total) if exemplar is None else (le, total, exemplar))
            family.add_metric(values, buckets, child.sum)
        yield family


class FastGauge(_Family[None]):
    """An unlabelled gauge moved up and down (sends in flight)."""

    def __init__(self, name: str, doc: str, registry: CollectorRegistry) -> None:
        self.value = 0.0
        super().__init__(name, doc, (), registry)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def _empty(self) -> Metric:
        return GaugeMetricFamily(self.name, self.doc)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.doc, value=self.value)

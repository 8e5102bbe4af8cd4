"""Every PromQL expression the dashboard and the rules use, in one place.

The dashboard generator builds its panels from :data:`PANELS`; the real-Prometheus test
evaluates :func:`all_expressions` and checks that each returns data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from router.telemetry.metrics import MetricsSink

RULES_DIR = Path(__file__).parent / "rules"
AVAILABILITY_BUDGET = 0.005  # SLO 99.5%
LATENCY_BUDGET = 0.01  # SLO 99% of sends within 1 s


@dataclass(frozen=True, slots=True)
class PanelSpec:
    row: str
    title: str
    kind: str  # "stat" or "timeseries"
    unit: str
    targets: tuple[tuple[str, str], ...]  # (expr, legend)
    description: str = ""
    # (from value, colour), ascending; the first step's value is None (everything below)
    thresholds: tuple[tuple[float | None, str], ...] = ()


# Dashboard variables: every raw ``smsrouter_*`` selector of a panel is scoped to them (the
# recording rules' aggregates are not), and ``[5m]`` rate windows become ``$__rate_interval``.
VARIABLES: dict[str, str] = {
    "instance": "label_values(smsrouter_send_recipients_total, instance)",
    "provider": "label_values(smsrouter_provider_attempts_total, provider)",
    "scene": "label_values(smsrouter_send_recipients_total, scene)",
}
_RAW_SELECTOR = re.compile(r"\b(smsrouter_[a-z0-9_]+)(\{[^}]*\})?")


def _label_sets() -> dict[str, frozenset[str]]:
    """Each exported series name's labels, read off a real registry of the router's metrics."""
    registry = CollectorRegistry()
    sink = MetricsSink(registry, providers=["p"], scenes=["s"])
    out: dict[str, frozenset[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, frozenset(sample.labels))
    # Families with no sample until first set (a balance gauge): their declared labels.
    for metric in vars(sink.metrics).values():
        name, names = getattr(metric, "_name", None), getattr(metric, "_labelnames", None)
        if isinstance(name, str) and isinstance(names, tuple):
            for suffix in ("", "_total", "_bucket", "_count", "_sum"):
                out.setdefault(name + suffix, frozenset(names))
    return out


def scoped(expr: str, labels: dict[str, frozenset[str]] | None = None) -> str:
    """``expr`` as a panel shows it: raw selectors filtered by the variables they carry."""
    labels = _label_sets() if labels is None else labels

    def scope(match: re.Match[str]) -> str:
        name, inner = match.group(1), (match.group(2) or "{}")[1:-1]
        extra = ['instance=~"$instance"']
        extra += [f'{v}=~"${v}"' for v in ("provider", "scene") if v in labels.get(name, ())]
        return name + "{" + ", ".join([*([inner] if inner else []), *extra]) + "}"

    return _RAW_SELECTOR.sub(scope, expr).replace("[5m]", "[$__rate_interval]")


def evaluable(expr: str) -> str:
    """A panel expression with its variables as "All" would set them, for a real Prometheus."""
    out = expr.replace("$__rate_interval", "1m")
    for name in VARIABLES:
        out = out.replace(f'"${name}"', '".*"')
    return out


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "SLO overview",
        "Availability SLI (5m)",
        "stat",
        "percentunit",
        (("1 - smsrouter:availability_errors:ratio_rate5m", "availability"),),
        "Accepted recipients / answerable recipients (accepted, rejected, unknown, refused; "
        "invalid, throttled and unroutable excluded). SLO 99.5%.",
        thresholds=((None, "red"), (0.995, "green")),
    ),
    PanelSpec(
        "SLO overview",
        "Latency SLI (5m)",
        "stat",
        "percentunit",
        (("1 - smsrouter:latency_errors:ratio_rate5m", "within 1 s"),),
        "Sends finished within 1 s. SLO 99%.",
        thresholds=((None, "red"), (0.99, "green")),
    ),
    PanelSpec(
        "SLO overview",
        "Error budget left (30d)",
        "stat",
        "percentunit",
        (
            ("smsrouter:availability_error_budget_remaining:ratio30d", "availability"),
            ("smsrouter:latency_error_budget_remaining:ratio30d", "latency"),
            ("smsrouter:delivery_error_budget_remaining:ratio30d", "delivery"),
        ),
        "Share of the 30-day error budget not yet spent, clamped to [0, 1] (0: overspent).",
        thresholds=((None, "red"), (0.25, "orange"), (0.5, "green")),
    ),
    PanelSpec(
        "SLO overview",
        "Delivery SLI (1d)",
        "stat",
        "percentunit",
        (("1 - smsrouter:delivery_errors:ratio_rate1d", "delivered"),),
        "Deduplicated delivery receipts that say delivered, all providers. SLO 95%.",
        thresholds=((None, "red"), (0.95, "green")),
    ),
    PanelSpec(
        "SLO overview",
        "Burn rate",
        "timeseries",
        "short",
        (
            (
                f"smsrouter:availability_errors:ratio_rate5m / {AVAILABILITY_BUDGET}",
                "availability 5m",
            ),
            (
                f"smsrouter:availability_errors:ratio_rate1h / {AVAILABILITY_BUDGET}",
                "availability 1h",
            ),
            (f"smsrouter:latency_errors:ratio_rate5m / {LATENCY_BUDGET}", "latency 5m"),
            (f"smsrouter:latency_errors:ratio_rate1h / {LATENCY_BUDGET}", "latency 1h"),
        ),
        "1 = spending the budget exactly over the SLO period; pages at 14.4 and 6.",
        thresholds=((None, "green"), (6.0, "orange"), (14.4, "red")),
    ),
    PanelSpec(
        "SLO overview",
        "Send latency",
        "timeseries",
        "s",
        (
            (
                "histogram_quantile(0.5, sum by (le) "
                "(rate(smsrouter_send_duration_seconds_bucket[5m])))",
                "p50",
            ),
            (
                "histogram_quantile(0.99, sum by (le) "
                "(rate(smsrouter_send_duration_seconds_bucket[5m])))",
                "p99",
            ),
        ),
    ),
    PanelSpec(
        "SLO overview",
        "Sends in flight",
        "timeseries",
        "short",
        (("sum(smsrouter_inflight_sends)", "in flight"),),
    ),
    PanelSpec(
        "Providers",
        "Attempts by outcome",
        "timeseries",
        "reqps",
        (
            (
                "sum by (provider, outcome) (rate(smsrouter_provider_attempts_total[5m]))",
                "{{provider}} {{outcome}}",
            ),
        ),
    ),
    PanelSpec(
        "Providers",
        "Failed attempts by error class",
        "timeseries",
        "reqps",
        (
            (
                "sum by (provider, error_class) "
                '(rate(smsrouter_provider_attempts_total{outcome!="accepted"}[5m]))',
                "{{provider}} {{error_class}}",
            ),
        ),
        "Which provider is failing, and how: connect, timeout, http_5xx, refused ...",
    ),
    PanelSpec(
        "Providers",
        "Attempt latency",
        "timeseries",
        "s",
        (
            (
                "histogram_quantile(0.5, sum by (provider, le) "
                "(rate(smsrouter_provider_attempt_duration_seconds_bucket[5m])))",
                "{{provider}} p50",
            ),
            (
                "histogram_quantile(0.99, sum by (provider, le) "
                "(rate(smsrouter_provider_attempt_duration_seconds_bucket[5m])))",
                "{{provider}} p99",
            ),
        ),
    ),
    PanelSpec(
        "Providers",
        "Breaker state",
        "timeseries",
        "short",
        (("max by (provider) (smsrouter_breaker_state)", "{{provider}}"),),
        "0 closed, 1 half-open, 2 open.",
    ),
    PanelSpec(
        "Providers",
        "Failovers",
        "timeseries",
        "short",
        (
            (
                "sum by (from_provider, to_provider) (rate(smsrouter_failovers_total[5m]))",
                "{{from_provider}} -> {{to_provider}}",
            ),
            ("sum by (provider) (rate(smsrouter_panic_sends_total[5m]))", "panic {{provider}}"),
        ),
    ),
    PanelSpec(
        "Providers",
        "Delivery rate",
        "timeseries",
        "percentunit",
        (
            (
                'sum by (provider) (rate(smsrouter_receipts_total{status="delivered"}[15m])) '
                "/ sum by (provider) "
                '(rate(smsrouter_receipts_total{status=~"delivered|failed"}[15m]))',
                "{{provider}}",
            ),
        ),
    ),
    PanelSpec(
        "Providers",
        "Unknown outcomes settled",
        "timeseries",
        "short",
        (
            (
                "sum by (provider, method, outcome) "
                "(rate(smsrouter_unknown_resolutions_total[5m]))",
                "{{provider}} {{method}} {{outcome}}",
            ),
        ),
        "Recipients of unknown attempts after a way to know was tried: Ronglian resends under "
        "the same reqId (taken: the first had arrived; sent: it had not, the resend went), v1 "
        "pulls /report. 'unknown' stays unknown; Baofoo has no way to know.",
    ),
    PanelSpec(
        "Providers",
        "Messages per coalesced request",
        "timeseries",
        "short",
        (
            (
                "sum by (provider) (rate(smsrouter_coalesced_messages_total[5m])) "
                "/ sum by (provider) (rate(smsrouter_coalesced_requests_total[5m]))",
                "{{provider}}",
            ),
        ),
        "Only for providers with coalesce_ms > 0.",
    ),
    PanelSpec(
        "Providers",
        "Cost (last hour)",
        "timeseries",
        "short",
        (("sum by (provider) (increase(smsrouter_cost_total[1h]))", "{{provider}}"),),
    ),
    PanelSpec(
        "Providers",
        "Balance",
        "timeseries",
        "short",
        (("min by (provider) (smsrouter_provider_balance)", "{{provider}}"),),
    ),
    PanelSpec(
        "Traffic",
        "Recipients by status",
        "timeseries",
        "short",
        (("sum by (status) (rate(smsrouter_send_recipients_total[5m]))", "{{status}}"),),
        "Per second. accepted is good; rejected, unknown and refused burn the availability "
        "budget; invalid, throttled and unroutable are the caller's and do not.",
    ),
    PanelSpec(
        "Traffic",
        "Send calls by outcome and refusals",
        "timeseries",
        "short",
        (
            ("sum by (outcome) (rate(smsrouter_send_requests_total[5m]))", "{{outcome}}"),
            (
                "sum by (reason) (rate(smsrouter_send_refusals_total[5m]))",
                "refused: {{reason}}",
            ),
        ),
        "Every Router.send call and sidecar request; refusals by reason (store, bad message, "
        "key conflict, pending).",
    ),
    PanelSpec(
        "Traffic",
        "HTTP requests (sidecar)",
        "timeseries",
        "reqps",
        (
            (
                "sum by (route, status) (rate(smsrouter_http_requests_total[5m]))",
                "{{route}} {{status}}",
            ),
        ),
        "Every request the sidecar answered, by route template and status.",
    ),
    PanelSpec(
        "Traffic",
        "Inbound replies (MO)",
        "timeseries",
        "short",
        (
            (
                "sum by (provider, outcome) (rate(smsrouter_inbound_messages_total[5m]))",
                "{{provider}} {{outcome}}",
            ),
        ),
        "Replies handed to inbound.destination; failed ones were answered 503 to the provider.",
    ),
    PanelSpec(
        "Traffic",
        "Idempotency",
        "timeseries",
        "short",
        (("sum by (result) (rate(smsrouter_dedupe_total[5m]))", "{{result}}"),),
        "Keyed sends: new, replayed (answered from the record), conflict, pending.",
    ),
    PanelSpec(
        "Traffic",
        "SMS parts",
        "timeseries",
        "short",
        (("sum by (provider) (rate(smsrouter_message_parts_total[5m]))", "{{provider}}"),),
        "Billed parts sent per second (a long message is several).",
    ),
    PanelSpec(
        "Providers",
        "Recipients per provider outcome",
        "timeseries",
        "short",
        (
            (
                "sum by (provider, outcome) "
                "(rate(smsrouter_provider_attempt_recipients_total[5m]))",
                "{{provider}} {{outcome}}",
            ),
        ),
    ),
    PanelSpec(
        "Providers",
        "Batch size",
        "timeseries",
        "short",
        (
            (
                "histogram_quantile(0.5, sum by (provider, le) "
                "(rate(smsrouter_batch_size_recipients_bucket[5m])))",
                "p50 {{provider}}",
            ),
            (
                "histogram_quantile(0.99, sum by (provider, le) "
                "(rate(smsrouter_batch_size_recipients_bucket[5m])))",
                "p99 {{provider}}",
            ),
        ),
        "Recipients per provider request.",
    ),
    PanelSpec(
        "Providers",
        "Breaker transitions",
        "timeseries",
        "short",
        (
            (
                "sum by (provider, state) (increase(smsrouter_breaker_transitions_total[5m]))",
                "{{provider}} -> {{state}}",
            ),
        ),
    ),
    PanelSpec(
        "Receipts",
        "Receipts per accepted recipient",
        "timeseries",
        "percentunit",
        (
            (
                "sum by (provider) (rate(smsrouter_receipts_total[15m])) / sum by (provider) "
                '(rate(smsrouter_provider_attempt_recipients_total{outcome="accepted"}[15m]))',
                "{{provider}}",
            ),
        ),
        "About 1 once receipts have caught up (deduplicated: a receipt pushed and pulled "
        "counts once); well below 1: receipts are lost or late; Baofoo sends none.",
    ),
    PanelSpec(
        "Receipts",
        "Receipt delay",
        "timeseries",
        "s",
        (
            (
                "histogram_quantile(0.5, sum by (provider, le) "
                "(rate(smsrouter_receipt_delay_seconds_bucket[5m])))",
                "p50 {{provider}}",
            ),
            (
                "histogram_quantile(0.99, sum by (provider, le) "
                "(rate(smsrouter_receipt_delay_seconds_bucket[5m])))",
                "p99 {{provider}}",
            ),
        ),
        "From acceptance to the delivery receipt.",
    ),
    PanelSpec(
        "Operations",
        "Operator attention",
        "timeseries",
        "short",
        (
            (
                "sum by (provider) (increase(smsrouter_failover_budget_exhausted_total[5m]))",
                "failover budget exhausted {{provider}}",
            ),
            (
                "sum by (provider, reason) (increase(smsrouter_callback_rejections_total[5m]))",
                "callback rejected {{provider}} {{reason}}",
            ),
            (
                "sum by (provider) (increase(smsrouter_credentials_refusals_total[5m]))",
                "credentials refused {{provider}}",
            ),
        ),
        "Events an operator acts on; each has an alert or a log line.",
    ),
    PanelSpec(
        "Operations",
        "Process",
        "timeseries",
        "bytes",
        (
            (
                'process_resident_memory_bytes{job="sms-router", instance=~"$instance"}',
                "{{instance}}",
            ),
        ),
        "Resident memory per instance.",
    ),
)


def dashboard_expressions() -> list[str]:
    """Every panel query as the dashboard holds it (variables unresolved)."""
    labels = _label_sets()
    return [scoped(expr, labels) for panel in PANELS for expr, _ in panel.targets]


def rule_expressions() -> list[str]:
    out = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out += [rule["expr"].strip() for rule in group["rules"]]
    return out


def all_expressions() -> list[str]:
    """Every expression a real Prometheus must answer: the panels' (variables set to All)
    and the rules'."""
    return [evaluable(e) for e in dashboard_expressions()] + rule_expressions()

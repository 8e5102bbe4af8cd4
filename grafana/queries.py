"""Every PromQL expression the dashboard and the rules use, in one place.

The dashboard generator builds its panels from :data:`PANELS`; the real-Prometheus test
evaluates :func:`all_expressions` and checks that each returns data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

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


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "SLO overview",
        "Availability SLI (5m)",
        "stat",
        "percentunit",
        (("1 - smsrouter:availability_errors:ratio_rate5m", "availability"),),
        "Accepted recipients / answerable recipients (accepted, rejected, unknown, refused; "
        "invalid, throttled and unroutable excluded). SLO 99.5%.",
    ),
    PanelSpec(
        "SLO overview",
        "Latency SLI (5m)",
        "stat",
        "percentunit",
        (("1 - smsrouter:latency_errors:ratio_rate5m", "within 1 s"),),
        "Sends finished within 1 s. SLO 99%.",
    ),
    PanelSpec(
        "SLO overview",
        "Error budget left (30d)",
        "stat",
        "percentunit",
        (
            ("smsrouter:availability_error_budget_remaining:ratio30d", "availability"),
            ("smsrouter:latency_error_budget_remaining:ratio30d", "latency"),
        ),
        "Share of the 30-day error budget not yet spent, clamped to [0, 1] (0: overspent).",
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
)


def dashboard_expressions() -> list[str]:
    return [expr for panel in PANELS for expr, _ in panel.targets]


def rule_expressions() -> list[str]:
    out = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out += [rule["expr"].strip() for rule in group["rules"]]
    return out


def all_expressions() -> list[str]:
    return dashboard_expressions() + rule_expressions()

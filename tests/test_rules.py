"""Rules and dashboard: promtool checks and unit tests, and the committed JSON is current."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from grafana import build_dashboard
from tests.redis_server import require

ROOT = Path(__file__).parent.parent
RULES = ROOT / "grafana" / "rules"
RULE_TESTS = sorted((RULES / "tests").glob("*.yml"))


def run(*args: str, cwd: Path = RULES) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def alert_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((RULES / "slo-alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    promtool = require("promtool")
    out = run(promtool, "check", "rules", "slo-recording.yml", "slo-alerts.yml")
    assert "36 rules found" in out
    assert "17 rules found" in out


def test_every_alert_fires_and_stays_quiet_when_it_should() -> None:
    promtool = require("promtool")
    assert len(RULE_TESTS) >= 2
    out = run(promtool, "test", "rules", *(p.name for p in RULE_TESTS), cwd=RULES / "tests")
    assert out.count("SUCCESS") == len(RULE_TESTS), out
    # Every alert appears in a firing expectation (exp_labels) and in a quiet one (exp_alerts: []).
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {str(rule["alert"]) for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def test_every_alert_has_severity_summary_value_runbook_and_dashboard() -> None:
    uids = {
        json.loads(p.read_text(encoding="utf-8"))["uid"]
        for p in (ROOT / "grafana" / "dashboards").glob("*.json")
    }
    for rule in alert_rules():
        labels = rule["labels"]
        annotations = rule["annotations"]
        assert isinstance(labels, dict) and isinstance(annotations, dict), rule
        assert labels["severity"] in ("page", "ticket"), rule["alert"]
        assert annotations["summary"], rule["alert"]
        assert "$value" in annotations["description"], rule["alert"]
        assert annotations["dashboard"] in uids, rule["alert"]
        runbook = annotations["runbook_url"]
        assert runbook.startswith("docs/runbooks/") and "://" not in runbook, rule["alert"]
        text = (ROOT / runbook).read_text(encoding="utf-8")
        assert str(rule["alert"]) in text, f"{runbook} does not name {rule['alert']}"


def test_the_committed_dashboard_is_what_the_code_generates() -> None:
    assert build_dashboard.OUT.read_text(encoding="utf-8") == build_dashboard.render()


def test_every_metric_family_is_shown_or_alerted_on() -> None:
    """A family nobody can see is a family nobody will look at (issue 14 found 8 of 18)."""
    from prometheus_client import CollectorRegistry

    from grafana.queries import dashboard_expressions, rule_expressions
    from router.telemetry.metrics import MetricsSink

    registry = CollectorRegistry()
    MetricsSink(registry, providers=["p"], scenes=["s"])
    used = " ".join(dashboard_expressions() + rule_expressions())
    families = {f.name for f in registry.collect() if f.name.startswith("smsrouter_")}
    unseen = {name for name in families if name not in used} - {"smsrouter_build"}
    assert unseen == set(), f"no panel or rule for {sorted(unseen)}"


def test_panels_follow_the_variables() -> None:
    """Every raw selector is scoped to $instance (and $provider / $scene where the family has
    that label); rate windows follow $__rate_interval; every variable is used."""
    import re

    from grafana.queries import VARIABLES, dashboard_expressions

    exprs = dashboard_expressions()
    raw = [e for e in exprs if "smsrouter_" in e or "process_" in e]
    assert raw
    for expr in raw:
        for selector in re.findall(r"\b(?:smsrouter|process)_[a-z0-9_]+(\{[^}]*\})?", expr):
            assert 'instance=~"$instance"' in selector, expr
        assert "[5m]" not in expr, expr
    joined = " ".join(exprs)
    for name in VARIABLES:
        assert f'"${name}"' in joined, name
    assert 'provider=~"$provider"' in joined and 'scene=~"$scene"' in joined
    board = json.loads(build_dashboard.render())
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", *VARIABLES]
    steps = [
        p
        for p in board["panels"]
        if p.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
    ]
    assert len(steps) >= 4  # the SLO panels carry their objective as a threshold


def test_every_datasource_the_provisioning_names_is_provisioned() -> None:
    """The exemplar link names a datasource uid: it must exist (it once did not)."""
    provisioning = ROOT / "grafana" / "provisioning" / "datasources"
    sources = [
        ds
        for path in provisioning.glob("*.yaml")
        for ds in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    ]
    uids = {ds.get("uid") for ds in sources}
    for ds in sources:
        for link in (ds.get("jsonData") or {}).get("exemplarTraceIdDestinations", []):
            assert link["datasourceUid"] in uids, link

"""Rules and dashboard: promtool checks and unit tests, and the committed JSON is current."""

from __future__ import annotations

import subprocess
from pathlib import Path

from grafana import build_dashboard
from tests.redis_server import require

RULES = Path(__file__).parent.parent / "grafana" / "rules"


def run(*args: str, cwd: Path = RULES) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_checks_the_rules() -> None:
    promtool = require("promtool")
    out = run(promtool, "check", "rules", "slo-recording.yml", "slo-alerts.yml")
    assert "14 rules found" in out
    assert "6 rules found" in out


def test_every_alert_fires_and_stays_quiet_when_it_should() -> None:
    promtool = require("promtool")
    out = run(promtool, "test", "rules", "slo-alerts-test.yml", cwd=RULES / "tests")
    assert "SUCCESS" in out
    tested = (RULES / "tests" / "slo-alerts-test.yml").read_text(encoding="utf-8")
    alerts = (RULES / "slo-alerts.yml").read_text(encoding="utf-8")
    for line in alerts.splitlines():
        if line.strip().startswith("- alert:"):
            assert line.split(":", 1)[1].strip() in tested


def test_the_committed_dashboard_is_what_the_code_generates() -> None:
    assert build_dashboard.OUT.read_text(encoding="utf-8") == build_dashboard.render()

"""A real Prometheus scrapes the sidecar under a bounded load with injected faults; every
PromQL expression of the dashboard and the rules is evaluated through its HTTP API."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from grafana.queries import RULES_DIR, all_expressions
from providers.emulators._common import FaultSettings
from providers.emulators.server import free_port
from tests.redis_server import RedisServer, redis_server, require
from tests.sandbox import RunningSandbox, running_sandbox
from tests.sidecar_process import wait_ready

CONFIG = """
receipt_poll_s = 1
balance_poll_s = 1

[providers.baofoo]
type = "baofoo"
base_url = "{baofoo}"
user_name = "sandbox-user"
user_pass = "sandbox-pass"
weight = 1

[providers.v1platform]
type = "v1platform"
base_url = "{v1platform}"
account = "sandbox"
password = "sandbox-pass"
weight = 1

[templates.login_code]
content = "您的登录验证码为 {{code}},30分钟内有效,请勿泄露。"

[server.callback_tokens]
v1platform = "cb-secret"

[state]
backend = "redis"
redis_url = "{redis}"
"""


@dataclass
class Stack:
    sandbox: RunningSandbox
    sidecar: str
    prom: str
    process: subprocess.Popen[bytes]
    redis: RedisServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = require("prometheus")
    tmp = tmp_path_factory.mktemp("prom")
    with running_sandbox() as sandbox, redis_server(tmp) as redis:
        config = tmp / "router.toml"
        config.write_text(CONFIG.format(**sandbox.box.urls, redis=redis.url), encoding="utf-8")
        port = free_port()
        sidecar = subprocess.Popen(
            [sys.executable, "-m", "router", "serve", "--config", str(config), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        sidecar_url = f"http://127.0.0.1:{port}"
        prom_port = free_port()
        prom_config = tmp / "prometheus.yml"
        rules = [str(p) for p in sorted(RULES_DIR.glob("*.yml"))]
        prom_config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: {rules}\n"
            "scrape_configs:\n  - job_name: sms-router\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            encoding="utf-8",
        )
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        prom_url = f"http://127.0.0.1:{prom_port}"
        try:
            wait_ready(f"{sidecar_url}/readyz", sidecar)
            wait_ready(f"{prom_url}/-/ready", prom)
            yield Stack(sandbox, sidecar_url, prom_url, sidecar, redis)
        finally:
            for proc in (sidecar, prom):
                proc.terminate()
                proc.wait(15)


def send_load(sidecar: str, n: int, start: int) -> None:
    with httpx.Client(timeout=10) as client:
        for i in range(n):
            client.post(
                f"{sidecar}/v1/messages",
                json={
                    "mobiles": [f"139{start + i:08d}", "123"],
                    "scene": "login_code",
                    "params": {"code": str(i)},
                },
            )


def query(prom: str, expr: str) -> list[dict[str, object]]:
    answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, object]] = answer["data"]["result"]
    return result


def without_thresholds(expr: str) -> str:
    """An alert's condition minus its comparison: the signal it compares must have data."""
    return re.sub(r"\s*(>|<|==)\s*(\([^()]*\)|[\d.]+)", "", expr)


def eventually(prom: str, expr: str, timeout_s: float = 20) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while True:
        result = query(prom, expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def sli(prom: str) -> float:
    [sample] = eventually(prom, "1 - smsrouter:availability_errors:ratio_rate5m")
    value = sample["value"]
    assert isinstance(value, list)
    return float(value[1])


def test_every_expression_returns_data_and_the_sli_falls(stack: Stack) -> None:
    sandbox, sidecar, prom = stack.sandbox, stack.sidecar, stack.prom
    # Counters must be scraped at zero before the load, or a rate has nothing to compare.
    assert eventually(prom, 'up{job="sms-router"} == 1')
    series = 'smsrouter_send_recipients_total{status="accepted"}'
    accepted = f"sum({series})"
    # Two real scrapes at zero, so a rate over the load has a baseline.
    assert eventually(prom, f"min(count_over_time({series}[5m])) >= 2 and {accepted} == 0")
    send_load(sidecar, 60, 0)
    assert eventually(prom, f"{accepted} > 0")  # the load is scraped...
    assert eventually(prom, "smsrouter:availability_errors:ratio_rate5m >= 0")  # ...and rated
    assert sli(prom) == 1.0
    # One provider starts failing: half its answers are 5xx (unknown: never re-sent).
    sandbox.state("baofoo").set_faults(FaultSettings(http_5xx_rate=0.5, seed=1))
    send_load(sidecar, 120, 1000)
    deadline = time.monotonic() + 20
    while sli(prom) >= 1.0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sli(prom) < 1.0

    # The faults reach the alerts: each expression (the alert's condition, thresholds and
    # all) becomes true against the live sidecar.
    alerts = _alerts()
    # 50% 5xx on one of two providers is ~25% failed recipients over >= 10: a page.
    assert eventually(prom, alerts["SMSRouterAvailabilityBudgetBurnPage"]), "no burn page"
    # A receipt pushed with a wrong token: rejected, counted, alerted.
    bad = httpx.post(
        f"{sidecar}/v1/callbacks/v1platform/status",
        json={"sendId": "x", "mobile": "13900000000", "times": "", "status": "DELIVRD"},
        headers={"X-Callback-Token": "wrong"},
        timeout=5,
    )
    assert bad.status_code == 403
    assert eventually(prom, alerts["SMSRouterCallbackRejections"]), "no callback alert"
    # Every answer counts in the HTTP server metrics, by route template and status.
    http = "smsrouter_http_requests_total"
    assert eventually(prom, f'{http}{{route="/v1/messages",method="POST",status="200"}} > 0')
    assert eventually(
        prom, f'{http}{{route="/v1/callbacks/{{provider}}/{{kind}}",status="403"}} == 1'
    )
    # Every provider refuses: breakers open, then the panic rule sends anyway: alerted.
    for name in ("baofoo", "v1platform"):
        sandbox.state(name).set_faults(FaultSettings(http_5xx_rate=1.0))
    send_load(sidecar, 40, 5000)
    assert eventually(prom, alerts["SMSRouterPanicSends"]), "no panic alert"
    for name in ("baofoo", "v1platform"):
        sandbox.state(name).set_faults(FaultSettings())

    alert_exprs = {r.strip() for r in _alert_expressions()}
    missing = []
    for expr in all_expressions():
        probe = without_thresholds(expr) if expr in alert_exprs else expr
        if not eventually(prom, probe, timeout_s=10):
            missing.append(probe)
    assert not missing, f"no data for: {missing}"

    # Slow providers (1.1 s per answer): the latency SLI falls and its page condition holds.
    for name in ("baofoo", "v1platform"):
        sandbox.state(name).set_faults(FaultSettings(latency_s=1.1))
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda k: send_load(sidecar, 5, 7000 + 5 * k), range(12)))
    for name in ("baofoo", "v1platform"):
        sandbox.state(name).set_faults(FaultSettings())
    assert eventually(prom, alerts["SMSRouterLatencyBudgetBurnPage"]), "no latency page"

    # Redis lost: keyed sends are refused (503, nothing sent) and the store alert holds.
    stack.redis.stop()
    with httpx.Client(timeout=10) as client:
        for i in range(3):
            refused = client.post(
                f"{sidecar}/v1/messages",
                json={
                    "mobiles": [f"139{9000 + i:08d}"],
                    "scene": "login_code",
                    "params": {"code": "1"},
                    "idempotency_key": f"store-down-{i}",
                },
            )
            assert refused.status_code == 503, refused.text
    assert eventually(prom, alerts["SMSRouterStateStoreErrors"]), "no store alert"

    # The sidecar dies: its target is down (SMSRouterDown's condition; its `for` is 5m).
    stack.process.terminate()
    stack.process.wait(15)
    assert eventually(prom, alerts["SMSRouterDown"]), "no down condition"


def _alert_expressions() -> list[str]:
    import yaml

    doc = yaml.safe_load((RULES_DIR / "slo-alerts.yml").read_text(encoding="utf-8"))
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, str]:
    import yaml

    doc = yaml.safe_load((RULES_DIR / "slo-alerts.yml").read_text(encoding="utf-8"))
    return {
        str(rule["alert"]): str(rule["expr"]).strip()
        for group in doc["groups"]
        for rule in group["rules"]
    }

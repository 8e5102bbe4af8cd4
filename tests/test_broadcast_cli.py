"""Broadcasts as a user runs them: ``POST /v1/broadcasts`` on a sidecar process, and
``python -m router send --from-file`` with its printed key resuming the same job."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.sandbox import RunningSandbox
from tests.sidecar_process import sidecar

NUMBERS = [f"1370000{i:04d}" for i in range(700)]


def _cli(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", "send", "--url", url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_broadcasts_through_the_sidecar_api_and_the_cli(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    sandbox.reset()
    with sidecar(sandbox, tmp_path) as (url, _):
        body = {"mobiles": [*NUMBERS[:300], "555"], "scene": "login_code", "params": {"code": "9"}}
        started = httpx.post(f"{url}/v1/broadcasts", json=body, timeout=30)
        assert started.status_code == 202, started.text
        job = started.json()
        assert started.headers["location"] == f"/v1/broadcasts/{job['job_id']}"
        deadline = time.monotonic() + 30
        while job["state"] != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
            job = httpx.get(f"{url}/v1/broadcasts/{job['job_id']}", timeout=10).json()
        assert job["counts"] == {"accepted": 300, "invalid": 1} and job["pending"] == 0
        page = httpx.get(
            f"{url}/v1/broadcasts/{job['job_id']}/results?offset=290&limit=50", timeout=10
        ).json()
        assert [r["mobile"] for r in page["recipients"]] == [*NUMBERS[290:300], "555"]
        assert page["next_offset"] is None
        assert httpx.get(f"{url}/v1/broadcasts/bc_none", timeout=10).status_code == 404
        bad = httpx.get(f"{url}/v1/broadcasts/{job['job_id']}/results?limit=0", timeout=10)
        assert bad.status_code == 400

        numbers = tmp_path / "numbers.txt"
        numbers.write_text("# a list\n" + "\n".join(NUMBERS[300:]) + "\n\n", encoding="utf-8")
        scene = ["--scene", "login_code", "--param", "code=5"]
        first = _cli(url, *scene, "--from-file", str(numbers))
        assert first.returncode == 0, first.stderr
        key = first.stderr.split("idempotency key: ")[1].split()[0]
        assert "accepted" in first.stdout and "400 accepted" in first.stdout
        # The printed key resumes the same job: nothing is sent again.
        again = _cli(
            url,
            *scene,
            "--from-file",
            "-",
            "--idempotency-key",
            key,
            stdin=numbers.read_text(encoding="utf-8"),
        )
        assert again.returncode == 0, again.stderr
        assert again.stdout.split(":")[0] == first.stdout.split(":")[0]  # "job <id> done"

        missing = _cli(url, *scene, "--from-file", str(tmp_path / "nope.txt"))
        assert missing.returncode == 2 and "nope.txt" in missing.stderr
        unknown = _cli(url, "--scene", "nope", "--from-file", str(numbers))
        assert unknown.returncode == 1 and "nope" in unknown.stderr
        assert "Traceback" not in unknown.stderr + missing.stderr
    down = _cli(url, "--job", job["job_id"])
    assert down.returncode == 3 and "could not reach the sidecar" in down.stderr
    assert "Traceback" not in down.stderr
    sent = Counter(
        m for p in ("v1platform", "ronglian") for b in sandbox.mobiles_sent(p) for m in b
    )
    assert sent == Counter(NUMBERS)  # each number once, across the API job and the CLI's

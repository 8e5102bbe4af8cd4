"""Command line: ``python -m router serve | send | check-config``."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
import uuid
from collections.abc import Sequence

import anyio
import httpx
import orjson

from router.errors import ConfigError
from router.telemetry.logformat import configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m router", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the sidecar HTTP service")
    serve.add_argument("--config", help="TOML config file (ROUTER_* env vars override it)")
    serve.add_argument(
        "--sandbox", action="store_true", help="start the three provider emulators on loopback"
    )
    serve.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default 8080)")
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or one JSON object per line; both carry trace ids",
    )

    send = sub.add_parser("send", help="send a message through a running sidecar")
    send.add_argument("mobiles", nargs="*", help="recipient mobile numbers")
    send.add_argument(
        "--from-file",
        metavar="PATH",
        help="recipients one per line ('-': stdin), sent as a broadcast job with progress",
    )
    send.add_argument(
        "--job", metavar="ID", help="follow a broadcast job started earlier (no new send)"
    )
    send.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP call")
    send.add_argument("--url", default="http://127.0.0.1:8080", help="sidecar base URL")
    send.add_argument("--scene", help="template key from the config (e.g. login_code)")
    send.add_argument("--param", action="append", default=[], help="template param key=value")
    send.add_argument("--content", help="free text instead of a scene")
    send.add_argument("--idempotency-key", help="dedupe key: the same key never sends twice")

    check = sub.add_parser("check-config", help="validate a config file and print what is wrong")
    check.add_argument("config", help="TOML config file")
    return parser


def _has_uvloop() -> bool:
    """uvloop (installed with uvicorn[standard]) where the platform has it: the sidecar's event
    loop then costs less CPU per request; plain asyncio otherwise."""
    return importlib.util.find_spec("uvloop") is not None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(getattr(args, "log_format", "text"))
    # httpx logs every request URL at INFO; a Ronglian URL carries its signature.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "serve":
        from router.sidecar.serve import serve

        try:
            anyio.run(
                serve,
                args.config,
                args.sandbox,
                args.host,
                args.port,
                backend_options={"use_uvloop": _has_uvloop()},
            )
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "send":
        return _send(args)
    return _check_config(args.config)


def _send(args: argparse.Namespace) -> int:
    try:
        if args.job:
            return _follow(args.url, args.job, args.timeout)
        if args.from_file:
            return _broadcast(args)
        if not args.mobiles:
            print("give recipient numbers, --from-file PATH or --job ID", file=sys.stderr)
            return 2
        return _send_one(args)
    except httpx.HTTPError as exc:
        print(f"error: could not reach the sidecar at {args.url}: {exc}", file=sys.stderr)
        return 3
    except (ValueError, KeyError) as exc:
        print(f"error: the sidecar's answer was not what was expected: {exc}", file=sys.stderr)
        return 3


def _body(args: argparse.Namespace, mobiles: list[str]) -> dict[str, object] | None:
    params: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"--param {item!r}: expected key=value", file=sys.stderr)
            return None
        params[key] = value
    body: dict[str, object] = {"mobiles": mobiles}
    if args.scene is not None:
        body.update(scene=args.scene, params=params)
    if args.content is not None:
        body["content"] = args.content
    return body


def _broadcast(args: argparse.Namespace) -> int:
    """A broadcast job from a file: the key is printed first, so an interrupted run can be
    resumed (the same key is the same job; nothing is sent twice)."""
    try:
        if args.from_file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.from_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
    except OSError as exc:
        print(f"--from-file: {exc}", file=sys.stderr)
        return 2
    mobiles = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    body = _body(args, mobiles)
    if body is None:
        return 2
    if not mobiles:
        print(f"--from-file {args.from_file}: no numbers in it", file=sys.stderr)
        return 2
    key = args.idempotency_key or f"cli:{uuid.uuid4().hex}"
    print(
        f"idempotency key: {key} (run again with --idempotency-key {key} to resume)",
        file=sys.stderr,
    )
    response = httpx.post(
        f"{args.url}/v1/broadcasts",
        json=body,
        headers={"Idempotency-Key": key},
        timeout=args.timeout,
    )
    if response.status_code != 202:
        return _refused(response)
    job = response.json()
    print(f"job {job['job_id']}: {job['total']} recipients", file=sys.stderr)
    return _follow(args.url, job["job_id"], args.timeout)


def _follow(url: str, job_id: str, timeout: float) -> int:
    """Progress on stderr until the job ends, then one summary line on stdout."""
    interactive = sys.stderr.isatty()
    while True:
        response = httpx.get(f"{url}/v1/broadcasts/{job_id}", timeout=timeout)
        if response.status_code != 200:
            return _refused(response)
        job = response.json()
        done = job["total"] - job["pending"]
        if interactive:
            width = 30
            filled = width * done // max(job["total"], 1)
            bar = "#" * filled + "." * (width - filled)
            print(f"\r[{bar}] {done}/{job['total']} {job['state']}", end="", file=sys.stderr)
        if job["state"] in ("done", "cancelled"):
            break
        time.sleep(0.5)
    if interactive:
        print(file=sys.stderr)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(job["counts"].items()))
    print(f"job {job_id} {job['state']}: {counts or 'nobody'}")
    return 0 if job["counts"].get("accepted", 0) == job["total"] else 1


def _refused(response: httpx.Response) -> int:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text[:200]
    print(f"error: the sidecar answered {response.status_code}: {detail}", file=sys.stderr)
    return 1


def _send_one(args: argparse.Namespace) -> int:
    body = _body(args, args.mobiles)
    if body is None:
        return 2
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    response = httpx.post(
        f"{args.url}/v1/messages", json=body, headers=headers, timeout=args.timeout
    )
    sys.stdout.write(orjson.dumps(response.json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if response.status_code == 200 and response.json().get("ok") else 1


def _check_config(path: str) -> int:
    from router.config import load_settings

    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(f"{n} ({p.type})" for n, p in settings.provider_settings.items())
    print(f"{path}: OK; providers: {names or 'none'}; scenes: {len(settings.templates)}")
    return 0

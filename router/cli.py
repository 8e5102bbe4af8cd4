"""The sms-router command line: run the sidecar, send through one, check a config file."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import os
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
    parser = argparse.ArgumentParser(prog=_program(), description=__doc__, epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"sms-router {_version()}")
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
    send.add_argument("--json", action="store_true", help="print the API's JSON answer")
    send.add_argument("--url", default="http://127.0.0.1:8080", help="sidecar base URL")
    send.add_argument("--scene", help="template key from the config (e.g. login_code)")
    send.add_argument("--param", action="append", default=[], help="template param key=value")
    send.add_argument("--content", help="free text instead of a scene")
    send.add_argument("--idempotency-key", help="dedupe key: the same key never sends twice")

    check = sub.add_parser("check-config", help="validate a config file and print what is wrong")
    check.add_argument("config", help="TOML config file")
    return parser


EXIT_CODES = """exit codes: 0 done (send: every recipient accepted); 1 a send or check that did
not fully succeed; 2 bad usage or config (the message names the key); 3 the sidecar could not
be reached or answered oddly; 4 serve could not listen (address in use); 5 serve has no
provider to send with"""


def _program() -> str:
    """One name in help: the installed script's, or ``python -m router``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "sms-router" if name == "sms-router" else "python -m router"


def _version() -> str:
    try:
        return importlib.metadata.version("sms-router")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


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
        return _serve(args)
    if args.command == "send":
        return _send(args)
    return _check_config(args.config)


def _serve(args: argparse.Namespace) -> int:
    """Every start-up failure is one line on stderr and its own exit code (see --help)."""
    from router.config import load_settings
    from router.sidecar.serve import address_problem, serve

    if args.sandbox and args.config:
        print(
            "serve: give --sandbox or --config, not both (the sandbox brings its own "
            "providers and settings; to try a config against emulators, point its base_url "
            "values at `python -m benchmarks.emulators`)",
            file=sys.stderr,
        )
        return 2
    try:
        settings = None if args.sandbox else load_settings(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if settings is not None and not settings.provider_settings:
        print(
            "serve: no provider is configured, so every send would fail: add a "
            "[providers.<name>] section (see router.example.toml) or run with --sandbox",
            file=sys.stderr,
        )
        return 5
    host = args.host or (settings.server.host if settings else "127.0.0.1")
    port = args.port if args.port is not None else (settings.server.port if settings else 8080)
    problem = address_problem(host, port)
    if problem is not None:
        print(
            f"serve: cannot listen on {host}:{port}: {problem}; choose another with --port "
            "or server.port",
            file=sys.stderr,
        )
        return 4
    try:
        anyio.run(
            serve,
            settings,
            args.sandbox,
            host,
            port,
            backend_options={"use_uvloop": _has_uvloop()},
        )
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        config = group.subgroup(ConfigError)
        if config is None:
            raise
        print(f"config error: {_first(config)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


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
    response = _post(args, "/v1/broadcasts", body, "run again with it to resume")
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


def _post(args: argparse.Namespace, path: str, body: dict[str, object], use: str) -> httpx.Response:
    """POST with an idempotency key: the given one, or a new one printed first, so the same
    command with ``--idempotency-key`` is a safe retry (the sidecar sends nothing twice)."""
    key = args.idempotency_key or f"cli:{uuid.uuid4().hex}"
    if not args.idempotency_key:
        print(f"idempotency key: {key} ({use}: --idempotency-key {key})", file=sys.stderr)
    return httpx.post(
        f"{args.url}{path}", json=body, headers={"Idempotency-Key": key}, timeout=args.timeout
    )


def _send_one(args: argparse.Namespace) -> int:
    body = _body(args, args.mobiles)
    if body is None:
        return 2
    response = _post(args, "/v1/messages", body, "retry with it after a timeout")
    if response.status_code != 200:
        return _refused(response)
    answer = response.json()
    if args.json:
        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(answer["counts"].items()))
        print(f"message {answer['message_id']}: {counts}")
        for r in answer["recipients"]:
            where = f"{r['provider']} {r['provider_message_id'] or ''}".strip()
            detail = where if r["status"] == "accepted" else (r["error"] or where)
            print(f"  {r['mobile']:<16} {r['status']:<10} {detail}")
    return 0 if answer.get("ok") else 1


def _check_config(path: str) -> int:
    from router.config import load_settings

    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(f"{n} ({p.type})" for n, p in settings.provider_settings.items())
    print(f"{path}: OK; providers: {names or 'none'}; scenes: {len(settings.templates)}")
    from_env = sorted(name for name in os.environ if name.startswith("ROUTER_"))
    if from_env:  # names only: their values may be credentials
        print(f"values from the environment (they override the file): {', '.join(from_env)}")
    return 0

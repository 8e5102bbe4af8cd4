"""The baseline for ``bench_sidecar``: a minimal Starlette proxy on uvicorn.

    python -m benchmarks.proxy_baseline --port 18003 --upstream http://127.0.0.1:18002 \
        --account sandbox --password sandbox-pass --signature 【沙箱】 [--loop uvloop|asyncio]

``POST /v1/messages`` takes the sidecar's body (``{"mobiles": [...], "content": "..."}``),
forwards one request to the v1 platform's ``/api/v1/send`` with the same form fields the
router's v1 adapter sends (account, MD5 pwd, a fresh taskId, comma-joined mobiles, signed
content) through one shared aiohttp session, and answers a small JSON result. One server span
per request, configured from the same ``OTEL_*`` variables as the sidecar (the sampler ratio is
the SDK's, the exporter :func:`router.telemetry.tracing.configure_sdk_from_env`'s).
``GET /_loop`` names the running event loop's class. The loop is set up exactly as the
sidecar's (``anyio.run(..., backend_options={"use_uvloop": ...})``) and the HTTP parser is
httptools, as uvicorn picks for the sidecar when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import anyio
import orjson
import uvicorn
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from router.telemetry.tracing import configure_sdk_from_env

HOST = "127.0.0.1"


def create_app(
    upstream: str, account: str, password: str, signature: str, concurrency: int
) -> Starlette:
    send_url = f"{upstream.rstrip('/')}/api/v1/send"
    pwd = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    tracer = trace.get_tracer("proxy-baseline")
    session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal session
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=10, connect=2)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
            session = s
            yield
            session = None

    async def send(request: Request) -> Response:
        with tracer.start_as_current_span("POST /v1/messages", kind=SpanKind.SERVER) as span:
            body = orjson.loads(await request.body())
            mobiles: list[str] = body["mobiles"]
            content: str = body["content"]
            if signature and not content.startswith(signature):
                content = signature + content
            task_id = uuid.uuid4().hex
            form = {
                "account": account,
                "pwd": pwd,
                "taskId": task_id,
                "mobiles": ",".join(mobiles),
                "content": content,
            }
            assert session is not None
            async with session.post(send_url, data=form) as upstream_response:
                answer = orjson.loads(await upstream_response.read())
                ok = upstream_response.status == 200 and answer.get("code") == "00"
            status = "accepted" if ok else "failed"
            result = {
                "message_id": task_id,
                "ok": ok,
                "recipients": [
                    {"mobile": m, "status": status, "provider": "v1platform"} for m in mobiles
                ],
            }
            span.set_attribute("http.response.status_code", 200)
            return Response(orjson.dumps(result), media_type="application/json")

    async def loop_name(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        name = f"{type(loop).__module__}.{type(loop).__qualname__}"
        return Response(orjson.dumps({"loop": name}), media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/messages", send, methods=["POST"]),
            Route("/_loop", loop_name, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the v1 platform's base URL")
    parser.add_argument("--account", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--signature", default="")
    parser.add_argument("--concurrency", type=int, default=100, help="upstream connections")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--gc-gen0", type=int, default=0, help="collector generation-0 threshold (0: Python's)"
    )
    args = parser.parse_args()
    configure_sdk_from_env()
    app = create_app(args.upstream, args.account, args.password, args.signature, args.concurrency)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=HOST,
            port=args.port,
            log_level="warning",
            access_log=False,
            http="httptools",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
    )
    if args.gc_gen0:  # the sidecar's tuning (router/sidecar/serve.py tune_gc), when asked
        gc.collect()
        gc.freeze()
        gc.set_threshold(args.gc_gen0, *gc.get_threshold()[1:])
    anyio.run(server.serve, backend_options={"use_uvloop": args.loop == "uvloop"})


if __name__ == "__main__":
    main()

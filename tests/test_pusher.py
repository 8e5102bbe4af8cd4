"""The emulators' callback pusher: every push sent once, by a bounded number of tasks, so a
large send's receipts never flood the event loop that answers the next request (in the
sandbox, the sidecar's own loop). A real receiver over loopback."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.emulators._common import PUSH_WORKERS, Pusher
from providers.emulators.server import ThreadedServer

pytestmark = pytest.mark.anyio


def receiver() -> tuple[Starlette, Counter[int]]:
    got: Counter[int] = Counter()
    lock = threading.Lock()

    async def take(request: Request) -> Response:
        body = await request.json()
        with lock:
            got[int(body["n"])] += 1
        return Response("ok")

    return Starlette(routes=[Route("/cb", take, methods=["POST"])]), got


async def test_many_pushes_use_a_bounded_number_of_tasks_and_arrive_once(
    serve: Callable[[Any], ThreadedServer],
) -> None:
    app, got = receiver()
    server = serve(app)
    pusher = Pusher()
    before = len(asyncio.all_tasks())
    for n in range(3000):  # one v1 request's worth of receipts
        pusher.push_later(f"{server.url}/cb", {"n": n}, 0.0)
    assert len(asyncio.all_tasks()) - before <= PUSH_WORKERS
    with anyio.fail_after(30):
        while sum(got.values()) < 3000:  # noqa: ASYNC110 - filled by the server thread
            await anyio.sleep(0.02)
    assert set(got) == set(range(3000)) and set(got.values()) == {1}
    await anyio.sleep(0.05)
    assert len(asyncio.all_tasks()) == before  # the workers leave when the queue is empty

    # Pushed again after the workers left: new ones start (no push is stranded).
    pusher.push_later(f"{server.url}/cb", {"n": 5000}, 0.0)
    with anyio.fail_after(10):
        while got[5000] == 0:  # noqa: ASYNC110 - filled by the server thread
            await anyio.sleep(0.02)


async def test_a_full_backlog_loses_pushes_and_counts_them(
    serve: Callable[[Any], ThreadedServer],
) -> None:
    app, got = receiver()
    server = serve(app)
    pusher = Pusher(workers=1, backlog=10)
    for n in range(15):
        pusher.push_later(f"{server.url}/cb", {"n": n}, 0.0)
    assert pusher.dropped == 5  # 10 queued (the worker has not run yet), 5 lost
    with anyio.fail_after(10):
        while sum(got.values()) < 10:  # noqa: ASYNC110 - filled by the server thread
            await anyio.sleep(0.02)
    await anyio.sleep(0.1)
    assert sum(got.values()) == 10

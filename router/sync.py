"""A blocking facade for synchronous callers such as Celery prefork workers.

Each worker process gets one event-loop thread (an anyio blocking portal) and one
:class:`Router`, created lazily on first use *after* the fork (an event loop, sockets and
threads must never cross a fork), and closed at interpreter exit or by :meth:`close`::

    # tasks.py
    from router.sync import SyncRouter
    sms = SyncRouter.from_config("router.toml")

    @app.task(bind=True, max_retries=3)
    def send_otp(self, mobile: str, code: str, key: str) -> str:
        result = sms.send(Message(mobiles=[mobile], scene="login_code",
                                  params={"code": code}, idempotency_key=key))
        return result.recipients[0].status.value
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from router.config import RouterSettings, load_settings
from router.engine import Explanation, Router
from router.model import Message, SendResult


class SyncRouter:
    """Thread-safe, fork-safe blocking wrapper around one :class:`Router` per process."""

    def __init__(self, make_router: Callable[[], Router]) -> None:
        self._make_router = make_router
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._router: Router | None = None
        self._stop: anyio.Event | None = None
        self._holder: Future[None] | None = None
        atexit.register(self.close)

    @classmethod
    def from_config(cls, path: str | None = None, **overrides: Any) -> SyncRouter:
        """Load settings now (fail fast in the parent), build the router lazily per process."""
        settings: RouterSettings = load_settings(path, **overrides)
        return cls(lambda: Router(settings))

    def portal_and_router(self) -> tuple[BlockingPortal, Router]:
        """This process's event-loop portal and router (created on first use)."""
        with self._lock:
            if self._pid != os.getpid():
                # A fresh process (first use, or a forked child): never reuse the parent's loop.
                self._portal_cm = start_blocking_portal()
                self._portal = self._portal_cm.__enter__()
                self._router = self._make_router()
                # The router is entered and left by one long-lived task (its background
                # pollers live in a task group, which must stay in the task that opened it).
                self._holder, self._stop = self._portal.start_task(self._hold, self._router)
                self._pid = os.getpid()
            assert self._portal is not None and self._router is not None
            return self._portal, self._router

    def send(self, message: Message) -> SendResult:
        portal, router = self.portal_and_router()
        return portal.call(router.send, message)

    def explain(self, message: Message) -> Explanation:
        _, router = self.portal_and_router()
        return router.explain(message)

    @property
    def router(self) -> Router:
        return self.portal_and_router()[1]

    def close(self) -> None:
        """Close the router and stop the loop thread (only in the process that started it)."""
        with self._lock:
            if self._pid != os.getpid() or self._portal is None or self._portal_cm is None:
                return
            if self._stop is not None and self._holder is not None:
                self._portal.call(self._stop.set)
                self._holder.result(timeout=30)
            self._portal_cm.__exit__(None, None, None)
            self._portal = self._portal_cm = self._router = None
            self._stop = self._holder = None
            self._pid = None

    @staticmethod
    async def _hold(router: Router, *, task_status: anyio.abc.TaskStatus[anyio.Event]) -> None:
        stop = anyio.Event()
        async with router:
            task_status.started(stop)
            await stop.wait()

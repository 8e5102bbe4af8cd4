"""Celery integration: import it instead of writing your own tasks module.

In the notification service's Celery app::

    # tasks.py
    from celery import Celery
    from router.celery import install

    app = Celery("notifications", broker="redis://127.0.0.1:6379/0",
                 backend="redis://127.0.0.1:6379/1")   # a backend if you read results
    sms = install(app)  # registers "sms_router.send" and "sms_router.broadcast_chunk"

    # a producer (a web process): needs no provider credential and no router config
    result = sms.send.delay({"mobiles": ["13800138000"], "scene": "login_code",
                             "params": {"code": "123456"}, "idempotency_key": "otp:42:1"})
    result.get(timeout=30)  # the send's JSON body, as POST /v1/messages answers it

Workers: ``SMS_ROUTER_CONFIG=router.toml celery -A tasks worker -Q sms_router``. The config is
read in the worker only, on its first task, after the fork (one router per worker process).
Use the Redis state store: worker processes then share idempotency records, limits and jobs.

``sms_router.broadcast_chunk`` runs one chunk of a broadcast job (``POST /v1/broadcasts``
with ``broadcasts.executor = "celery"``): acknowledged late and re-queued when its worker is
lost, retried while another run holds the chunk; safe to run twice (see
:mod:`router.broadcasts`). With the Redis broker, set the transport's ``visibility_timeout``
above ``broadcasts.claim_s``: it is how long a chunk of a worker killed outright waits before
it is delivered again; kombu looks for such chunks every ``unacked_restore_interval`` x
``unacked_restore_throttle`` seconds (default 10 x 10: lower them, as ``tests/celery_app.py``
does, to bound the redelivery time).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from router.config import BroadcastSettings, load_settings
from router.engine import Router
from router.errors import StateStoreError
from router.model import Message
from router.sidecar.schemas import result_json
from router.sync import SyncRouter

log = logging.getLogger("router.celery")
SEND_TASK = "sms_router.send"
CHUNK_TASK = "sms_router.broadcast_chunk"
CONFIG_ENV = "SMS_ROUTER_CONFIG"


@dataclass(frozen=True, slots=True)
class Tasks:
    """The registered tasks (use ``.delay``/``.apply_async``) and the worker's router."""

    send: Any
    broadcast_chunk: Any
    router: SyncRouter


def install(app: Any, config: str | None = None, *, queue: str = "sms_router") -> Tasks:
    """Register the router's tasks on ``app``, routed to ``queue``. ``config`` (or the
    ``SMS_ROUTER_CONFIG`` variable, read in the worker) names the TOML file."""

    def make_router() -> Router:
        return Router(load_settings(config or os.environ.get(CONFIG_ENV)))

    sms = SyncRouter(make_router)
    routes = dict(app.conf.task_routes or {})
    routes.update({SEND_TASK: {"queue": queue}, CHUNK_TASK: {"queue": queue}})
    app.conf.task_routes = routes

    @app.task(name=SEND_TASK, acks_late=False)  # type: ignore[untyped-decorator, unused-ignore]
    def send(message: dict[str, Any]) -> dict[str, Any]:
        # At most once per delivery; a redelivered task with an idempotency key sends nothing
        # twice (the record is shared through the Redis state store).
        result = sms.send(
            Message(
                message["mobiles"],
                message.get("scene"),
                message.get("params"),
                message.get("content"),
                message.get("idempotency_key"),
                message.get("tags"),
            )
        )
        return result_json(result)

    @app.task(  # type: ignore[untyped-decorator, unused-ignore]
        name=CHUNK_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,
    )
    def broadcast_chunk(self: Any, job_id: str, index: int) -> str:
        portal, router = sms.portal_and_router()
        try:
            run = portal.call(router.broadcasts.run_chunk, job_id, index)
        except StateStoreError as exc:
            raise self.retry(countdown=1.0, exc=exc) from None
        except Exception as exc:
            # A failed chunk must not leave its job "running" for ever: retried (a chunk is
            # safe to run again), and logged with its traceback for the bug report.
            log.exception("broadcast %s chunk %d failed; retried in 5 s", job_id, index)
            raise self.retry(countdown=5.0, exc=exc) from None
        if run.outcome == "busy":
            raise self.retry(countdown=max(0.5, min(run.retry_in_s, 30.0)))
        return run.outcome

    return Tasks(send, broadcast_chunk, sms)


class CeleryEnqueue:
    """The sidecar's side: puts a job's chunks on the broker (no worker code runs here)."""

    def __init__(self, settings: BroadcastSettings) -> None:
        from celery import Celery

        assert settings.celery_broker is not None  # checked by the settings
        self._app = Celery("sms_router_producer", broker=settings.celery_broker)
        self._queue = settings.celery_queue

    async def enqueue(self, job_id: str, chunks: Sequence[int]) -> None:
        def put() -> None:
            with self._app.producer_or_acquire() as producer:
                for index in chunks:
                    self._app.send_task(
                        CHUNK_TASK, args=[job_id, index], queue=self._queue, producer=producer
                    )

        await anyio.to_thread.run_sync(put)

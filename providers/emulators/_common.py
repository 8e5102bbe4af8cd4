"""Machinery every emulator shares: run-time fault injection, request recording, control API."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import anyio
import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class FaultSettings(BaseModel):
    """What an emulator does wrong, set at run time (``PUT /_emulator/faults``)."""

    model_config = ConfigDict(extra="forbid")

    latency_s: float = Field(default=0.0, ge=0, description="added before every answer")
    error_rate: float = Field(default=0.0, ge=0, le=1, description="documented business refusal")
    timeout_rate: float = Field(default=0.0, ge=0, le=1, description="accept, then hang")
    http_5xx_rate: float = Field(default=0.0, ge=0, le=1)
    malformed_rate: float = Field(default=0.0, ge=0, le=1, description="200 with a broken body")
    outage: bool = Field(default=False, description="answer every send with 503")
    hang_s: float = Field(default=30.0, ge=0, description="how long a 'timeout' hangs")
    timeout_after_accept: bool = Field(
        default=False, description="a 'timeout' takes the message first, then hangs"
    )
    drop_after_accept_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="take the message, then hang past the client's timeout (answer lost)",
    )
    reject_mobiles: list[str] = Field(
        default_factory=list, description="national numbers refused with the documented error"
    )
    seed: int | None = None


class FaultAction(StrEnum):
    NONE = "none"
    OUTAGE = "outage"
    TIMEOUT = "timeout"
    DROPPED = "dropped"  # taken, answer lost
    HTTP_5XX = "http_5xx"
    MALFORMED = "malformed"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    fields: Mapping[str, Any]  # parsed form fields or JSON object
    action: FaultAction
    at: float = field(default_factory=time.monotonic)  # arrival (this process's monotonic clock)


@dataclass
class EmulatorState:
    """Mutable state of one emulator: its faults, what it received, and what it accepted."""

    faults: FaultSettings = field(default_factory=FaultSettings)
    requests: list[RecordedRequest] = field(default_factory=list)
    callback_url: str | None = None
    receipt_delay_s: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    taken: list[str] = field(default_factory=list)  # every number taken, once per time

    def take(self, mobiles: Iterable[str]) -> None:
        """Record numbers this provider took (``GET /_emulator/taken``): what a benchmark
        checks the router's statuses against."""
        self.taken.extend(m[-11:] for m in mobiles if m)

    def set_faults(self, faults: FaultSettings) -> None:
        self.faults = faults
        if faults.seed is not None:
            self.rng.seed(faults.seed)

    def decide(self) -> FaultAction:
        """Draw the fault for one send request, in a fixed order of precedence."""
        f = self.faults
        if f.outage:
            return FaultAction.OUTAGE
        draw = self.rng.random()
        for rate, action in (
            (f.timeout_rate, FaultAction.TIMEOUT),
            (f.drop_after_accept_rate, FaultAction.DROPPED),
            (f.http_5xx_rate, FaultAction.HTTP_5XX),
            (f.malformed_rate, FaultAction.MALFORMED),
            (f.error_rate, FaultAction.ERROR),
        ):
            if draw < rate:
                return action
            draw -= rate
        return FaultAction.NONE

    def reset(self) -> None:
        self.faults = FaultSettings()
        self.requests.clear()
        self.taken.clear()

    def sent_requests(self, path_suffix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]


async def apply_transport_fault(state: EmulatorState, action: FaultAction) -> Response | None:
    """Added latency, then the faults that look the same at every provider (None: carry on).

    ``ERROR`` is provider-specific (its documented refusal shape) and left to the caller.
    """
    if state.faults.latency_s:
        await anyio.sleep(state.faults.latency_s)
    if action is FaultAction.OUTAGE:
        return Response("service unavailable", status_code=503)
    if action is FaultAction.TIMEOUT and not state.faults.timeout_after_accept:
        await anyio.sleep(state.faults.hang_s)
        return Response("too late", status_code=504)
    if action is FaultAction.HTTP_5XX:
        return Response("internal error", status_code=500)
    if action is FaultAction.MALFORMED:
        return Response(b'{"code": "00", "data": {', media_type="application/json")
    return None


async def hang_after_accept(state: EmulatorState, action: FaultAction) -> Response | None:
    """For ``timeout_after_accept`` and ``drop_after_accept_rate``: the message was taken; now
    hang past the client's timeout."""
    dropped = action is FaultAction.TIMEOUT and state.faults.timeout_after_accept
    if dropped or action is FaultAction.DROPPED:
        await anyio.sleep(state.faults.hang_s)
        return Response("too late", status_code=504)
    return None


class Refusal(Exception):
    """A provider's documented refusal of a request: its ``code`` and ``message``, answered
    with HTTP ``status`` in the provider's own error shape (each emulator writes its body)."""

    def __init__(self, code: str, message: str, status: int = 200) -> None:
        super().__init__(code)
        self.code, self.message, self.status = code, message, status


def json_response(payload: object, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


class _Controls:
    """The common control endpoints of one emulator, over its state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def get_faults(self, _: Request) -> Response:
        return JSONResponse(self.state.faults.model_dump())

    async def put_faults(self, request: Request) -> Response:
        try:
            faults = FaultSettings.model_validate_json(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        self.state.set_faults(faults)
        return JSONResponse(faults.model_dump())

    async def get_requests(self, _: Request) -> Response:
        return json_response(
            [
                {
                    "method": r.method,
                    "path": r.path,
                    "query": dict(r.query),
                    "fields": dict(r.fields),
                    "action": r.action.value,
                    "at": r.at,  # arrival, on this process's monotonic clock
                }
                for r in self.state.requests
            ]
        )

    async def get_taken(self, _: Request) -> Response:
        return json_response({"numbers": self.state.taken})

    async def reset(self, _: Request) -> Response:
        self.state.reset()
        return JSONResponse({"reset": True})


def control_routes(state: EmulatorState) -> list[Route]:
    """``/_emulator/faults`` (GET, PUT), ``/_emulator/requests`` (GET), ``/_emulator/reset``."""
    c = _Controls(state)
    return [
        Route("/_emulator/faults", c.get_faults, methods=["GET"]),
        Route("/_emulator/faults", c.put_faults, methods=["PUT"]),
        Route("/_emulator/requests", c.get_requests, methods=["GET"]),
        Route("/_emulator/taken", c.get_taken, methods=["GET"]),
        Route("/_emulator/reset", c.reset, methods=["POST"]),
    ]


async def record(state: EmulatorState, request: Request, fields: Mapping[str, Any]) -> FaultAction:
    """Record a send request and draw its fault."""
    action = state.decide()
    state.requests.append(
        RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers=dict(request.headers),
            body=await request.body(),
            fields=dict(fields),
            action=action,
        )
    )
    return action


PUSH_WORKERS = 4  # concurrent callbacks per emulator
PUSH_BACKLOG = 200_000  # callbacks waiting at most; beyond, they are lost (and counted)


class Pusher:
    """Fire-and-forget callbacks (receipts, replies): sent once after a delay, never retried,
    never blocking the answer to the send that caused them. A queue and at most
    ``PUSH_WORKERS`` sending tasks: a 100,000-number send must not start 100,000 tasks in the
    event loop it shares with its own answers (and, in the sandbox, with the sidecar)."""

    def __init__(self, workers: int = PUSH_WORKERS, backlog: int = PUSH_BACKLOG) -> None:
        self._client: httpx.AsyncClient | None = None
        self._queue: collections.deque[tuple[float, str, object]] = collections.deque()
        self._workers, self._backlog = workers, backlog
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def push_later(self, url: str | None, body: object, delay_s: float) -> None:
        if url is None:
            return
        if len(self._queue) >= self._backlog:
            self.dropped += 1
            return
        self._queue.append((time.monotonic() + delay_s, url, body))
        if self._active < self._workers:
            self._active += 1
            task = asyncio.get_running_loop().create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self) -> None:
        try:
            while self._queue:  # no await between this check and leaving: no lost wake-up
                due, url, body = self._queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    await anyio.sleep(wait)
                await self._push(url, body)
        finally:
            self._active -= 1

    async def _push(self, url: str, body: object) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5, trust_env=False)
        with contextlib.suppress(httpx.HTTPError):
            await self._client.post(
                url, content=orjson.dumps(body), headers={"content-type": "application/json"}
            )

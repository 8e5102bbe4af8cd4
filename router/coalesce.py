"""Coalescing: concurrent messages with the same text to one provider, sent as one request.

A provider whose request carries many numbers under one text (the v1 platform up to 3000;
Ronglian up to 200 with one template and one ``datas``) can carry many messages in one request.
With ``coalesce_ms`` > 0 on a provider, a batch waits up to that long for other batches with
the same rendered content (and the same batch key, e.g. Baofoo's area code); the first to
arrive, the *leader*, sends the merged request when the window ends or the request is full
(``max_batch`` numbers), and every waiting message gets its own recipients' results.

What stays per message: its breaker permit and the breaker/stats record of its outcome, its
attempt events (with the merged request's id as attempt id), its idempotency record and its
per-recipient outcomes. What is shared: the HTTP request, one ``concurrency`` slot and one
``rate_limit_rps`` token.

Truth rules kept:
* one request never names a number twice: a batch that would repeat a number already in the
  open group closes it and opens a new one;
* a message cut short (its deadline) while its group is open or in flight leaves its numbers in
  the request: they may be sent, so they end ``unknown``, as for any attempt cut short;
* the leader's wait and send are shielded from its own cancellation, so the other messages'
  request is never abandoned half-way; the shield is bounded by the window plus the leader's
  attempt timeout (which its deadline already capped);
* if the merged request fails in a way that yields no result, every message in it gets
  ``unknown`` (it may have been sent), never a safe-to-resend rejection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import anyio

from providers.base import (
    AttemptResult,
    Batch,
    ErrorClass,
    Fault,
    FaultKind,
    Mobile,
    Provider,
    RecipientResult,
    Rendered,
    Verdict,
)
from providers.http import HttpClient, send_batch
from router.ids import new_id
from router.limits import RateLimiter

log = logging.getLogger("router.coalesce")
Member = tuple[str, tuple[Mobile, ...]]  # a send id and its numbers in the request


def content_key(rendered: Rendered) -> Hashable:
    """Two batches may share a request only if the provider would render them identically."""
    return (
        rendered.content,
        rendered.template_id,
        rendered.template_params,
        tuple(sorted(rendered.options.items())),
    )


@dataclass(slots=True)
class _Group:
    """One request being gathered: the numbers so far, then its result."""

    request_id: str
    rendered: Rendered
    mobiles: list[Mobile] = field(default_factory=list)
    numbers: set[str] = field(default_factory=set)
    members: list[Member] = field(default_factory=list)
    closed: bool = False
    full: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    result: dict[str, RecipientResult] | None = None
    merged: AttemptResult | None = None
    # After a whole-request refusal for a message fault, each member was sent alone: its
    # numbers' request ids.
    split_ids: dict[str, str] = field(default_factory=dict)

    def fits(self, mobiles: tuple[Mobile, ...], limit: int) -> bool:
        return (
            not self.closed
            and len(self.mobiles) + len(mobiles) <= limit
            and not any(m.e164 in self.numbers for m in mobiles)
        )

    def add(self, send_id: str, mobiles: tuple[Mobile, ...]) -> None:
        self.mobiles.extend(mobiles)
        self.numbers.update(m.e164 for m in mobiles)
        self.members.append((send_id, mobiles))


@dataclass(frozen=True, slots=True)
class Joined:
    """A batch's place in a group: send it with :meth:`Coalescer.send`."""

    group: _Group
    leader: bool

    @property
    def request_id(self) -> str:
        return self.group.request_id


class Coalescer:
    """Per provider: gathers batches with the same content into one request."""

    def __init__(
        self,
        provider: Provider,
        client: HttpClient,
        limiter: AbstractAsyncContextManager[Any],
        rate: RateLimiter | None,
        window_s: float,
        batch_key: Callable[[Mobile], str] | None = None,
        on_flush: Callable[[str, Sequence[Member], AttemptResult], None] | None = None,
    ) -> None:
        self.provider, self.client = provider, client
        self.limiter, self.rate = limiter, rate
        self.window_s = window_s
        self.batch_key = batch_key
        # Called once per request sent, before any member wakes: (request id, members, result)
        self.on_flush = on_flush
        self._open: dict[Hashable, _Group] = {}

    def join(self, send_id: str, mobiles: tuple[Mobile, ...], rendered: Rendered) -> Joined:
        """Put a send's batch into the open group for its content, or open one (as its
        leader)."""
        key = (content_key(rendered), self.batch_key(mobiles[0]) if self.batch_key else None)
        limit = self.provider.max_batch
        group = self._open.get(key)
        leader = group is None or not group.fits(mobiles, limit)
        if leader:
            if group is not None:  # full or repeats a number: send it now, start another
                self._close(key, group)
            group = _Group(new_id(), rendered)
            self._open[key] = group
        assert group is not None
        group.add(send_id, mobiles)
        if len(group.mobiles) >= limit:
            self._close(key, group)
        return Joined(group, leader)

    def _close(self, key: Hashable, group: _Group) -> None:
        group.closed = True
        group.full.set()
        if self._open.get(key) is group:
            del self._open[key]

    async def send(
        self, joined: Joined, batch: Batch, timeout_s: float
    ) -> tuple[str, AttemptResult]:
        """This batch's share of its group's request: the id of the request that carried it
        (the group's, or its own after a split) and its recipients' results."""
        group = joined.group
        if joined.leader:
            with anyio.CancelScope(shield=True):
                await self._lead(group, timeout_s)
        else:
            await group.done.wait()
        request_id = group.split_ids.get(batch.mobiles[0].e164, group.request_id)
        return request_id, _share(self.provider.name, group, batch)

    async def _lead(self, group: _Group, timeout_s: float) -> None:
        try:
            with anyio.move_on_after(self.window_s):
                await group.full.wait()
            if not group.closed:
                for key, open_group in list(self._open.items()):
                    if open_group is group:
                        self._close(key, group)
            merged = Batch(group.request_id, tuple(group.mobiles), group.rendered)
            result = await self._request(merged, timeout_s)
            if _refused_for_a_message(result) and len(group.members) > 1:
                result = await self._split(group, timeout_s)
            if self.on_flush is not None:
                self.on_flush(group.request_id, group.members, result)
            group.merged = result
            group.result = {r.mobile.e164: r for r in result.recipients}
        finally:
            if group.result is None:  # the request may have left: nobody may resend
                log.warning(
                    "%s: coalesced request %s ended without a result; its %d numbers are unknown",
                    self.provider.name,
                    group.request_id,
                    len(group.mobiles),
                )
                fault = Fault(FaultKind.PROVIDER, ErrorClass.PROTOCOL, "coalesced request failed")
                group.merged = AttemptResult(self.provider.name, Verdict.UNKNOWN, (), fault=fault)
                group.result = {}
            group.done.set()

    async def _request(self, batch: Batch, timeout_s: float) -> AttemptResult:
        async with self.limiter:
            if self.rate is not None:
                await self.rate.acquire()
            return await send_batch(self.provider, self.client, batch, timeout_s=timeout_s)

    async def _split(self, group: _Group, timeout_s: float) -> AttemptResult:
        """The provider refused the whole request, perhaps for one member (a bad number;
        providers such as the v1 platform answer per request). Nothing was sent, so each
        member is sent alone: one message's bad number must not fail the others. (A refusal
        for a reason that is the provider's own, e.g. "busy", costs one request per member
        here, bounded by the group; the breaker sees each member's outcome.)"""
        log.info(
            "%s: coalesced request %s of %d messages refused as a whole; sending each alone",
            self.provider.name,
            group.request_id,
            len(group.members),
        )
        results: list[AttemptResult] = []

        async def one(mobiles: tuple[Mobile, ...]) -> None:
            batch = Batch(new_id(), mobiles, group.rendered)
            for m in mobiles:
                group.split_ids[m.e164] = batch.request_id
            results.append(await self._request(batch, timeout_s))

        async with anyio.create_task_group() as tg:
            for _, mobiles in group.members:
                tg.start_soon(one, mobiles)
        recipients = tuple(r for result in results for r in result.recipients)
        accepted = any(r.verdict is Verdict.ACCEPTED for r in recipients)
        verdict = Verdict.ACCEPTED if accepted else results[0].verdict
        return AttemptResult(self.provider.name, verdict, recipients)


def _refused_for_a_message(result: AttemptResult) -> bool:
    """A whole-request refusal that one member's content or number may have caused: a
    message fault, or a business refusal the adapter could not attribute (the v1 platform's
    codes are undocumented). Not a credentials refusal, an HTTP error or a request we could
    not build (the same for every member)."""
    fault = result.fault
    if result.verdict is not Verdict.REJECTED or fault is None:
        return False
    if fault.kind is FaultKind.MESSAGE:
        return fault.error_class is not ErrorClass.INVALID_REQUEST
    return fault.kind is FaultKind.PROVIDER and fault.error_class is ErrorClass.REFUSED


def _share(provider: str, group: _Group, batch: Batch) -> AttemptResult:
    """The merged result, cut down to ``batch``'s recipients."""
    merged = group.merged
    assert merged is not None and group.result is not None
    recipients = tuple(
        group.result.get(m.e164)
        or RecipientResult(m, Verdict.UNKNOWN, fault=merged.fault or _MISSING)
        for m in batch.mobiles
    )
    verdicts = {r.verdict for r in recipients}
    if Verdict.ACCEPTED in verdicts:
        verdict, fault = Verdict.ACCEPTED, None
    elif Verdict.UNKNOWN in verdicts:
        verdict = Verdict.UNKNOWN
        fault = merged.fault or next((r.fault for r in recipients if r.fault), None)
    else:
        verdict = Verdict.REJECTED
        fault = merged.fault or next((r.fault for r in recipients if r.fault), None)
    return AttemptResult(provider, verdict, recipients, fault=fault, http_status=merged.http_status)


_MISSING = Fault(FaultKind.PROVIDER, ErrorClass.MALFORMED, "no result for this number")

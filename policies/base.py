"""The contract between the engine and a routing policy.

A policy is a pure function of a :class:`RouteContext` and a health snapshot: it returns every
candidate provider, either ranked (best first) or excluded, each with the reason. No I/O, no
clock, no randomness of its own (the engine passes a random draw in the context).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """What the engine knows about one provider when a batch is routed."""

    name: str
    weight: float = 1.0
    enabled: bool = True
    credentials_refused: bool = False  # parked after refusing our credentials
    breaker: BreakerState = BreakerState.CLOSED
    can_render: bool = True  # has a rendering for this message (template approved there)
    region_ok: bool = True  # can reach these recipients (mainland / international)
    price_per_part: float = 0.0
    accepted_rate: float | None = None  # recent fraction of attempts accepted
    delivery_rate: float | None = None  # recent fraction of receipts delivered
    latency_s: float | None = None  # recent typical attempt latency
    balance: float | None = None  # remaining balance (messages or money), None if unknown
    spend_left: float | None = None  # budget left this period, None if unlimited


@dataclass(frozen=True, slots=True)
class RouteContext:
    """The batch being routed, as a policy needs to see it."""

    scene: str
    recipients: int
    parts: int = 1  # SMS parts per recipient
    draw: float = 0.0  # uniform random in [0, 1), chosen by the engine


@dataclass(frozen=True, slots=True)
class Ranked:
    name: str
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class Excluded:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ranking:
    ranked: tuple[Ranked, ...]  # best first; open breakers last
    excluded: tuple[Excluded, ...]

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.ranked)


class Policy(Protocol):
    @property
    def name(self) -> str:
        """A short name for logs and the explain call."""
        ...

    def rank(self, context: RouteContext, providers: Sequence[ProviderHealth]) -> Ranking:
        """Order the candidates for one batch. Pure: same inputs, same output."""
        ...


def hard_filter(p: ProviderHealth, context: RouteContext) -> str | None:
    """The reason ``p`` cannot take this batch at all, or None. Shared by every policy."""
    if not p.enabled:
        return "disabled by configuration or an operator"
    if p.credentials_refused:
        return "refused our credentials recently: check its account settings"
    if not p.can_render:
        return "no approved rendering (template) for this message"
    if not p.region_ok:
        return "does not serve these recipients' region"
    if p.balance is not None and p.balance < context.recipients * context.parts:
        return f"balance {p.balance:g} below the {context.recipients * context.parts} parts needed"
    return None

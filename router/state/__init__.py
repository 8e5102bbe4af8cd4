"""Shared state: idempotency records, per-mobile send limits, breaker cool-downs.

Two backends behind :class:`router.state.base.StateStore`: in-memory (the embedded default,
one process) and Redis (several router instances acting as one).
"""

from router.state.base import (
    Acquired,
    Conflict,
    Done,
    InProgress,
    Reservation,
    StateStore,
    fingerprint,
)
from router.state.memory import MemoryStateStore

__all__ = [
    "Acquired",
    "Conflict",
    "Done",
    "InProgress",
    "MemoryStateStore",
    "Reservation",
    "StateStore",
    "fingerprint",
]

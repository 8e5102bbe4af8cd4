"""Per-mobile throttles (``templates.<scene>.throttle_s``) in the state store.

Marks are taken before sending (atomic per mobile across instances) and removed for the
recipients that finally got nothing, so only a sent SMS counts. Marks hold the send's token, so
a removal never takes another send's mark, and a mark written late by a store that timed out
is removed by the outbox once the store's fence has passed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio

from router.config import RouterSettings
from router.errors import StateStoreError
from router.model import Message, RecipientStatus
from router.recipients import Tracker
from router.state.base import StateStore
from router.state.outbox import Outbox, PendingWrite

log = logging.getLogger("router.throttle")
_UNSENT = frozenset({RecipientStatus.REJECTED, RecipientStatus.UNROUTABLE})


class Throttles:
    def __init__(self, settings: RouterSettings, store: StateStore, outbox: Outbox) -> None:
        self.settings = settings
        self.store = store
        self.outbox = outbox

    def window(self, message: Message) -> float | None:
        """The scene's per-mobile window (``templates.<scene>.throttle_s``), if it has one."""
        if message.scene is None:
            return None
        spec = self.settings.templates.get(message.scene)
        return spec.throttle_s if spec is not None else None

    async def take(
        self, scene: str, trackers: Sequence[Tracker], window: float, token: str
    ) -> None:
        by_mobile = {t.mobile.e164: t for t in trackers}
        mobiles = list(by_mobile)
        try:
            throttled = await self.store.throttle(mobiles, scene, window, token=token)
        except StateStoreError as exc:
            # The marks may still be written late (a frozen Redis resumes): remove ours once
            # that can no longer happen, so no mobile stays throttled without an SMS.
            self.outbox.add(
                PendingWrite(
                    "unthrottle",
                    lambda s: s.unthrottle(mobiles, scene, token=token),
                    exc.settles_at or 0.0,
                    size=256 + 24 * len(mobiles),
                )
            )
            raise exc.known(
                "Nothing was sent; the per-mobile limit could not be checked."
            ) from None
        for mobile in throttled:
            by_mobile[mobile].throttle(window)

    async def release_unsent(self, scene: str, trackers: Sequence[Tracker], token: str) -> bool:
        """A recipient nobody took may try again at once: only a sent SMS counts. Returns
        False when the marks could not be removed yet (queued for replay)."""
        unsent = [t.mobile.e164 for t in trackers if t.status in _UNSENT]
        if not unsent:
            return True
        try:
            with anyio.CancelScope(shield=True):
                await self.store.unthrottle(unsent, scene, token=token)
            return True
        except StateStoreError as exc:
            log.warning("throttle marks of unsent recipients queued for removal: %s", exc)
            self.outbox.add(
                PendingWrite(
                    "unthrottle",
                    lambda s: s.unthrottle(unsent, scene, token=token),
                    size=256 + 24 * len(unsent),
                )
            )
            return False

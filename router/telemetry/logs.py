"""One clear log line per thing an operator acts on; never a mobile number or a secret."""

from __future__ import annotations

import logging

from router.events import (
    AttemptFinished,
    BreakerChanged,
    CallbackRejected,
    CredentialsRefused,
    Event,
    FailoverBudgetExhausted,
    FailoverTaken,
    PanicSend,
    SendFinished,
    SendRefused,
    UnknownResolved,
)


class LoggingSink:
    # What an operator acts on; the bus hands this sink nothing else.
    handles = frozenset(
        {
            AttemptFinished,
            BreakerChanged,
            CallbackRejected,
            CredentialsRefused,
            FailoverBudgetExhausted,
            FailoverTaken,
            PanicSend,
            SendFinished,
            SendRefused,
            UnknownResolved,
        }
    )

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("router")

    def handle(self, event: Event) -> None:
        log = self._log
        if isinstance(event, AttemptFinished) and event.verdict.value != "accepted":
            log.warning(
                "provider=%s attempt=%s outcome=%s error_class=%s batch=%d duration_ms=%.0f",
                event.provider,
                event.attempt_id,
                event.verdict.value,
                event.error_class.value if event.error_class else "none",
                event.batch_size,
                event.duration_s * 1000,
            )
        elif isinstance(event, BreakerChanged):
            log.warning(
                "provider=%s breaker %s -> %s", event.provider, event.old_state, event.new_state
            )
        elif isinstance(event, CredentialsRefused):
            log.error(
                "provider=%s refused our credentials (code=%s: %s): a configuration error; "
                "check providers.%s account settings (user, password or key, and the "
                "environment variables that set them); left out of routing for %gs",
                event.provider,
                event.code,
                event.detail,
                event.provider,
                event.park_s,
            )
        elif isinstance(event, PanicSend):
            log.error(
                "provider=%s panic send: every candidate's breaker is open (send=%s)",
                event.provider,
                event.send_id,
            )
        elif isinstance(event, UnknownResolved):
            level = logging.WARNING if event.outcome == "unknown" else logging.INFO
            log.log(
                level,
                "provider=%s %d unknown recipients settled by %s: %s%s",
                event.provider,
                event.recipients,
                event.method,
                event.outcome,
                f" ({event.reason})" if event.reason else "",
            )
        elif isinstance(event, FailoverTaken):
            log.info(
                "failover %s -> %s recipients=%d send=%s",
                event.from_provider,
                event.to_provider,
                event.recipients,
                event.send_id,
            )
        elif isinstance(event, FailoverBudgetExhausted):
            log.warning(
                "provider=%s failover budget exhausted: %d recipients finished without failover "
                "(send=%s)",
                event.from_provider,
                event.recipients,
                event.send_id,
            )
        elif isinstance(event, CallbackRejected):
            log.warning("provider=%s callback rejected: reason=%s", event.provider, event.reason)
        elif isinstance(event, SendRefused) and event.reason in ("store", "internal"):
            # The router's own refusals (the caller's are answered as errors, not logged).
            log.error(
                "send refused, nothing was sent: reason=%s scene=%s recipients=%d",
                event.reason,
                event.scene,
                event.recipients,
            )
        elif isinstance(event, SendFinished) and log.isEnabledFor(logging.DEBUG):
            # One line per send is for debugging; failures above are what an operator reads.
            log.debug(
                "send=%s scene=%s recipients=%d %s duration_ms=%.0f",
                event.send_id,
                event.scene,
                event.recipients,
                " ".join(f"{k}={v}" for k, v in event.by_status),
                event.duration_s * 1000,
            )

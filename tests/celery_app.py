"""The README's example notification task, run by a real Celery worker in the tests.

Broker and result backend: SMS_ROUTER_CELERY_BROKER (Redis). Router config:
SMS_ROUTER_CONFIG (a TOML file). One router per worker process, created after the fork.
"""

from __future__ import annotations

import os

from celery import Celery

from router import Message
from router.sync import SyncRouter

app = Celery(
    "notifications",
    broker=os.environ.get("SMS_ROUTER_CELERY_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("SMS_ROUTER_CELERY_BROKER", "redis://127.0.0.1:6379/0"),
)
sms = SyncRouter.from_config(os.environ.get("SMS_ROUTER_CONFIG"))


@app.task(name="notifications.send_otp")  # type: ignore[untyped-decorator]
def send_otp(mobile: str, code: str, key: str) -> dict[str, str | None]:
    result = sms.send(
        Message(mobiles=[mobile], scene="login_code", params={"code": code}, idempotency_key=key)
    )
    r = result.recipients[0]
    return {"status": r.status.value, "provider": r.provider, "message_id": result.message_id}

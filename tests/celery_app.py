"""A notification service's Celery app as the README shows it: ``router.celery.install``.

Broker and result backend: SMS_ROUTER_CELERY_BROKER (Redis). The router config
(SMS_ROUTER_CONFIG) is read by the worker only, on its first task: this module imports
without it, as a producer process would.
"""

from __future__ import annotations

import os

from celery import Celery

from router.celery import install

BROKER = os.environ.get("SMS_ROUTER_CELERY_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("notifications", broker=BROKER, backend=BROKER)
# How long the chunk of a worker killed outright waits before it is delivered again.
# kombu scans for such chunks every unacked_restore_interval x unacked_restore_throttle s.
app.conf.broker_transport_options = {
    "visibility_timeout": float(os.environ.get("SMS_ROUTER_VISIBILITY_S", "3600")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
app.conf.worker_prefetch_multiplier = 1
sms = install(app)

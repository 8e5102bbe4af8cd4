"""Our ids: send ids and the correlation id sent with each provider request."""

from __future__ import annotations

import os


def new_id() -> str:
    """32 random hex characters (128 bits, like a uuid4 without its object; about 4x cheaper
    on the per-send path). Fits every provider's correlation field (Ronglian reqId <= 32)."""
    return os.urandom(16).hex()

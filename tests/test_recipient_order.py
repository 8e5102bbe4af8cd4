"""Outcomes come back in the order the caller gave the numbers, invalid and repeated entries
included (they used to move to the end)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from router.model import RecipientStatus
from router.recipients import prepare_recipients

ENTRIES = ["13800000001", "+86 138 0000 0001", "13900000002", "12345", "abc", "+8613700000003"]


@given(st.lists(st.sampled_from(ENTRIES), min_size=1, max_size=40))
def test_outcomes_keep_request_order(mobiles: list[str]) -> None:
    recipients = prepare_recipients(mobiles, "CN", strict=False)
    for tracker in recipients.trackers:
        tracker.unroutable("test")  # any final status: outcomes need one
    outcomes = recipients.outcomes()
    assert [o.mobile for o in outcomes] == mobiles
    invalid = [o.mobile for o in outcomes if o.status is RecipientStatus.INVALID]
    assert invalid == [m for m in mobiles if m in ("12345", "abc")]

"""The routing engine end to end over loopback HTTP to the three emulators."""

from __future__ import annotations

import pytest

from providers.emulators._common import FaultSettings
from router import (
    InvalidMobileError,
    Message,
    RecipientStatus,
    Router,
    UnknownTemplateError,
)
from router.errors import MissingParamError, NoRouteError
from tests.sandbox import RunningSandbox, only

pytestmark = pytest.mark.anyio

OTP = {"code": "123456"}


@pytest.fixture(autouse=True)
def _clean(sandbox: RunningSandbox) -> None:
    sandbox.reset()


def mainland(n: int, start: int = 0) -> list[str]:
    return [f"138{start + i:08d}" for i in range(n)]


async def test_a_message_is_accepted_and_sent_once(sandbox: RunningSandbox) -> None:
    async with only(sandbox, "baofoo") as router:
        result = await router.send(
            Message(mobiles=["+86 138-0013-8000"], scene="login_code", params=OTP)
        )
    assert result.ok
    [r] = result.recipients
    assert (r.status, r.provider, r.normalised) == (
        RecipientStatus.ACCEPTED,
        "baofoo",
        "+8613800138000",
    )
    assert r.provider_message_id
    assert sandbox.mobiles_sent("baofoo") == [["13800138000"]]


async def test_invalid_and_duplicate_mobiles_are_reported_never_sent(
    sandbox: RunningSandbox,
) -> None:
    async with only(sandbox, "baofoo") as router:
        result = await router.send(
            Message(
                mobiles=["13800138000", "0086 138 0013 8000", "12345"],
                scene="login_code",
                params=OTP,
            )
        )
    statuses = [(r.mobile, r.status) for r in result.recipients]
    assert statuses == [
        ("13800138000", RecipientStatus.ACCEPTED),
        ("0086 138 0013 8000", RecipientStatus.ACCEPTED),
        ("12345", RecipientStatus.INVALID),
    ]
    assert sandbox.mobiles_sent("baofoo") == [["13800138000"]]


async def test_strict_mode_raises_on_an_invalid_mobile(sandbox: RunningSandbox) -> None:
    async with only(sandbox, "baofoo", invalid_mobiles="raise") as router:
        with pytest.raises(InvalidMobileError, match="12345"):
            await router.send(Message(mobiles=["12345"], scene="login_code", params=OTP))
    assert sandbox.sends("baofoo") == []


async def test_message_faults_raise_clear_errors(sandbox: RunningSandbox) -> None:
    async with only(sandbox, "baofoo", "ronglian") as router:
        with pytest.raises(UnknownTemplateError, match="no_such_scene"):
            await router.send(Message(mobiles=["13800138000"], scene="no_such_scene"))
        with pytest.raises(MissingParamError, match="code"):
            await router.send(Message(mobiles=["13800138000"], scene="login_code"))
    async with only(sandbox, "ronglian") as router:
        # Ronglian has templates only: free content has no route there.
        result = await router.send(Message(mobiles=["13800138000"], content="hello"))
        assert result.recipients[0].status is RecipientStatus.UNROUTABLE
    # A template-only scene without a template id at any provider has no route at all.
    async with Router(sandbox.settings(templates={"x": {"content": None}})) as router:
        with pytest.raises(NoRouteError, match="'x'"):
            await router.send(Message(mobiles=["13800138000"], scene="x"))


@pytest.mark.parametrize(("provider", "limit"), [("ronglian", 200), ("v1platform", 3000)])
async def test_batches_are_split_at_the_provider_limit(
    sandbox: RunningSandbox, provider: str, limit: int
) -> None:
    n = limit * 2 + 7
    async with only(sandbox, provider) as router:
        result = await router.send(Message(mobiles=mainland(n), scene="login_code", params=OTP))
    assert result.ok
    sizes = sorted(len(b) for b in sandbox.mobiles_sent(provider))
    assert sizes == [7, limit, limit]


async def test_configured_limit_for_baofoo(sandbox: RunningSandbox) -> None:
    settings = sandbox.settings()
    providers = dict(settings.providers)
    providers["baofoo"] = {**providers["baofoo"], "max_batch": 50}
    async with Router(sandbox.settings(providers=providers)) as router:
        for name in router.providers:
            router.set_enabled(name, name == "baofoo")
        result = await router.send(Message(mobiles=mainland(120), scene="login_code", params=OTP))
    assert result.ok
    assert sorted(len(b) for b in sandbox.mobiles_sent("baofoo")) == [20, 50, 50]


async def test_refused_batches_fail_over_to_the_next_provider(sandbox: RunningSandbox) -> None:
    sandbox.state("baofoo").set_faults(FaultSettings(error_rate=1.0))
    async with only(sandbox, "baofoo", "v1platform") as router:
        result = await router.send(Message(mobiles=mainland(3), scene="login_code", params=OTP))
    assert result.ok
    for r in result.recipients:
        assert r.provider == "v1platform"
        assert [a.provider for a in r.attempts] == ["baofoo", "v1platform"]
        assert [a.verdict for a in r.attempts] == ["rejected", "accepted"]


async def test_a_message_fault_does_not_fail_over(sandbox: RunningSandbox) -> None:
    bad, good = mainland(2)
    sandbox.state("baofoo").set_faults(FaultSettings(reject_mobiles=[bad]))
    async with only(sandbox, "baofoo", "v1platform") as router:
        result = await router.send(Message(mobiles=[bad], scene="login_code", params=OTP))
        ok = await router.send(Message(mobiles=[good], scene="login_code", params=OTP))
    assert result.recipients[0].status is RecipientStatus.REJECTED
    assert sandbox.sends("v1platform") == []
    assert ok.ok


async def test_unknown_outcomes_are_not_resent_by_default(sandbox: RunningSandbox) -> None:
    sandbox.state("baofoo").set_faults(FaultSettings(http_5xx_rate=1.0))
    async with only(sandbox, "baofoo", "v1platform") as router:
        result = await router.send(Message(mobiles=mainland(2), scene="login_code", params=OTP))
    assert {r.status for r in result.recipients} == {RecipientStatus.UNKNOWN}
    assert sandbox.sends("v1platform") == []


async def test_at_least_once_resends_unknowns_elsewhere(sandbox: RunningSandbox) -> None:
    sandbox.state("baofoo").set_faults(FaultSettings(http_5xx_rate=1.0))
    async with only(sandbox, "baofoo", "v1platform", unknown_outcomes="at_least_once") as r:
        result = await r.send(Message(mobiles=mainland(2), scene="login_code", params=OTP))
    assert result.ok
    assert all(x.provider == "v1platform" for x in result.recipients)


async def test_connect_refused_is_a_rejection_and_fails_over(sandbox: RunningSandbox) -> None:
    sandbox.servers["baofoo"].stop()
    try:
        async with only(sandbox, "baofoo", "v1platform") as router:
            result = await router.send(Message(mobiles=mainland(1), scene="login_code", params=OTP))
    finally:
        sandbox.servers["baofoo"].start()
    [r] = result.recipients
    assert r.status is RecipientStatus.ACCEPTED and r.provider == "v1platform"
    assert r.attempts[0].fault is not None
    assert r.attempts[0].fault.error_class.value == "connect"


async def test_deadline_turns_in_flight_recipients_unknown(sandbox: RunningSandbox) -> None:
    sandbox.state("baofoo").set_faults(FaultSettings(timeout_rate=1.0, hang_s=3))
    async with only(sandbox, "baofoo", "v1platform", send_deadline_s=0.3) as router:
        result = await router.send(Message(mobiles=mainland(2), scene="login_code", params=OTP))
    assert {r.status for r in result.recipients} == {RecipientStatus.UNKNOWN}
    assert sandbox.sends("v1platform") == []


async def test_explain_ranks_without_sending(sandbox: RunningSandbox) -> None:
    async with only(sandbox, "baofoo", "v1platform", "ronglian") as router:
        router.set_enabled("v1platform", False)
        explanation = router.explain(
            Message(mobiles=["13800138000"], scene="login_code", params=OTP)
        )
    ranking = explanation.rankings["mainland"]
    assert set(ranking.order) == {"baofoo", "ronglian"}
    assert [e.name for e in ranking.excluded] == ["v1platform"]
    assert all(r.reason for r in ranking.ranked)
    assert sandbox.sends("baofoo") == [] and sandbox.sends("ronglian") == []

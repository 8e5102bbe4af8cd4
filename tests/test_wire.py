"""Pre-encoded requests: the bytes are what httpx would send for the same fields, and
nothing secret shows in a request's repr."""

from __future__ import annotations

from urllib.parse import quote_plus

import httpx
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr

from providers.base import Batch, Rendered
from providers.mobile import normalise
from providers.v1platform import V1PlatformProvider, V1PlatformSettings
from providers.wire import WireRequest, _quote, form_prefix, form_request

# Form text without lone surrogates (those cannot be encoded by anyone).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
# Near-plain text too: the encoder skips quoting for values made only of unreserved
# characters, so mobiles, ids and their neighbours (space, +, &, =, %) must be exercised.
NEAR_PLAIN = st.text("aZ09_.~-+&=% \n", max_size=20)
FIELDS = st.dictionaries(TEXT | NEAR_PLAIN, TEXT | NEAR_PLAIN, max_size=5)


@given(prefix=FIELDS, fields=FIELDS)
def test_a_form_body_is_byte_for_byte_what_httpx_encodes(
    prefix: dict[str, str], fields: dict[str, str]
) -> None:
    fields = {k: v for k, v in fields.items() if k not in prefix}
    assume(prefix or fields)  # httpx sends no body (nor its type) for no fields at all
    ours = form_request("http://p/send", fields, prefix=form_prefix(prefix))
    theirs = httpx.Request("POST", "http://p/send", data={**prefix, **fields})
    assert ours.body == theirs.read()
    assert ours.header("content-type") == theirs.headers["content-type"]
    assert ours.form() == {**prefix, **fields}


@given(content=TEXT.filter(bool), task=st.text("0123456789abcdef", min_size=1, max_size=32))
def test_the_v1_send_body_is_the_documented_form(content: str, task: str) -> None:
    settings = V1PlatformSettings(
        base_url="http://v1",
        account="acct",
        password=SecretStr("s3cret&="),
        signature="【签名】",
    )
    provider = V1PlatformProvider("v1", settings)
    mobiles = (normalise("13800138000"), normalise("13900139000"))
    request = provider.build_request(Batch(task, mobiles, Rendered(content=content)))
    expected = {
        "account": "acct",
        "pwd": settings.pwd(),
        "taskId": task,
        "mobiles": "13800138000,13900139000",
        "content": content,
    }
    assert request.body == httpx.Request("POST", "http://v1/api/v1/send", data=expected).read()
    assert request.url == "http://v1/api/v1/send"


def test_a_request_repr_shows_the_path_only() -> None:
    request = WireRequest("POST", "http://p/x?sig=SECRETSIG", body=b"pwd=SECRET")
    assert repr(request) == "WireRequest(POST /x, 10 bytes)"
    assert request.query() == {"sig": "SECRETSIG"}
    assert request.to_httpx().url.params["sig"] == "SECRETSIG"


@given(text=TEXT | NEAR_PLAIN)
def test_each_value_is_encoded_as_quote_plus_encodes_it(text: str) -> None:
    assert _quote(text) == quote_plus(text)

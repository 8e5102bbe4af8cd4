"""Provider requests and answers as plain bytes: what adapters build and parse, what a
transport carries.

An adapter's ``build_request`` returns a :class:`WireRequest` (method, URL, headers, the body
already encoded) and its ``parse_response`` reads anything shaped like :class:`Response`
(:class:`WireResponse` from the router's transports, or an ``httpx.Response`` in tests and
in embedding code). No HTTP client objects are built per attempt: an ``httpx.Request`` costs
~60 us of CPU to build (header normalisation, URL parsing, body encoding) and another copy of
its headers to hand to aiohttp; a ``WireRequest`` is one tuple. httpx remains a transport
(:meth:`WireRequest.to_httpx`, :class:`router.transport.HttpxClient`).

The body is encoded exactly as httpx would encode the same fields (``urllib.parse.urlencode``
for forms, the caller's bytes for JSON); multipart bodies, rare, are encoded by httpx once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx

from providers.frozen import fast_init

FORM = "application/x-www-form-urlencoded"


@fast_init
@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request, ready to write. ``headers`` excludes what every transport adds
    itself (Host, Content-Length, User-Agent, Accept-Encoding)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = field(default=b"", repr=False)

    def __repr__(self) -> str:
        # The path only: a query may carry a signature (Ronglian's sig), a body a password.
        return f"WireRequest({self.method} {self.path}, {len(self.body)} bytes)"

    @property
    def content(self) -> bytes:
        """The body (httpx's name for it)."""
        return self.body

    @property
    def path(self) -> str:
        """The URL's path: what error messages and logs may show."""
        return urlsplit(self.url).path

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def query(self) -> dict[str, str]:
        """The URL's query parameters (the last value of a repeated name)."""
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    def form(self) -> dict[str, str]:
        """The fields of a form-encoded body."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def to_httpx(self) -> httpx.Request:
        """The same request as an ``httpx.Request`` (for an httpx transport, or a test)."""
        return httpx.Request(self.method, self.url, headers=list(self.headers), content=self.body)


_FORM_HEADERS = (("Content-Type", FORM),)
# What quote_plus leaves as is: such a value (a mobile, an id) is its own encoding.
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")
# Runs of what quote_plus percent-encodes (everything else, but the space it makes "+").
_ENCODED_RUN = re.compile(r"[^A-Za-z0-9_.~ -]+")


def _percent(run: re.Match[str]) -> str:
    """One run of characters as %XX per UTF-8 byte (in C: no loop per byte in Python)."""
    return "%" + run.group().encode().hex("%").upper()


def _quote(text: str) -> str:
    """``urlencode``'s encoding of one name or value: ``quote_plus``'s output, byte for byte
    (tests/test_wire.py), skipped when there is nothing to encode. quote_plus walks every
    byte in Python (~4 us for a short Chinese text); this encodes each run of them at once."""
    if _PLAIN.fullmatch(text):
        return text
    return _ENCODED_RUN.sub(_percent, text).replace(" ", "+")


def _encode_form(fields: Mapping[str, str]) -> bytes:
    """``fields`` as ``urlencode`` encodes them (one encoder for bodies and prefixes)."""
    return "&".join(f"{_quote(k)}={_quote(v)}" for k, v in fields.items()).encode()


def form_request(url: str, fields: Mapping[str, str], *, prefix: bytes = b"") -> WireRequest:
    """``POST`` of ``application/x-www-form-urlencoded`` fields, byte for byte as httpx's
    ``data=fields`` encodes them. ``prefix``: fields encoded once (``form_prefix``) that go
    first, such as an account's credentials."""
    body = _encode_form(fields)
    if prefix:
        body = prefix + b"&" + body if body else prefix
    return WireRequest("POST", url, _FORM_HEADERS, body)


def form_prefix(fields: Mapping[str, str]) -> bytes:
    """``fields`` encoded once, to be the ``prefix`` of every ``form_request`` after."""
    return _encode_form(fields)


def multipart_request(url: str, parts: Mapping[str, tuple[None, bytes, str]]) -> WireRequest:
    """``POST`` of ``multipart/form-data`` fields (``name -> (None, bytes, content type)``),
    encoded by httpx (a random boundary per request)."""
    request = httpx.Request("POST", url, files=parts)
    body = request.read()
    return WireRequest("POST", url, (("Content-Type", request.headers["Content-Type"]),), body)


class Response(Protocol):
    """What an adapter may read of an answer; ``httpx.Response`` has it too."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def is_success(self) -> bool: ...


@fast_init
@dataclass(frozen=True, slots=True)
class WireResponse:
    """A provider's answer, fully read."""

    status_code: int
    content: bytes = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


__all__ = [
    "FORM",
    "Response",
    "WireRequest",
    "WireResponse",
    "form_prefix",
    "form_request",
    "multipart_request",
]

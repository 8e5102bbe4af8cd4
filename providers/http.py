"""The one place a provider HTTP exchange happens, and the one translation of what went wrong.

Every exchange with a provider (sends, report and reply pulls, balance queries) goes through
one :meth:`HttpClient.exchange` (:mod:`router.transport`): it sends a :class:`WireRequest`,
reads the body, releases the connection, and turns every transport error into
:class:`ProviderIOError` (a ``RouterError``) carrying the outcome class. Nothing above this
module sees an httpx or aiohttp error.

The rule that keeps the router from double sending: an error is ``REJECTED`` (safe to fail over)
only when the request provably never reached the provider, i.e. the connection was never
established. Anything that can happen after the request was written (read timeout, dropped
connection, 5xx, unreadable body) is ``UNKNOWN``.
"""

from __future__ import annotations

import logging
import sys
from typing import Protocol

import httpx

from providers.base import (
    AttemptResult,
    Balance,
    BalanceQuery,
    Batch,
    DeliveryReport,
    ErrorClass,
    Fault,
    FaultKind,
    InboundMessage,
    InboundPuller,
    Provider,
    ReportPuller,
    Verdict,
)
from providers.errors import RouterError
from providers.wire import Response, WireRequest, WireResponse

log = logging.getLogger("providers.http")


class HttpClient(Protocol):
    """What sending needs of a client: :class:`router.http1.Http1Client` (the
    default) or :class:`router.transport.HttpxClient` (around any ``httpx.AsyncClient``)."""

    async def exchange(self, request: WireRequest, timeout_s: float | None) -> WireResponse:
        """Send ``request`` and read the whole answer within ``timeout_s`` (the client's own
        when None; connecting keeps the client's shorter connect timeout). Raises
        :class:`ProviderIOError` for every transport error, and nothing else."""
        ...

    async def aclose(self) -> None: ...


def _aiohttp_errors() -> tuple[tuple[type[BaseException], ...], type[BaseException] | None]:
    """(never-connected error types, the base error type) of aiohttp, looked up only once
    aiohttp is loaded (the aiohttp transports load it; until then no error can be its)."""
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return (), None
    # Never connected: no byte of the request can have reached the provider.
    return (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError), aiohttp.ClientError


class ProviderIOError(RouterError):
    """A provider exchange failed in transport. ``verdict`` says whether the request may have
    reached the provider (REJECTED: never connected; UNKNOWN: it may have)."""

    def __init__(self, verdict: Verdict, fault: Fault, what: str) -> None:
        self.verdict, self.fault = verdict, fault
        # The path and the error type only: URLs and bodies may hold credentials.
        super().__init__(f"{what} failed: {fault.error_class.value} ({fault.detail})")


async def pull_reports(provider: ReportPuller, client: HttpClient) -> list[DeliveryReport]:
    """Pending delivery reports; raises ProviderIOError or ProviderResponseError."""
    return provider.parse_report(await client.exchange(provider.build_report_request(), None))


async def pull_inbound(provider: InboundPuller, client: HttpClient) -> list[InboundMessage]:
    """Pending replies (MO); raises ProviderIOError or ProviderResponseError."""
    return provider.parse_mo(await client.exchange(provider.build_mo_request(), None))


async def query_balance(provider: BalanceQuery, client: HttpClient) -> Balance:
    """The account balance; raises ProviderIOError or ProviderResponseError."""
    return provider.parse_balance(await client.exchange(provider.build_balance_request(), None))


def classify_exception(exc: httpx.HTTPError) -> tuple[Verdict, Fault]:
    """Map an httpx transport error to a verdict. Only "never connected" is a provable
    rejection."""
    cause = exc.__cause__
    not_connected, aiohttp_error = _aiohttp_errors()
    if aiohttp_error is not None and isinstance(cause, aiohttp_error):
        # httpx-aiohttp maps every aiohttp ClientConnectionError (including "server
        # disconnected" after the request was written) to ConnectTimeout, so decide on the cause.
        if isinstance(cause, not_connected):
            return Verdict.REJECTED, _provider_fault(ErrorClass.CONNECT, exc)
        if isinstance(exc, httpx.TimeoutException):
            return Verdict.UNKNOWN, _provider_fault(ErrorClass.TIMEOUT, exc)
        return Verdict.UNKNOWN, _provider_fault(ErrorClass.PROTOCOL, exc)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Verdict.REJECTED, _provider_fault(ErrorClass.CONNECT, exc)
    if isinstance(exc, httpx.TimeoutException):
        return Verdict.UNKNOWN, _provider_fault(ErrorClass.TIMEOUT, exc)
    return Verdict.UNKNOWN, _provider_fault(ErrorClass.PROTOCOL, exc)


def io_error(
    verdict: Verdict, error_class: ErrorClass, exc: BaseException, path: str
) -> ProviderIOError:
    """The :class:`ProviderIOError` for a transport error of a request to ``path``."""
    return ProviderIOError(verdict, _provider_fault(error_class, exc), path)


def _provider_fault(error_class: ErrorClass, exc: BaseException) -> Fault:
    # The exception text may contain the URL; adapters keep secrets out of URLs except
    # Ronglian's sig, which is a one-day signature, so only the exception type is kept.
    return Fault(FaultKind.PROVIDER, error_class, detail=type(exc).__name__)


def status_fault(response: Response) -> tuple[Verdict, Fault] | None:
    """Verdict for a non-2xx status that the adapter did not explain itself."""
    code = response.status_code
    if code >= 500:
        return Verdict.UNKNOWN, Fault(FaultKind.PROVIDER, ErrorClass.HTTP_5XX, str(code))
    if code in (401, 403):
        return Verdict.REJECTED, Fault(FaultKind.CREDENTIALS, ErrorClass.AUTH, str(code))
    if code >= 400:
        return Verdict.REJECTED, Fault(FaultKind.PROVIDER, ErrorClass.HTTP_4XX, str(code))
    return None


def http_failure(provider: str, batch: Batch, response: Response) -> AttemptResult:
    """Every recipient's outcome for a non-2xx answer the adapter did not explain itself
    (:func:`status_fault`; a 2xx or 1xx/3xx that reaches here may have been sent)."""
    verdict, fault = status_fault(response) or (Verdict.UNKNOWN, None)
    return AttemptResult.uniform(
        provider, batch, verdict, fault=fault, http_status=response.status_code
    )


def unbuildable(provider: str, batch: Batch, exc: Exception) -> AttemptResult:
    """``build_request`` failed: provably not sent, and the message's fault, never the
    provider's (no failover to a provider that would fail the same way, no breaker count)."""
    if isinstance(exc, UnicodeError) or not _encodable(batch):
        # Lone surrogates (from a bad decode upstream) cannot be UTF-8 encoded; JSON encoders
        # say so with a TypeError, hence the check of the text itself.
        detail = (
            "the message text cannot be encoded (lone surrogates or other invalid Unicode "
            "in the content or params); fix the text before sending"
        )
    else:
        # Only the type: the text of an arbitrary error may carry a credential.
        detail = f"the request could not be built ({type(exc).__name__})"
    log.warning("%s: batch %s not sent: %s", provider, batch.request_id, detail)
    fault = Fault(FaultKind.MESSAGE, ErrorClass.INVALID_REQUEST, detail=detail)
    return AttemptResult.uniform(provider, batch, Verdict.REJECTED, fault=fault)


def _encodable(batch: Batch) -> bool:
    rendered = batch.rendered
    texts = (rendered.content or "", *rendered.template_params, *rendered.options.values())
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def malformed(provider: str, batch: Batch, response: Response, why: str) -> AttemptResult:
    """The provider answered 2xx but we cannot read the answer: it may have sent."""
    fault = Fault(FaultKind.PROVIDER, ErrorClass.MALFORMED, detail=why)
    return AttemptResult.uniform(
        provider, batch, Verdict.UNKNOWN, fault=fault, http_status=response.status_code
    )


async def send_batch(
    provider: Provider,
    client: HttpClient,
    batch: Batch,
    *,
    timeout_s: float | None = None,
) -> AttemptResult:
    """Send ``batch`` through ``client`` and classify the outcome. Never raises transport errors.

    ``timeout_s`` caps this attempt (the engine derives it from the send's deadline); the
    connect part keeps the client's own, shorter, connect timeout. A request that cannot be
    built (text that cannot be encoded, an adapter bug) is rejected for this batch alone.
    """
    try:
        request = provider.build_request(batch)
    except Exception as exc:  # any build or encode failure: nothing was written anywhere
        return unbuildable(provider.name, batch, exc)
    try:
        response = await client.exchange(request, timeout_s)
    except ProviderIOError as exc:
        return AttemptResult.uniform(provider.name, batch, exc.verdict, fault=exc.fault)
    return provider.parse_response(batch, response)

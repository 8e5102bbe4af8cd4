"""``/v1/broadcasts``: start a broadcast job, follow its progress and results, cancel it."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from router.broadcasts import counts_json
from router.engine import Router
from router.errors import IdempotencyConflictError, MessageError, RouterError, StateStoreError
from router.sidecar.responses import error_response, json_response, parse_body
from router.sidecar.schemas import BroadcastRequest
from router.state.jobs import JobProgress

MAX_PAGE = 10_000
_ERRORS: tuple[tuple[type[RouterError], int, str], ...] = (
    (IdempotencyConflictError, 409, "idempotency_conflict"),
    (MessageError, 400, "bad_message"),
    (StateStoreError, 503, "state_store_unavailable"),
    (RouterError, 500, "internal_error"),
)
_NOT_FOUND = "no broadcast job with that id (expired after broadcasts.ttl_s, or never created)"


class Broadcasts:
    def __init__(self, router: Router) -> None:
        self.jobs = router.broadcasts

    def routes(self) -> list[Route]:
        return [
            Route("/v1/broadcasts", self.submit, methods=["POST"]),
            Route("/v1/broadcasts/{job_id}", self.progress, methods=["GET"]),
            Route("/v1/broadcasts/{job_id}/results", self.results, methods=["GET"]),
            Route("/v1/broadcasts/{job_id}/cancel", self.cancel, methods=["POST"]),
        ]

    async def submit(self, request: Request) -> Response:
        """``POST /v1/broadcasts``: 202 with the job (the same idempotency key again: the
        same job, its unfinished chunks resumed)."""
        body = await parse_body(request, BroadcastRequest)
        if isinstance(body, Response):
            return body
        try:
            progress = await self.jobs.submit(
                body.to_message(request.headers.get("idempotency-key"))
            )
        except RouterError as exc:
            status, kind = next((s, k) for c, s, k in _ERRORS if isinstance(exc, c))
            return error_response(status, kind, str(exc))
        response = json_response(counts_json(progress), 202)
        response.headers["location"] = f"/v1/broadcasts/{progress.spec.job_id}"
        return response

    async def progress(self, request: Request) -> Response:
        """``GET /v1/broadcasts/{id}``: recipients by status, chunks done, state."""
        return await _job_answer(self.jobs.progress(request.path_params["job_id"]))

    async def results(self, request: Request) -> Response:
        """``GET /v1/broadcasts/{id}/results?offset=0&limit=1000``: one page of recipients."""
        try:
            offset = int(request.query_params.get("offset", "0"))
            limit = int(request.query_params.get("limit", "1000"))
        except ValueError:
            return error_response(400, "bad_request", "offset and limit must be integers")
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            return error_response(
                400, "bad_request", f"offset must be >= 0 and limit within 1..{MAX_PAGE}"
            )
        try:
            found = await self.jobs.results(request.path_params["job_id"], offset, limit)
        except StateStoreError as exc:
            return error_response(503, "state_store_unavailable", str(exc))
        if found is None:
            return error_response(404, "not_found", _NOT_FOUND)
        progress, rows = found
        end = offset + len(rows)
        return json_response(
            {
                "job": counts_json(progress),
                "offset": offset,
                "recipients": rows,
                "next_offset": end if end < progress.spec.total else None,
            }
        )

    async def cancel(self, request: Request) -> Response:
        """``POST /v1/broadcasts/{id}/cancel``: chunks not started settle as cancelled."""
        return await _job_answer(self.jobs.cancel(request.path_params["job_id"]))


async def _job_answer(lookup: Awaitable[JobProgress | None]) -> Response:
    """The job's progress body, 404 when there is no such job, 503 when the store fails."""
    try:
        progress = await lookup
    except StateStoreError as exc:
        return error_response(503, "state_store_unavailable", str(exc))
    if progress is None:
        return error_response(404, "not_found", _NOT_FOUND)
    return json_response(counts_json(progress))

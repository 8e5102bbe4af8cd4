"""Log lines carry the current trace and span ids, as text or as JSON."""

from __future__ import annotations

import io
import logging

import orjson
from opentelemetry.sdk.trace import TracerProvider

from router.telemetry.logformat import TEXT, JsonFormatter, TraceContextFilter


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logformat.{id(out)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_json_lines_carry_the_span_they_were_logged_in() -> None:
    logger, out = _logger(JsonFormatter())
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("sms.send") as span:
        logger.warning("provider=%s breaker %s -> %s", "v1platform", "closed", "open")
    logger.info("outside")
    inside, outside = (orjson.loads(line) for line in out.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert inside["message"] == "provider=v1platform breaker closed -> open"
    assert (outside["trace_id"], outside["span_id"]) == ("-", "-")


def test_text_lines_name_the_trace() -> None:
    logger, out = _logger(logging.Formatter(TEXT))
    with TracerProvider().get_tracer("test").start_as_current_span("x") as span:
        logger.info("hello")
    assert f"trace_id={format(span.get_span_context().trace_id, '032x')}" in out.getvalue()

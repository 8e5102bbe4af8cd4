"""The sidecar's tracing set-up follows the standard OTEL_* variables."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from router.errors import ConfigError
from router.telemetry.tracing import _exporter, _resource

OTEL = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)


def test_service_name_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _resource().attributes["service.name"] == "sms-router"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "sms-sidecar-eu")
    assert _resource().attributes["service.name"] == "sms-sidecar-eu"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=sms")
    resource = _resource()
    assert (resource.attributes["service.name"], resource.attributes["team"]) == (
        "from-attrs",
        "sms",
    )


def test_the_exporter_follows_otel_traces_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _exporter("") is None  # no endpoint: nothing to export to
    assert _exporter("none") is None
    assert isinstance(_exporter("console"), ConsoleSpanExporter)
    assert isinstance(_exporter("otlp"), OTLPSpanExporter)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert isinstance(_exporter(""), OTLPSpanExporter)
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        _exporter("zipkin")

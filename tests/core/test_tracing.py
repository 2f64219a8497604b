"""Tracing's configuration (the standard OTEL_* variables) and what an exported span may hold."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from core.trace_export import RedactingExporter, configured_exporter
from core.tracing import temporal_interceptors, tracing_configured, tracing_on


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "hub-api"}, False),  # a name alone exports nothing
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_traces_are_off_unless_an_exporter_is_configured(env: dict[str, str], on: bool) -> None:
    assert tracing_configured(env) is on


def test_off_means_no_interceptor() -> None:
    assert not tracing_on()
    assert temporal_interceptors() == []


def test_the_otlp_protocol_picks_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert isinstance(configured_exporter(), HttpExporter)  # http/protobuf, the specification's default
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert isinstance(configured_exporter(), GrpcExporter)


def test_exported_spans_lose_query_strings_and_exception_messages() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(memory)))
    tracer = provider.get_tracer(__name__)
    url = "https://carmaker.vtexcommercestable.com.br/api/dataentities/CL/search?email=ana@example.com"
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as span:
        span.set_attributes({"http.url": url, "url.full": url, "url.query": "email=ana@example.com"})
        span.set_attribute("temporalWorkflowID", "lead-5725767796336525460")
        error = ValueError("no dealer for ana@example.com, +55 11 98123-4567")
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    (exported,) = memory.get_finished_spans()
    attributes = dict(exported.attributes or {})
    assert attributes == {
        # A call the hub makes: its origin alone (a partner's path may hold a token, see below).
        "http.url": "https://carmaker.vtexcommercestable.com.br",
        "url.full": "https://carmaker.vtexcommercestable.com.br",
        "temporalWorkflowID": "lead-5725767796336525460",  # ids stay: they are how a trace is found
    }
    (event,) = exported.events
    assert dict(event.attributes or {}) == {"exception.type": "ValueError", "exception.escaped": "False"}
    assert exported.status.status_code is StatusCode.ERROR and not exported.status.description


def test_a_partners_url_exports_its_origin_and_the_hubs_own_routes_their_path() -> None:
    """A subscriber's hook URL holds its secret in the path (`/catch/123/<token>/`): a client span
    exported it whole. The API's own spans keep their path (ids only), never a query."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(memory)))
    tracer = provider.get_tracer(__name__)
    with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as span:
        span.set_attribute("url.full", "https://user:pw@hooks.example:8443/catch/123/s3cr3t-t0ken/")
    with tracer.start_as_current_span("POST /webhooks/zoho/leads", kind=SpanKind.SERVER) as span:
        span.set_attributes(
            {"http.target": "/v1/leads/5725767000000412001?x=1", "http.route": "/v1/leads/{id}"}
        )
    client, server = memory.get_finished_spans()
    assert dict(client.attributes or {}) == {"url.full": "https://hooks.example:8443"}
    assert dict(server.attributes or {}) == {
        "http.target": "/v1/leads/5725767000000412001",
        "http.route": "/v1/leads/{id}",
    }

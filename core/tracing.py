"""Traces (OpenTelemetry): one trace follows an event from the webhook request through Temporal (the
workflow's start or signal, the workflow, each activity) to every call to a partner (Zoho, VTEX, the
dealer CRMs, subscribers, BigQuery's REST API).

Configured by the standard ``OTEL_*`` variables, as every OpenTelemetry SDK is: an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, with
``OTEL_EXPORTER_OTLP_PROTOCOL`` ``http/protobuf`` (default) or ``grpc``, and its headers, timeout and
certificate variables) or ``OTEL_TRACES_EXPORTER=console``; ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the process. Without any, tracing is off and nothing of OpenTelemetry's
SDK is loaded. ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn it off.

No personal data leaves in a span: span names are routes and Temporal operations, attributes ids (the
workflow ids, which hold none, as in the search attributes). Every span is exported without URL query
strings and without exception messages or stack traces, which may quote a field or a partner's answer:
the exception's type stays, and the Temporal UI (through the codec server) shows the failure itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.client import Interceptor

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_provider: TracerProvider | None = None


def tracing_configured(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return exporter in ("otlp", "console") or any(env.get(name) for name in ENDPOINT_VARIABLES)


def tracing_on() -> bool:
    """Whether this process traces (:func:`start_tracing` set it up)."""
    return _provider is not None


def start_tracing(service: str, exporter: SpanExporter | None = None, *, http_clients: bool = True) -> bool:
    """Trace this process when the ``OTEL_*`` variables ask for it (or into ``exporter``, in tests):
    the process's tracer provider, named ``OTEL_SERVICE_NAME`` or ``service``, and every httpx client
    unless ``http_clients`` is false (the API calls no partner and loads no HTTP client). Call it before
    the Temporal client connects. True when tracing is on."""
    global _provider
    if _provider is not None:
        return True
    if exporter is None and not tracing_configured():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from core.trace_export import RedactingExporter, configured_exporter

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if exporter is None:
        # Batched, off the request path: a slow collector delays no webhook answer.
        provider.add_span_processor(BatchSpanProcessor(RedactingExporter(configured_exporter())))
    else:
        provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(exporter)))
    # Libraries that trace on their own (BigQuery's client) find it as the global provider, which can be
    # set once per process; the hub's instrumentations get it explicitly, so tracing can stop and
    # start again in one process (the tests do).
    trace.set_tracer_provider(provider)
    if http_clients:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    return True


def stop_tracing() -> None:
    """Export what is left and stop (on exit; tests undo :func:`start_tracing` with it)."""
    global _provider
    if _provider is None:
        return
    if "opentelemetry.instrumentation.httpx" in sys.modules:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().uninstrument()
    _provider.shutdown()
    _provider = None


def trace_requests(app: FastAPI) -> None:
    """A server span per request (named by its route template, so ids in paths stay out of the name);
    the probes and the metrics scrape are left out, and so are the ASGI send and receive steps (three
    more spans per request that say nothing the request's own does not)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="healthz,readyz,metrics",
        exclude_spans=["receive", "send"],
        tracer_provider=_provider,
    )


def client_span(name: str, attributes: Mapping[str, str | int]) -> AbstractContextManager[object]:
    """A client span around a call to a partner that httpx does not make (SMTP), under the current
    span (the activity's); nothing while tracing is off. ``attributes``: ids and addresses of servers,
    never a person's."""
    if _provider is None:
        return nullcontext()
    from opentelemetry.trace import SpanKind

    tracer = _provider.get_tracer("integrations-hub")
    return tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=dict(attributes))


def temporal_interceptors() -> list[Interceptor]:
    """The Temporal SDK's tracing interceptor when tracing is on: it carries the trace from a client's
    start or signal into the workflow and its activities (their spans are children of the caller's)."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(_provider.get_tracer("temporalio"))]

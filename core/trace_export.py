"""What leaves the process in a span (loaded only when tracing is on, see :mod:`core.tracing`): the
exporter the ``OTEL_*`` variables name, behind one that removes what could identify a customer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status
from opentelemetry.util.types import AnyValue, Attributes

# URL attributes of the HTTP semantic conventions (old and new): exported without their query string,
# and for a call the hub makes (a client span), as its origin alone: a partner's URL may carry a token in
# its path (a subscriber's hook, a dealer's ADF endpoint), and the span keeps the method and host.
URL_ATTRIBUTES = ("url.full", "http.url", "http.target")
DROPPED_ATTRIBUTES = ("url.query", "exception.message", "exception.stacktrace")


def configured_exporter() -> SpanExporter:
    """The exporter the ``OTEL_*`` variables name; it reads its endpoint, headers and TLS from them."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        return ConsoleSpanExporter()
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip().lower() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


class RedactingExporter(SpanExporter):
    """Exports each span without URL query strings, exception messages and stack traces, or status
    descriptions (see :mod:`core.tracing`)."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([redacted(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def redacted(span: ReadableSpan) -> ReadableSpan:
    """``span`` without anything a customer could be recognised by: itself when it holds nothing to
    remove (most spans: Temporal's carry ids only), else a copy."""
    if not _needs_redaction(span):
        return span
    events = [Event(event.name, _safe_attributes(event.attributes), event.timestamp) for event in span.events]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_safe_attributes(span.attributes, outbound=span.kind == SpanKind.CLIENT),
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _needs_redaction(span: ReadableSpan) -> bool:
    if span.events or span.status.description:
        return True
    attributes = span.attributes or {}
    if span.kind == SpanKind.CLIENT and any(key in attributes for key in URL_ATTRIBUTES):
        return True
    return any(key in attributes for key in DROPPED_ATTRIBUTES) or any(
        "?" in str(attributes.get(key, "")) or "#" in str(attributes.get(key, "")) for key in URL_ATTRIBUTES
    )


def _safe_attributes(attributes: Attributes, *, outbound: bool = False) -> dict[str, AnyValue]:
    safe: dict[str, AnyValue] = {}
    for key, value in (attributes or {}).items():
        if key in DROPPED_ATTRIBUTES:
            continue
        if key in URL_ATTRIBUTES and isinstance(value, str):
            value = _origin(value) if outbound else _without_query(value)
        safe[key] = value
    return safe


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _origin(url: str) -> str:
    """Scheme, host and port: no user, path, query or fragment ("" for a URL that cannot be read, which
    must not fail the export of the whole batch)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # a port that is no number
        return ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{netloc}:{port}" if port else netloc, "", "", ""))

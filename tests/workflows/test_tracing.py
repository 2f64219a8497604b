"""Traces: one lead is one trace, from the webhook request through the workflow and its activities to the
calls to the dealer's CRM and to Zoho, and no span carries the customer's personal data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from core.temporal import connect
from core.tracing import start_tracing, stop_tracing
from tests.hub import running_hub
from tests.workflows.test_encryption_at_rest import LEAD

PERSONAL = [LEAD[name] for name in ("First_Name", "Last_Name", "Email", "Phone", "Mobile", "CPF")]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert start_tracing("hub-test", exporter=exporter)
    yield exporter
    stop_tracing()


async def test_one_lead_is_one_trace_without_personal_data(
    spans: InMemorySpanExporter, temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    address = temporal_env.client.service_client.config.target_host
    client = await connect(Settings(environment="test", temporal_address=address))  # traced
    async with running_hub(client, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(**LEAD)
        assert (await hub.post_webhook(lead_id)).status_code == 202
        await hub.wait_for_status(lead_id, "delivered")
        await hub.handle(lead_id).result()
    finished = spans.get_finished_spans()
    webhook = one(finished, "POST /webhooks/zoho/leads", SpanKind.SERVER)
    trace = {
        span.context.span_id: span for span in finished if span.context.trace_id == webhook.context.trace_id
    }
    names = {span.name for span in trace.values()}
    assert "SignalWithStartWorkflow:LeadDistributionWorkflow" in names or (
        "StartWorkflow:LeadDistributionWorkflow" in names
    ), names
    assert {
        "RunWorkflow:LeadDistributionWorkflow",
        "RunActivity:fetch_lead",
        "RunActivity:deliver_lead",
    } <= names
    assert "RunActivity:update_zoho_lead" in names
    # The partners' calls hang under the activity that made them.
    for method, activity in (("POST", "RunActivity:deliver_lead"), ("PUT", "RunActivity:update_zoho_lead")):
        (made,) = calls(trace, method, activity)
        assert exported_url(made) == hub.sims_url  # the partner's origin alone: its path may hold a token
    # Nothing a customer could be recognised by, in any span of the run (the lead's id is no such thing).
    exported = json.dumps([everything_in(span) for span in finished], ensure_ascii=False, default=str)
    for value in PERSONAL:
        assert value not in exported
    assert lead_id in exported


def one(spans: Any, name: str, kind: SpanKind) -> ReadableSpan:
    found = [span for span in spans if span.name == name and span.kind == kind]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def calls(trace: dict[int, ReadableSpan], method: str, activity: str) -> list[ReadableSpan]:
    """The client spans of the outbound HTTP calls ``activity`` made with ``method``."""
    found = []
    for span in trace.values():
        attributes = span.attributes or {}
        method_of = attributes.get("http.method") or attributes.get("http.request.method")
        parent = trace.get(span.parent.span_id) if span.parent is not None else None
        if span.kind == SpanKind.CLIENT and method_of == method and parent and parent.name == activity:
            found.append(span)
    return found


def exported_url(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("url.full") or attributes.get("http.url"))


def everything_in(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name,
        "attributes": dict(span.attributes or {}),
        "events": [(event.name, dict(event.attributes or {})) for event in span.events],
        "status": span.status.description,
        "resource": dict(span.resource.attributes),
    }

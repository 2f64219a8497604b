"""Traces: one lead is one trace, from the webhook request through the workflow and its activities to the
calls to the dealer's CRM and to Zoho, and no span carries the customer's personal data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

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
    dealer_call = call(trace, "POST /dealer-rest/{dealer_id}/api/v1/leads")
    zoho_update = call(trace, "PUT /zoho/crm/{version}/Leads/{lead_id}")
    assert parent_name(trace, dealer_call) == "RunActivity:deliver_lead"
    assert parent_name(trace, zoho_update) == "RunActivity:update_zoho_lead"
    # Nothing a customer could be recognised by, in any span of the run (the lead's id is no such thing).
    exported = json.dumps([everything_in(span) for span in finished], ensure_ascii=False, default=str)
    for value in PERSONAL:
        assert value not in exported
    assert lead_id in exported


def one(spans: Any, name: str, kind: SpanKind) -> ReadableSpan:
    found = [span for span in spans if span.name == name and span.kind == kind]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def call(trace: dict[int, ReadableSpan], route: str) -> ReadableSpan:
    """The client span of an outbound HTTP call in the trace, found by the span the simulator served it
    under (``route``: its method and route): an exported client span keeps only the partner's origin."""
    for span in trace.values():
        if span.kind == SpanKind.SERVER and span.name == route and span.parent is not None:
            client = trace[span.parent.span_id]
            attributes = client.attributes or {}
            url = str(attributes.get("url.full") or attributes.get("http.url"))
            assert client.kind == SpanKind.CLIENT and urlsplit(url).path == "", url  # the origin alone
            return client
    raise AssertionError(f"no {route} in the trace: {sorted(s.name for s in trace.values())}")


def parent_name(trace: dict[int, ReadableSpan], span: ReadableSpan) -> str:
    assert span.parent is not None
    return trace[span.parent.span_id].name


def everything_in(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name,
        "attributes": dict(span.attributes or {}),
        "events": [(event.name, dict(event.attributes or {})) for event in span.events],
        "status": span.status.description,
        "resource": dict(span.resource.attributes),
    }

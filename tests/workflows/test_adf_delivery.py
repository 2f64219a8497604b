"""ADF/XML dealers end to end: leads POSTed as XML and e-mailed to a lead inbox (the simulators' SMTP
sink), exactly once even when the inbox's answer is lost and the hub sends again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from temporalio.testing import WorkflowEnvironment

from core.tracing import start_tracing, stop_tracing
from db.rules import RulesFile
from tests.hub import Hub, running_hub
from tests.support import eventually, free_port

ADF_MAPPING = {
    "first_name": "First_Name",
    "last_name": "Last_Name",
    "email": "Email",
    "mobile": "Mobile",
    "vehicle_make": "=Chevrolet",
    "vehicle_model": "Modelo_de_Interesse",
    "city": "City",
    "state": "State",
    "request_date": "Created_Time",
}


def adf_rules(sims_url: str) -> RulesFile:
    def adf(dealer_id: str, state: str, url: str) -> dict[str, Any]:
        return {
            "id": dealer_id,
            "name": f"Concessionária {state}",
            "crm": {"kind": "adf", "url": url},
            "routing": {"states": [state], "daily_capacity": 100},
            "field_mapping": {**ADF_MAPPING, "vendor_email": f"=vendas@{dealer_id}.example"},
        }

    return RulesFile.model_validate(
        {
            "dealers": [
                adf("adf-http", "AM", f"{sims_url}/dealer-adf/adf-http/leads"),
                adf("adf-mail", "PA", "mailto:adf-mail@dealers.example"),
            ]
        }
    )


@pytest.fixture
async def adf_hub(temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str) -> AsyncIterator[Hub]:
    smtp_port = free_port()
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        role="flows",
        rules=adf_rules,
        simulator={"smtp_port": smtp_port, "smtp_lost_answer_seconds": 3.0},
        smtp_port=smtp_port,
        smtp_starttls=False,  # the local sink speaks plain SMTP; production refuses this
        dealer_http_timeout_seconds=1.0,
    ) as hub:
        yield hub


async def test_an_adf_lead_posted_as_xml(adf_hub: Hub) -> None:
    lead_id = await adf_hub.create_lead(State="AM", City="Manaus", Modelo_de_Interesse="Tracker")
    await adf_hub.post_webhook(lead_id)
    lead = await adf_hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "adf-http"
    stored = await adf_hub.dealer_leads("adf-http")
    key = f"lead-{lead_id}-adf-http"
    assert stored["creates_by_external_id"] == {key: 1}
    assert stored["leads"][0]["fields"]["model"] == "Tracker"
    assert lead["dealer_lead_id"] == key  # ADF receivers name no id: the hub's key is the reference


async def test_an_adf_email_resent_after_a_lost_answer_is_one_lead_at_the_inbox(adf_hub: Hub) -> None:
    await adf_hub.fault(target="adf-mail", answer_lost_count=1)
    lead_id = await adf_hub.create_lead(State="PA", City="Belém", First_Name="Rita")
    await adf_hub.post_webhook(lead_id)
    lead = await adf_hub.wait_for_status(lead_id, "delivered", timeout=90)
    assert lead["dealer_id"] == "adf-mail"
    stored = await adf_hub.dealer_leads("adf-mail")
    assert stored["creates_by_external_id"] == {f"lead-{lead_id}-adf-mail": 1}
    assert stored["leads"][0]["fields"]["names"]["first"] == "Rita"
    counters = (await adf_hub.counters())["dealers"]["adf-mail"]
    # Sent twice, one lead; the second document said it was a re-send.
    assert (counters["requests"], counters["replays"], counters["marked_resent"]) == (2, 1, 1)


async def test_an_adf_email_sent_again_by_a_later_run_of_the_lead_says_it_is_a_resend(adf_hub: Hub) -> None:
    """The inbox keeps the lead but its answers are lost; support terminates the run and Zoho resends the
    webhook. The new run's first send is a re-send of the same document, and the inbox keeps one lead."""
    await adf_hub.fault(target="adf-mail", answer_lost_count=10_000)
    lead_id = await adf_hub.create_lead(State="PA", City="Belém", First_Name="Rita")
    await adf_hub.post_webhook(lead_id)

    async def sent() -> bool:
        return (await adf_hub.counters())["dealers"].get("adf-mail", {}).get("requests", 0) >= 1

    await eventually(sent)
    await adf_hub.handle(lead_id).terminate(reason="the inbox never answers")
    before = (await adf_hub.counters())["dealers"]["adf-mail"]
    await adf_hub.http.delete(f"{adf_hub.sims_url}/_control/faults/adf-mail")
    assert (await adf_hub.post_webhook(lead_id)).json()["status"] == "accepted"
    assert (await adf_hub.wait_for_status(lead_id, "delivered", timeout=60))["dealer_id"] == "adf-mail"
    counters = (await adf_hub.counters())["dealers"]["adf-mail"]
    assert counters["requests"] > before["requests"]  # the new run sent it
    assert counters["marked_resent"] == counters["requests"] - 1  # every send but the very first
    stored = await adf_hub.dealer_leads("adf-mail")
    assert stored["creates_by_external_id"] == {f"lead-{lead_id}-adf-mail": 1}


async def test_an_adf_email_is_a_client_span_without_the_inbox_address(adf_hub: Hub) -> None:
    spans = InMemorySpanExporter()
    assert start_tracing("hub-test", exporter=spans)
    try:
        lead_id = await adf_hub.create_lead(State="PA", City="Santarém", First_Name="Lúcia")
        await adf_hub.post_webhook(lead_id)
        assert (await adf_hub.wait_for_status(lead_id, "delivered", timeout=60))["dealer_id"] == "adf-mail"
    finally:
        stop_tracing()
    (sent,) = [span for span in spans.get_finished_spans() if span.name == "SMTP send"]
    assert sent.kind is SpanKind.CLIENT and sent.status.status_code is not StatusCode.ERROR
    attributes = dict(sent.attributes or {})
    assert (
        attributes["hub.dealer_id"] == "adf-mail" and attributes["server.port"] == adf_hub.settings.smtp_port
    )
    assert not [value for value in attributes.values() if "@" in str(value)]  # not the inbox's address

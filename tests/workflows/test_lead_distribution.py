"""Lead distribution end to end on the real Temporal dev server, SQLite and the simulators over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from contracts.leads import AssignDealerInput
from core.timeutil import utcnow
from db.engine import one_off_sessions
from db.models import Delivery
from db.rules import apply_rules
from tests.hub import Hub, running_hub
from tests.hub import test_rules as routing_rules
from tests.stored import activity_types, local_activity_types
from tests.support import eventually
from workflows.lead_distribution import LeadDistributionWorkflow


async def test_lead_is_delivered_and_fed_back(hub: Hub) -> None:
    lead_id = await hub.create_lead(State="SP", City="Santos", Modelo_de_Interesse="Onix")
    response = await hub.post_webhook(lead_id)
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "workflow_id": f"lead-{lead_id}", "lead_id": lead_id}

    lead = await hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "rest-sp-a"
    assert [h["status"] for h in lead["history"]] == ["received", "routed", "delivered"]

    stored = await hub.dealer_leads("rest-sp-a")
    assert stored["creates_by_external_id"] == {lead_id: 1}
    assert stored["leads"][0]["fields"]["source"] == "zoho-crm"  # literal from the mapping
    assert lead["dealer_lead_id"] == stored["leads"][0]["id"]

    await hub.handle(lead_id).result()  # the feedback steps run after the delivery
    zoho = (await hub.http.get(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")).json()
    assert zoho["lead"]["Status_Distribuicao"] == "delivered"
    assert zoho["lead"]["Concessionaria_Id"] == "rest-sp-a"
    counters = await hub.counters()
    assert counters["zoho"]["updates_without_trigger"] == 0  # no webhook loop

    async def event_received() -> list[dict[str, object]] | None:
        events = (await hub.http.get(f"{hub.sims_url}/_control/events/portal")).json()["events"]
        return events or None

    events = await eventually(event_received)
    assert events[0]["type"] == "LeadDistribuidoComSucesso"
    assert events[0]["data"] == {
        "lead_id": lead_id,
        "dealer_id": "rest-sp-a",
        "dealer_lead_id": lead["dealer_lead_id"],
    }

    # Support finds the lead in the Web UI by search attributes; no personal data in them.
    query = f"LeadId = '{lead_id}' AND LeadStatus = 'delivered' AND DealerId = 'rest-sp-a'"
    assert await eventually(lambda: hub.count_workflows(query)) == 1
    described = await hub.handle(lead_id).describe()
    attributes = str(described.typed_search_attributes)
    assert "@" not in attributes and "Santos" not in attributes


async def test_soap_dealer_gets_the_lead_once(hub: Hub) -> None:
    lead_id = await hub.create_lead(State="RJ", City="Niterói", First_Name="Ana")
    assert (await hub.post_webhook(lead_id, form=False)).status_code == 202
    lead = await hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "soap-rj"
    stored = await hub.dealer_leads("soap-rj")
    assert stored["creates_by_external_id"] == {lead_id: 1}
    assert stored["leads"][0]["fields"]["Nome"] == "Ana"


async def test_a_slow_soap_dms_gets_the_lead_once_when_the_hub_retries_before_it_stored_it(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    """The DMS stores the lead 2.5 s after the create arrives; the hub's call gave up after 1 s, and its
    retry starts a second later. SOAP has no idempotency key: the retry looks the lead up only after a
    pause (a call's time, 1 s), finds it, and creates nothing (at once, it would have found nothing and
    created a second lead)."""
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, dealer_http_timeout_seconds=1, **warehouse_settings
    ) as hub:
        await hub.fault(target="soap-rj", slow_store_ms=2500, slow_store_count=1)
        lead_id = await hub.create_lead(State="RJ", City="Niterói")
        await hub.post_webhook(lead_id)
        lead = await hub.wait_for_status(lead_id, "delivered")
        assert lead["dealer_id"] == "soap-rj"
        await asyncio.sleep(2.5)  # the slow create, which arrived before the delivery, is stored by now
        stored = await hub.dealer_leads("soap-rj")
        assert stored["creates_by_external_id"] == {lead_id: 1}
        assert lead["dealer_lead_id"] == stored["leads"][0]["id"]


async def test_duplicate_webhooks_make_one_workflow_and_one_dealer_lead(hub: Hub) -> None:
    lead_id = await hub.create_lead(State="MG", City="Contagem")
    first = await asyncio.gather(*(hub.post_webhook(lead_id, form=i % 2 == 0) for i in range(3)))
    assert [r.status_code for r in first] == [202, 202, 202]
    assert sorted(r.json()["status"] for r in first) == ["accepted", "duplicate", "duplicate"]
    await hub.handle(lead_id).result()

    later = await hub.post_webhook(lead_id)
    assert later.status_code == 202
    assert later.json()["status"] == "duplicate"

    assert await hub.count_workflows(f"WorkflowId = 'lead-{lead_id}'") == 1
    stored = await hub.dealer_leads("rest-mg")
    assert stored["creates_by_external_id"] == {lead_id: 1}
    assert (await hub.counters())["dealers"]["rest-mg"]["created"] == 1


async def test_a_lead_resumed_a_day_after_its_dealer_stored_it_unanswered_is_not_created_again(
    hub: Hub,
) -> None:
    """The dealer's CRM stores the lead and answers 503; support stops the run; a day later Zoho sends
    the webhook again. By then the dealer has forgotten the Idempotency-Key, so a create under it would
    be a second lead: the resumed run, whose claim is a day old, asks the dealer first and finds it."""
    await hub.fault(target="rest-mg", stored_unanswered_count=1000)
    lead_id = await hub.create_lead(State="MG", City="Contagem")
    await hub.post_webhook(lead_id)

    async def stored() -> bool:
        return (await hub.dealer_leads("rest-mg"))["creates_by_external_id"].get(lead_id) == 1

    await eventually(stored, timeout=30)
    await hub.handle(lead_id).terminate("stopped by support")
    async with one_off_sessions(hub.settings.database_url) as sessions, sessions.begin() as session:
        claim = await session.get(Delivery, lead_id)
        assert claim is not None and claim.dealer_id == "rest-mg"
        claim.claimed_at = utcnow() - timedelta(hours=25)
    (await hub.http.delete(f"{hub.sims_url}/_control/dealers/rest-mg/idempotency-keys")).raise_for_status()
    (await hub.http.delete(f"{hub.sims_url}/_control/faults/rest-mg")).raise_for_status()

    await hub.post_webhook(lead_id)
    lead = await hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "rest-mg"
    held = await hub.dealer_leads("rest-mg")
    assert held["creates_by_external_id"] == {lead_id: 1}
    assert lead["dealer_lead_id"] == held["leads"][0]["id"]


async def test_rejecting_dealer_passes_the_lead_to_the_next(hub: Hub) -> None:
    await hub.fault(target="rest-sp-a", reject=True)
    lead_id = await hub.create_lead(State="SP", City="Campinas")
    await hub.post_webhook(lead_id)
    lead = await hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "rest-sp-b"
    assert [(h["status"], h["dealer_id"]) for h in lead["history"]] == [
        ("received", None),
        ("routed", "rest-sp-a"),
        ("routed", "rest-sp-b"),
        ("delivered", "rest-sp-b"),
    ]
    result = await hub.handle(lead_id).result()
    assert [(a.dealer_id, a.outcome) for a in result.attempts] == [
        ("rest-sp-a", "rejected"),
        ("rest-sp-b", "delivered"),
    ]


@asynccontextmanager
async def unanswering_dealer_hub(
    env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    warehouse_settings: dict[str, Any],
    retry_window_seconds: int = 4,
) -> AsyncIterator[Hub]:
    """A hub whose deliveries give a dealer ``retry_window_seconds`` of 2-second attempts, and whose first
    SP dealer (rest-sp-a) stores every lead and answers 503 to every create and retry."""
    async with running_hub(
        env.client, sqlite_url, task_queue, dealer_delivery_retry_window_seconds=retry_window_seconds,
        dealer_delivery_attempt_timeout_seconds=2, **warehouse_settings,
    ) as hub:  # fmt: skip
        await hub.fault(target="rest-sp-a", stored_unanswered_count=1000)
        yield hub


async def delivered_past_an_unanswering_dealer(hub: Hub) -> tuple[str, dict[str, Any]]:
    """A São Paulo lead, sent until it is delivered; its id and its portal record."""
    lead_id = await hub.create_lead(State="SP", City="Santos")
    await hub.post_webhook(lead_id)
    return lead_id, await hub.wait_for_status(lead_id, "delivered")


async def delivered_after_its_dealer_left_the_rules(hub: Hub) -> tuple[str, dict[str, Any]]:
    """A São Paulo lead stored at rest-sp-a, which ops then take out of the rules (`hub-rules load`) while
    the hub retries it; its id and its portal record once delivered."""
    lead_id = await hub.create_lead(State="SP", City="Santos")
    await hub.post_webhook(lead_id)

    async def stored_at_a() -> bool:
        return (await hub.counters())["dealers"].get("rest-sp-a", {}).get("created", 0) >= 1

    await eventually(stored_at_a)
    rules = routing_rules(hub.sims_url)
    next(d for d in rules.dealers if d.id == "rest-sp-a").active = False
    async with one_off_sessions(hub.settings.database_url) as sessions:
        await apply_rules(sessions, rules)
    return lead_id, await hub.wait_for_status(lead_id, "delivered")


async def test_a_dealer_taken_out_of_the_rules_while_its_crm_does_not_answer_is_asked_to_drop_the_lead(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    """rest-sp-a's DMS stores the lead and answers 503; while the hub retries, ops take the dealer out of
    the rules. Its next attempt finds it inactive: the lead goes on to the next dealer, but only after
    rest-sp-a's CRM was asked to drop the copy it may hold."""
    # A minute of attempts: ops take the dealer out while the hub still retries it.
    async with unanswering_dealer_hub(temporal_env, sqlite_url, task_queue, warehouse_settings, 60) as hub:
        lead_id, lead = await delivered_after_its_dealer_left_the_rules(hub)
        assert lead["dealer_id"] == "rest-sp-b"
        counters = (await hub.counters())["dealers"]
        assert (counters["rest-sp-a"]["created"], counters["rest-sp-a"]["withdrawn"]) == (1, 1)
        assert [(d["dealer_id"], d["status"], d["withdrawal_at_crm"]) for d in lead["deliveries"]] == [
            ("rest-sp-a", "released", "withdrawn"),
            ("rest-sp-b", "delivered", None),
        ]
        result = await hub.handle(lead_id).result()
        assert [(a.dealer_id, a.outcome) for a in result.attempts] == [
            ("rest-sp-a", "rejected"),
            ("rest-sp-b", "delivered"),
        ]


async def test_a_dealer_whose_crm_stored_the_lead_but_never_answered_is_asked_to_drop_it(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    """The DMS stores the lead and its gateway answers 503, to every retry, for the whole retry window:
    the hub cannot know the dealer has it. The lead goes on to the next dealer, but only after the first
    dealer's CRM was asked to drop it: no dealer keeps a lead it lost without a withdrawal attempted."""
    async with unanswering_dealer_hub(temporal_env, sqlite_url, task_queue, warehouse_settings) as hub:
        lead_id, lead = await delivered_past_an_unanswering_dealer(hub)
        assert lead["dealer_id"] == "rest-sp-b"
        counters = (await hub.counters())["dealers"]
        assert (counters["rest-sp-a"]["created"], counters["rest-sp-a"]["withdrawn"]) == (1, 1)
        held = (await hub.dealer_leads("rest-sp-a"))["leads"]
        assert [(held_lead["external_id"], held_lead["withdrawn"]) for held_lead in held] == [(lead_id, True)]
        assert [(d["dealer_id"], d["status"], d["withdrawal_at_crm"]) for d in lead["deliveries"]] == [
            ("rest-sp-a", "released", "withdrawn"),
            ("rest-sp-b", "delivered", None),
        ]
        result = await hub.handle(lead_id).result()
        assert [(a.dealer_id, a.outcome) for a in result.attempts] == [
            ("rest-sp-a", "unavailable"),
            ("rest-sp-b", "delivered"),
        ]


async def test_rate_limit_and_5xx_are_retried_honouring_retry_after(hub: Hub) -> None:
    await hub.fault(target="rest-mg", error_5xx_count=1, rate_limit_count=1, retry_after_seconds=3)
    lead_id = await hub.create_lead(State="MG", City="Uberlândia")
    started = time.monotonic()
    await hub.post_webhook(lead_id)
    lead = await hub.wait_for_status(lead_id, "delivered")
    # Default backoff after the 503 is ~1 s; the 429 asked for 3 s more.
    assert time.monotonic() - started >= 3.5
    assert lead["dealer_id"] == "rest-mg"
    counters = (await hub.counters())["dealers"]["rest-mg"]
    assert (counters["created"], counters["faults_served"]) == (1, 2)


async def test_unmatched_lead_waits_for_support_then_is_delivered(hub: Hub) -> None:
    lead_id = await hub.create_lead(State="BA", City="Salvador")
    await hub.post_webhook(lead_id)
    waiting = await hub.wait_for_awaiting(lead_id)
    assert waiting["status"] == "received"
    query = f"LeadId = '{lead_id}' AND LeadStatus = 'awaiting_assignment'"
    assert await eventually(lambda: hub.count_workflows(query)) == 1

    handle = hub.handle(lead_id)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            LeadDistributionWorkflow.assign_dealer, AssignDealerInput("no-such-dealer")
        )
    # Who decided is kept in the history and the warehouse: a login, never words about the customer,
    # whatever the client (the Web UI, the temporal CLI).
    words = AssignDealerInput("rest-mg", assigned_by="ana: the customer, Ana Souza, asked for Contagem")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(LeadDistributionWorkflow.assign_dealer, words)
    assert "support login" in str(refused.value.cause)
    assigned = await handle.execute_update(
        LeadDistributionWorkflow.assign_dealer, AssignDealerInput("rest-mg", assigned_by="support-ana")
    )
    assert assigned.dealer_name == "rest-mg"
    lead = await hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "rest-mg"
    # Once delivered, another assignment is refused (by the validator, or the server once the run closed).
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await handle.execute_update(LeadDistributionWorkflow.assign_dealer, AssignDealerInput("rest-sp-a"))


async def test_lead_missing_in_zoho_is_marked_failed(hub: Hub) -> None:
    await hub.post_webhook("5725767999999999999")
    lead = await hub.wait_for_status("5725767999999999999", "failed")
    assert "not found" in lead["detail"]


async def test_workers_share_one_zoho_token(hub: Hub) -> None:
    lead_ids = [await hub.create_lead(State="SP", City="Santos") for _ in range(5)]
    await asyncio.gather(*(hub.post_webhook(lead_id) for lead_id in lead_ids))
    for lead_id in lead_ids:
        await hub.wait_for_status(lead_id, "delivered")
    assert (await hub.counters())["zoho"]["tokens_issued"] == 1


async def test_a_delivered_lead_takes_one_activity_and_two_workflow_tasks(hub: Hub) -> None:
    """Its first steps and its feedback run in the worker, within the lead's workflow tasks: the server
    dispatches the delivery alone (what a burst of leads queues behind)."""
    lead_id = await hub.create_lead(State="SP", City="Santos")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    history = await hub.handle(lead_id).fetch_history()
    assert activity_types(history.events) == ["deliver_lead"]
    assert local_activity_types(history.events) == [
        "record_lead_status",
        "fetch_lead",
        "claim_lead",
        "update_zoho_lead",
        "publish_event",
    ]
    assert sum(e.HasField("workflow_task_completed_event_attributes") for e in history.events) == 2
    zoho = await hub.http.get(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")
    assert zoho.json()["lead"]["Status_Distribuicao"] == "delivered"
    lead = await hub.lead(lead_id)
    assert lead is not None
    assert [change["status"] for change in lead["history"]] == ["received", "routed", "delivered"]


async def test_a_first_step_that_fails_in_the_worker_runs_as_an_activity(hub: Hub) -> None:
    """Zoho fails the local try's read: the read is then an activity, whose attempts the Web UI shows,
    and the lead is delivered once."""
    await hub.fault(target="zoho", error_5xx_count=1)
    lead_id = await hub.create_lead(State="SP", City="Santos")
    await hub.post_webhook(lead_id)
    assert (await hub.handle(lead_id).result()).status == "delivered"
    history = await hub.handle(lead_id).fetch_history()
    assert activity_types(history.events) == ["fetch_lead", "deliver_lead"]
    assert local_activity_types(history.events)[:3] == ["record_lead_status", "fetch_lead", "claim_lead"]
    counters = await hub.counters()
    assert (counters["zoho"]["faults_served"], counters["zoho"]["lead_gets"]) == (1, 1)
    assert counters["dealers"]["rest-sp-a"]["created"] == 1

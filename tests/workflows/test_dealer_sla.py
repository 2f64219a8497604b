"""The dealer's SLA, its status reports and re-routing, end to end on the time-skipping test server.

The flows worker runs its real activities against SQLite and the dealer simulators over HTTP; only the
waits of the SLA pass in a moment (``skipping_env.sleep``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import update
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from api.relay import ReportRelay
from cli.redrive import started_with
from clients.zoho import ZohoClient
from contracts.leads import (
    DealerStatusReport,
    LeadDistributionInput,
    LeadDistributionResult,
    report_dealer_status,
    start_lead_distribution,
)
from core.constants import LEAD_STATUS, LeadStatus, lead_workflow_id
from core.metrics import REGISTRY as HUB_METRICS
from db import feedback, zoho_writebacks
from db.deliveries import withdraw
from db.engine import create_engine, one_off_sessions, session_factory
from db.feedback import HAND_OVER_GRACE
from db.models import Delivery
from db.rules import RulesFile, apply_rules
from db.tokens import DatabaseTokens
from tests.hub import Hub, contacted_event, running_hub
from tests.support import eventually, free_port, skip_time
from workers.main import role_workers
from workflows.lead_distribution import LeadDistributionWorkflow

SLA = timedelta(minutes=30)
FALLBACK_OWNER = "5725767000000999001"
DEALER_SECRET = "dealer-hook-secret"
BRT = ZoneInfo("America/Sao_Paulo")
STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED


def sla_rules(sims_url: str) -> RulesFile:
    """Three Paraná dealers in priority order (a REST CRM, a SOAP DMS that can withdraw a lead, and one
    on the first version of that DMS's service, which cannot), a Santa Catarina dealer asked for
    statuses, two Sergipe dealers (the first asked hourly), an Alagoas dealer without an SLA, and a Rio
    Grande do Sul dealer closed today and tomorrow; every other one must accept within 30 open minutes."""

    def soap(dealer_id: str, priority: int, wsdl_query: str) -> dict[str, Any]:
        return {
            **rest(dealer_id, "PR", priority),
            "crm": {"kind": "soap", "url": f"{sims_url}/dealer-soap/{dealer_id}?{wsdl_query}"},
            "field_mapping": {"ExternalId": "id", "Nome": "First_Name"},
        }

    def rest(dealer_id: str, state: str, priority: int, **extra: Any) -> dict[str, Any]:
        sla = {"accept_within_minutes": 30, **extra.pop("sla", {})}
        return {
            "id": dealer_id,
            "name": dealer_id,
            "crm": {"kind": "rest", "url": f"{sims_url}/dealer-rest/{dealer_id}"},
            "routing": {"states": [state], "daily_capacity": 100, "priority": priority},
            "sla": sla,
            "field_mapping": {"external_id": "id", "first_name": "First_Name"},
            **extra,
        }

    today = datetime.now(BRT).date()
    every_day = {day: ["08:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    closed = [today, today + timedelta(days=1)]
    return RulesFile.model_validate(
        {
            "dealers": [
                rest("sla-a", "PR", 10),
                soap("sla-b", 20, "wsdl"),
                soap("sla-c", 30, "wsdl&version=1"),
                rest("poll-sc", "SC", 10, sla={"status_poll_seconds": 60}),
                rest("poll-se", "SE", 10, sla={"status_poll_seconds": 3600}),
                rest("next-se", "SE", 20),
                {key: value for key, value in rest("plain-al", "AL", 10).items() if key != "sla"},
                rest("night-rs", "RS", 10, hours={"weekly": every_day, "closed": closed}),
            ]
        }
    )


@asynccontextmanager
async def sla_hub(
    env: WorkflowEnvironment, sqlite_url: str, task_queue: str, *, worker: bool = True
) -> AsyncIterator[Hub]:
    """The flows role on ``env`` with the SLA dealers, their webhook secrets and a fallback owner
    (``worker=False``: without its worker, which the test runs)."""
    dealers = ("sla-a", "sla-b", "sla-c", "poll-sc", "poll-se", "next-se", "plain-al", "night-rs")
    async with running_hub(
        env.client,
        sqlite_url,
        task_queue,
        worker=worker,
        role="flows",
        rules=sla_rules,
        simulator={"dealer_webhook_secret": DEALER_SECRET},
        dealer_api_keys={d: f"key-{d}" for d in dealers},
        dealer_webhook_secrets={d: DEALER_SECRET for d in dealers},
        lead_max_reroutes=2,
        lead_fallback_owner_id=FALLBACK_OWNER,
        dealer_report_sweep_seconds=3600,  # the tests sweep when they mean to
    ) as hub:
        yield hub


@pytest.fixture(name="sla_hub")
async def sla_hub_fixture(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> AsyncIterator[Hub]:
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        yield hub


async def dealer_reports(
    hub: Hub, dealer_id: str, lead_id: str, status: str, *, at: datetime | None = None, callback: bool = True
) -> dict[str, Any]:
    """The dealer's salesperson sets the lead's status; the dealer CRM reports it to the hub."""
    spec: dict[str, Any] = {"status": status, "callback": callback}
    if at is not None:
        spec["at"] = at.isoformat()
    response = await hub.http.post(
        f"{hub.sims_url}/_control/dealers/{dealer_id}/leads/{lead_id}/status", json=spec
    )
    response.raise_for_status()
    return dict(response.json())


async def at_dealer(hub: Hub, lead_id: str, dealer_id: str, status: str = "delivered") -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        lead = await hub.lead(lead_id)
        return lead if lead and (lead["status"], lead["dealer_id"]) == (status, dealer_id) else None

    return await eventually(check, timeout=60)


async def run_after(hub: Hub, lead_id: str, ended_run_id: str) -> LeadDistributionResult:
    """The result of the lead's run after ``ended_run_id``: the API hands a report on after answering
    the dealer, so the run it starts may not be there yet when the dealer has its answer."""

    async def started() -> str | None:
        run_id = (await hub.handle(lead_id).describe()).run_id
        return run_id if run_id != ended_run_id else None

    run_id = await eventually(started)
    return await hub.client.get_workflow_handle_for(
        LeadDistributionWorkflow.run, lead_workflow_id(lead_id), run_id=run_id
    ).result()


async def zoho_lead(hub: Hub, lead_id: str) -> dict[str, Any]:
    return dict((await hub.http.get(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")).json()["lead"])


async def sla_exhausted_lead(hub: Hub, env: WorkflowEnvironment, **fields: str) -> str:
    """A Curitiba lead each of the three PR dealers failed to accept in time, past the cap of two
    re-routes: at the fallback owner. Its id."""
    lead_id = await hub.create_lead(State="PR", City="Curitiba", **fields)
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    for dealer_id in ("sla-b", "sla-c"):
        await skip_time(env, SLA)
        await at_dealer(hub, lead_id, dealer_id)
    await skip_time(env, SLA + timedelta(minutes=1))
    await hub.wait_for_status(lead_id, "sla_exhausted")
    return lead_id


def drops_recorded(dealer_id: str) -> float:
    """Leads ``dealer_id`` lost whose CRM could not be asked to drop them (this process's worker)."""
    return HUB_METRICS.get_sample_value("hub_lead_drops_recorded_total", {"dealer": dealer_id}) or 0.0


async def test_dealers_that_miss_the_sla_lose_the_lead_until_the_fallback_owner(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    hub = sla_hub
    recorded_before = drops_recorded("sla-c")
    lead_id = await hub.create_lead(State="PR", City="Curitiba", First_Name="Rui")
    assert (await hub.post_webhook(lead_id)).status_code == 202
    await at_dealer(hub, lead_id, "sla-a")

    await skip_time(skipping_env, SLA - timedelta(minutes=5))
    assert (await hub.lead(lead_id) or {})["dealer_id"] == "sla-a"  # still within its SLA
    for dealer_id in ("sla-b", "sla-c"):
        await skip_time(skipping_env, SLA)
        await at_dealer(hub, lead_id, dealer_id)
    await skip_time(skipping_env, SLA + timedelta(minutes=1))
    lead = await hub.wait_for_status(lead_id, "sla_exhausted")
    result = await hub.handle(lead_id).result()
    assert result.status == "sla_exhausted"

    # Each dealer got the lead once and had it withdrawn once, at its CRM where the CRM can (REST, the
    # SOAP service's WithdrawLead) and in the hub only where it cannot; none holds it now.
    counters = (await hub.counters())["dealers"]
    created_withdrawn = {
        d: (counters[d]["created"], counters[d]["withdrawn"]) for d in ("sla-a", "sla-b", "sla-c")
    }
    assert created_withdrawn == {"sla-a": (1, 1), "sla-b": (1, 1), "sla-c": (1, 0)}
    deliveries = lead["deliveries"]
    assert [(d["dealer_id"], d["status"], d["withdrawal_at_crm"]) for d in deliveries] == [
        ("sla-a", "withdrawn", "withdrawn"),
        ("sla-b", "withdrawn", "withdrawn"),
        ("sla-c", "withdrawn", "recorded"),
    ]
    assert all("SLA to accept passed" in str(d["withdrawal_reason"]) for d in deliveries)
    assert all(str(d["reason"]).startswith("routed: covers the lead") for d in deliveries)
    # Support hears of the one dealer that may still hold the lead (the HubLeadDropsRecorded ticket).
    assert drops_recorded("sla-c") == recorded_before + 1 and drops_recorded("sla-a") == 0
    statuses = [(h["status"], h["dealer_id"]) for h in lead["history"]]
    assert statuses[-2:] == [("withdrawn", "sla-c"), ("sla_exhausted", None)]
    assert statuses.count(("withdrawn", "sla-a")) == 1

    zoho = await zoho_lead(hub, lead_id)
    assert zoho["Owner"]["id"] == FALLBACK_OWNER
    assert zoho["Status_Distribuicao"] == "sla_exhausted"

    # A late acceptance from a dealer that lost the lead is recorded and refused, never taken.
    late = await dealer_reports(hub, "sla-a", lead_id, "accepted")
    assert late["hub"]["status_code"] == 409
    assert (await hub.lead(lead_id) or {})["status"] == "sla_exhausted"


async def test_a_later_run_at_the_fallback_owner_leaves_the_owner_sales_set_by_hand(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """Sales give the lead to someone else in Zoho after the hand-over; then support redrives the lead's
    run (as `hub leads redrive` does; a resent webhook after a terminate starts one too). The new run
    finds the lead at its fallback owner and hands it over again, without taking it back from the
    person sales chose."""
    hub = sla_hub
    lead_id = await sla_exhausted_lead(hub, skipping_env)
    await hub.handle(lead_id).result()
    assert (await zoho_lead(hub, lead_id))["Owner"]["id"] == FALLBACK_OWNER
    async with one_off_sessions(hub.settings.database_url) as sessions:
        sales = ZohoClient(hub.http, hub.settings, DatabaseTokens(sessions))
        await sales.update_lead(lead_id, {"Owner": {"id": "5725767000000777002"}})
    counted = HUB_METRICS.get_sample_value("hub_leads_sla_exhausted_total", {"flow": "leads"})
    first = await started_with(hub.client, await hub.handle(lead_id).fetch_history(), LeadDistributionInput)
    assert await start_lead_distribution(hub.client, hub.settings, lead_id, first.event, redrive=True)
    again = await hub.handle(lead_id).result()
    assert again.status == "sla_exhausted"
    zoho = await zoho_lead(hub, lead_id)
    assert (zoho["Owner"]["id"], zoho["Status_Distribuicao"]) == ("5725767000000777002", "sla_exhausted")
    history = [h["status"] for h in (await hub.lead(lead_id) or {})["history"]]
    assert history.count("sla_exhausted") == 1  # the same hand-over, counted once (no second alert)
    assert HUB_METRICS.get_sample_value("hub_leads_sla_exhausted_total", {"flow": "leads"}) == counted


@asynccontextmanager
async def flows_worker(hub: Hub) -> AsyncIterator[None]:
    """The hub's flows worker, running until the block ends (then shut down as on SIGTERM)."""
    async with role_workers(hub.client, hub.settings, "flows") as workers, AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        yield


async def delivering(hub: Hub, lead_id: str) -> None:
    """Until the lead's delivery is under way at its dealer's CRM."""

    async def started() -> bool:
        pending = (await hub.handle(lead_id).describe()).raw_description.pending_activities
        return any(a.activity_type.name == "deliver_lead" and a.state == STARTED for a in pending)

    await eventually(started, timeout=30)


def one_minute_rules(sims_url: str) -> RulesFile:
    """Two Paraná REST dealers in priority order, each to accept within one minute."""
    return RulesFile.model_validate(
        {
            "dealers": [
                {
                    "id": dealer_id,
                    "name": dealer_id,
                    "crm": {"kind": "rest", "url": f"{sims_url}/dealer-rest/{dealer_id}"},
                    "routing": {"states": ["PR"], "daily_capacity": 100, "priority": priority},
                    "sla": {"accept_within_minutes": 1},
                    "field_mapping": {"external_id": "id"},
                }
                for dealer_id, priority in (("sla-a", 10), ("sla-b", 20))
            ]
        }
    )


async def sla_timer_fires_at(hub: Hub, lead_id: str) -> datetime:
    """When the timer the lead's run set for its dealer's SLA fires, on Temporal's clock."""

    async def started() -> datetime | None:
        history = await hub.handle(lead_id).fetch_history()
        for event in history.events:
            if event.HasField("timer_started_event_attributes"):
                fire = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
                return event.event_time.ToDatetime().replace(tzinfo=UTC) + fire
        return None

    return await eventually(started, timeout=30)


async def test_a_worker_away_after_the_delivery_does_not_lengthen_the_dealers_sla(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """On the dev server, in real time: the time-skipping server cannot move its clock while a workflow
    task waits for a worker, which is the case here. The run's SLA timer is read from its history rather
    than waited for (Temporal fires a timer when it says)."""
    away = timedelta(seconds=15)
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        worker=False,
        role="flows",
        rules=one_minute_rules,
        dealer_api_keys={"sla-a": "key-sla-a", "sla-b": "key-sla-b"},
    ) as hub:
        await hub.fault(target="sla-a", latency_ms=1000)  # the dealer's CRM takes a moment to answer
        lead_id = await hub.create_lead(State="PR", City="Curitiba")
        async with flows_worker(hub):
            await hub.post_webhook(lead_id)
            await delivering(hub, lead_id)
        # The worker stopped as the delivery ended (its grace let it finish): the run learns of it only
        # when a worker is back, 15 seconds of the dealer's minute later.
        delivered = (await at_dealer(hub, lead_id, "sla-a"))["deliveries"][0]
        await asyncio.sleep(away.total_seconds())
        async with flows_worker(hub):
            fires_at = await sla_timer_fires_at(hub, lead_id)
    deadline = datetime.fromisoformat(delivered["accept_by"])
    assert deadline == datetime.fromisoformat(delivered["delivered_at"]) + timedelta(minutes=1)
    # At the deadline (within the clocks' and the task's way), not 15 s after it.
    assert abs(fires_at - deadline) < timedelta(seconds=3), (fires_at, deadline)


async def terminated_after_the_decision(hub: Hub, lead_id: str, dealer_id: str) -> None:
    """The lead's run is terminated between a withdrawal's decision (made here as the run makes it) and
    its CRM call, which stays pending; then Zoho resends the webhook, which starts a new run."""
    await hub.handle(lead_id).terminate(reason="stuck")
    engine = create_engine(hub.settings.database_url)
    try:
        decided = await withdraw(
            session_factory(engine), lead_id, dealer_id, datetime.now(UTC), reason="SLA passed"
        )
    finally:
        await engine.dispose()
    assert decided.taken_now
    assert (await hub.post_webhook(lead_id)).status_code == 202


async def test_a_run_after_a_terminate_makes_the_withdrawals_left_pending_and_keeps_the_cap(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """The resent webhook's run makes the CRM call of the withdrawal left pending before the lead goes
    on, and, past the cap of 2 re-routes, ends the lead at the fallback owner instead of trying again."""
    hub = sla_hub
    lead_id = await hub.create_lead(State="PR", City="Maringá")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    await skip_time(skipping_env, SLA + timedelta(minutes=1))
    await at_dealer(hub, lead_id, "sla-b")

    await terminated_after_the_decision(hub, lead_id, "sla-b")
    await at_dealer(hub, lead_id, "sla-c")
    assert (await hub.counters())["dealers"]["sla-b"]["withdrawn"] == 1  # asked before the lead went on
    deliveries = (await hub.lead(lead_id) or {})["deliveries"]
    assert [(d["dealer_id"], d["withdrawal_at_crm"]) for d in deliveries[:2]] == [
        ("sla-a", "withdrawn"),
        ("sla-b", "withdrawn"),
    ]

    await terminated_after_the_decision(hub, lead_id, "sla-c")  # the third withdrawal: past the cap
    result = await hub.handle(lead_id).result()
    assert result.status == "sla_exhausted"
    lead = await hub.lead(lead_id) or {}
    assert [(d["dealer_id"], d["withdrawal_at_crm"]) for d in lead["deliveries"]] == [
        ("sla-a", "withdrawn"),
        ("sla-b", "withdrawn"),
        ("sla-c", "recorded"),  # its DMS's first service version cannot drop leads
    ]
    assert "3 dealers missed their SLA" in str(lead["detail"])
    assert (await zoho_lead(hub, lead_id))["Owner"]["id"] == FALLBACK_OWNER
    counters = (await hub.counters())["dealers"]
    assert [counters[d]["created"] for d in ("sla-a", "sla-b", "sla-c")] == [1, 1, 1]


async def test_a_dealer_that_accepts_in_time_keeps_the_lead_and_its_statuses_reach_zoho(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    hub = sla_hub
    lead_id = await hub.create_lead(State="PR", City="Londrina")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    await skip_time(skipping_env, timedelta(minutes=10))
    # It waits in a run of its own a few events long: a status signalled to it, when the worker no
    # longer caches the run, replays those instead of the whole delivery.
    waiting = await hub.client.get_workflow_handle(lead_workflow_id(lead_id)).fetch_history()
    started = waiting.events[0].workflow_execution_started_event_attributes
    assert started.continued_execution_run_id and len(waiting.events) <= 6

    accepted = await dealer_reports(hub, "sla-a", lead_id, "accepted")
    assert accepted["hub"] == {
        "status_code": 200,
        "body": {"outcome": "applied", "lead_id": lead_id, "dealer_id": "sla-a", "status": "accepted"},
    }
    result = await hub.handle(lead_id).result()  # acceptance ends the run: the SLA is met
    assert (result.status, result.dealer_id) == ("accepted", "sla-a")
    await skip_time(skipping_env, SLA * 2)
    assert (await hub.lead(lead_id) or {})["dealer_id"] == "sla-a"
    assert (await hub.counters())["dealers"]["sla-a"]["withdrawn"] == 0
    assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Not Contacted"

    # Later statuses start a run that passes them on; repeats and older reports change nothing.
    now = datetime.now(UTC)
    qualified = await dealer_reports(hub, "sla-a", lead_id, "qualified", at=now + timedelta(minutes=2))
    assert qualified["hub"]["body"]["outcome"] == "applied"
    older = await dealer_reports(hub, "sla-a", lead_id, "contacted", at=now + timedelta(minutes=1))
    assert older["hub"]["body"]["outcome"] == "older"
    again = await dealer_reports(hub, "sla-a", lead_id, "qualified", at=now + timedelta(minutes=2))
    assert again["hub"]["body"]["outcome"] == "repeated"

    async def zoho_qualified() -> dict[str, Any] | None:
        lead = await zoho_lead(hub, lead_id)
        return lead if lead.get("Lead_Status") == "Pre-Qualified" else None

    await eventually(zoho_qualified)
    lead = await hub.lead(lead_id) or {}
    assert (lead["status"], lead["deliveries"][-1]["dealer_status"]) == ("qualified", "qualified")
    reported = [h["status"] for h in lead["history"] if h["dealer_id"] == "sla-a"]
    assert reported[-3:] == ["accepted", "contacted", "qualified"]  # by the dealer's times

    async def status_events() -> list[dict[str, Any]] | None:
        events = (await hub.http.get(f"{hub.sims_url}/_control/events/portal")).json()["events"]
        mine = [e for e in events if e["type"] == "LeadStatusAtualizado" and e["data"]["lead_id"] == lead_id]
        return mine if len(mine) >= 2 else None

    events = await eventually(status_events)
    assert sorted(e["data"]["status"] for e in events) == ["accepted", "qualified"]


async def test_a_subscriber_away_for_hours_does_not_hold_up_the_dealers_sla(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """The subscriber answers 503 from before the delivery on, and Zoho 503 for the first writes. The
    dealer that does not accept loses the lead at its SLA all the same (the run waited for the event
    for up to 24 hours before it looked at the SLA); once the subscriber is back, it gets every event,
    in the order they happened."""
    hub = sla_hub
    lead_id = await rerouted_while_the_subscriber_is_away(hub, skipping_env)
    lead = await hub.lead(lead_id) or {}
    assert (lead["deliveries"][0]["dealer_id"], lead["deliveries"][0]["status"]) == ("sla-a", "withdrawn")
    assert not await published(hub, lead_id)

    (await hub.http.delete(f"{hub.sims_url}/_control/faults/events/portal")).raise_for_status()
    await skip_time(skipping_env, timedelta(minutes=11))  # the event's next retry
    events = await eventually(lambda: published(hub, lead_id, at_least=2))
    assert [(e["type"], e["data"]["dealer_id"]) for e in events] == [
        ("LeadDistribuidoComSucesso", "sla-a"),
        ("LeadDistribuidoComSucesso", "sla-b"),
    ]
    assert (await zoho_lead(hub, lead_id))["Concessionaria_Id"] == "sla-b"  # Zoho's writes in order too


async def test_reports_that_reach_a_run_waiting_on_an_absent_subscriber_are_passed_on(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """The subscriber is away from the delivery on. The dealer accepts (the run ends its part and waits
    for the subscriber to get its events), then reports "contacted" to that run: the report goes on to
    Zoho and, once back, the subscriber, after the earlier ones."""
    hub = sla_hub
    await hub.fault(target="events/portal", error_5xx_count=100_000)
    lead_id = await hub.create_lead(State="PR", City="Ponta Grossa")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    now = datetime.now(UTC)
    await dealer_reports(hub, "sla-a", lead_id, "accepted", at=now)
    await at_dealer(hub, lead_id, "sla-a", status="accepted")
    contacted = await dealer_reports(hub, "sla-a", lead_id, "contacted", at=now + timedelta(minutes=1))
    assert contacted["hub"]["body"]["outcome"] == "applied"

    async def zoho_contacted() -> bool:
        return (await zoho_lead(hub, lead_id)).get("Lead_Status") == "Contacted"

    await eventually(zoho_contacted)
    (await hub.http.delete(f"{hub.sims_url}/_control/faults/events/portal")).raise_for_status()
    await skip_time(skipping_env, timedelta(minutes=11))  # the events' next retry
    events = await eventually(lambda: published(hub, lead_id, at_least=3))
    assert [(e["type"], e["data"].get("status")) for e in events] == [
        ("LeadDistribuidoComSucesso", None),
        ("LeadStatusAtualizado", "accepted"),
        ("LeadStatusAtualizado", "contacted"),
    ]
    await hub.handle(lead_id).result()  # its part ended once the subscriber had them


async def rerouted_while_the_subscriber_is_away(hub: Hub, env: WorkflowEnvironment) -> str:
    """A Maringá lead delivered to sla-a while the subscriber answers 503 (and Zoho, three times), then
    sla-a's SLA passed: the lead at sla-b, the subscriber still away. Its id."""
    await hub.fault(target="events/portal", error_5xx_count=100_000)
    await hub.fault(target="zoho", error_5xx_count=3)
    lead_id = await hub.create_lead(State="PR", City="Maringá")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    await skip_time(env, SLA + timedelta(minutes=1))
    await at_dealer(hub, lead_id, "sla-b")
    return lead_id


async def published(hub: Hub, lead_id: str, at_least: int = 1) -> list[dict[str, Any]] | None:
    """The events the subscriber got about the lead, in the order it got them (None: fewer)."""
    events = (await hub.http.get(f"{hub.sims_url}/_control/events/portal")).json()["events"]
    mine = [e for e in events if e["data"]["lead_id"] == lead_id]
    return mine if len(mine) >= at_least else None


async def test_an_older_report_handed_to_a_run_of_its_own_leaves_zoho_at_the_newer(
    sla_hub: Hub,
) -> None:
    """A report was the newest when recorded, but its hand-over was slow: a newer one was recorded,
    handed on and its run ended first. The older one then starts a run of its own, which knows nothing
    of the newer: Zoho keeps the newer status all the same."""
    hub = sla_hub
    lead_id = await hub.create_lead(State="PR", City="Ponta Grossa")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    await dealer_reports(hub, "sla-a", lead_id, "accepted")
    await hub.handle(lead_id).result()
    accepted_run = (await hub.handle(lead_id).describe()).run_id
    contacted_at = datetime.now(UTC) + timedelta(minutes=1)
    engine = create_engine(hub.settings.database_url)
    try:
        recorded = await feedback.record(
            session_factory(engine), lead_id=lead_id, dealer_id="sla-a", status=LeadStatus.CONTACTED,
            at=contacted_at, received_at=datetime.now(UTC), to_signal=True,
        )  # fmt: skip
    finally:
        await engine.dispose()
    assert recorded.outcome == feedback.Outcome.APPLIED  # the newest, when it was recorded
    await dealer_reports(hub, "sla-a", lead_id, "qualified", at=contacted_at + timedelta(minutes=1))
    assert (await run_after(hub, lead_id, accepted_run)).status == "qualified"
    assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Pre-Qualified"

    late = DealerStatusReport("sla-a", "contacted", contacted_at.isoformat())
    await report_dealer_status(hub.client, hub.settings, lead_id, late)  # the slow hand-over
    await hub.handle(lead_id).result()
    assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Pre-Qualified"
    assert (await hub.lead(lead_id) or {})["status"] == "qualified"


async def contacted_reached_a_run_then_terminated(hub: Hub, city: str) -> str:
    """A lead accepted at sla-a, whose "contacted" reaches its run while Zoho is down; support then
    terminates that run (Zoho is back after). The lead's id."""
    lead_id = await hub.create_lead(State="PR", City=city)
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    await dealer_reports(hub, "sla-a", lead_id, "accepted")
    await hub.handle(lead_id).result()
    assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Not Contacted"

    await hub.fault(target="zoho", error_5xx_count=10_000)
    contacted = await dealer_reports(hub, "sla-a", lead_id, "contacted")
    assert contacted["hub"]["body"]["outcome"] == "applied"

    async def signalled() -> bool:  # the report is in the run's history: the relay is done with it
        history = await hub.handle(lead_id).fetch_history()
        return any(e.HasField("workflow_execution_signaled_event_attributes") for e in history.events)

    await eventually(signalled)
    await hub.handle(lead_id).terminate(reason="stuck on Zoho")
    await hub.fault(target="zoho")
    return lead_id


async def test_a_report_whose_run_was_terminated_before_passing_it_on_reaches_zoho_with_the_next_run(
    sla_hub: Hub,
) -> None:
    """The report is in the portal database (GET shows it); the next run of the lead (the resent
    webhook) passes it on, so Zoho does not keep the older status."""
    hub = sla_hub
    lead_id = await contacted_reached_a_run_then_terminated(hub, "Cascavel")
    assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Not Contacted"
    assert (await hub.lead(lead_id) or {})["status"] == "contacted"

    assert (await hub.post_webhook(lead_id)).status_code == 202
    assert (await hub.handle(lead_id).result()).status == "contacted"
    assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Contacted"


async def test_a_report_taken_while_temporal_is_away_reaches_the_run_by_the_sweep(
    sla_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dealer is answered once its report is committed, and GET shows it at once; a hand-over to
    the lead's run that fails leaves the report due, and the sweep hands it on: the dealer keeps the lead."""
    hub = sla_hub
    lead_id = await hub.create_lead(State="PR", City="Londrina")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    assert hub.api is not None
    relay: ReportRelay = hub.api.state.relay
    # Temporal, as the API reaches it, is away: nothing answers where it is looked for.
    away = await Client.connect(
        f"127.0.0.1:{free_port()}", namespace=hub.settings.temporal_namespace, lazy=True
    )
    monkeypatch.setattr(relay, "_client", away)
    failed = handovers("after_answer", "failed")

    accepted = await dealer_reports(hub, "sla-a", lead_id, "accepted")
    assert accepted["hub"]["status_code"] == 200 and accepted["hub"]["body"]["outcome"] == "applied"
    assert (await hub.lead(lead_id) or {})["status"] == "accepted"

    async def hand_over_failed() -> bool:
        return handovers("after_answer", "failed") > failed

    await eventually(hand_over_failed, timeout=30)
    assert (await hub.handle(lead_id).describe()).status == WorkflowExecutionStatus.RUNNING

    monkeypatch.setattr(relay, "_client", hub.client)  # Temporal is back
    assert await relay.sweep() == 0  # within the grace the API's own hand-over may still be under way
    monkeypatch.setattr("api.relay.utcnow", lambda: datetime.now(UTC) + HAND_OVER_GRACE)
    assert await relay.sweep() == 1
    result = await hub.handle(lead_id).result()
    assert (result.status, result.dealer_id) == ("accepted", "sla-a")
    assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Not Contacted"
    assert await relay.sweep() == 0  # handed on once


def handovers(way: str, result: str) -> float:
    value = REGISTRY.get_sample_value("hub_dealer_report_handovers_total", {"way": way, "result": result})
    return value or 0.0


async def test_the_hub_asks_a_polled_dealer_for_its_status(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    hub = sla_hub
    lead_id = await hub.create_lead(State="SC", City="Joinville")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "poll-sc")
    await dealer_reports(hub, "poll-sc", lead_id, "accepted", callback=False)  # no webhook: only a read
    await skip_time(skipping_env, timedelta(minutes=2))
    await at_dealer(hub, lead_id, "poll-sc", status="accepted")
    assert (await hub.counters())["dealers"]["poll-sc"]["status_reads"] >= 1

    # After acceptance its CRM is read on, hourly: the later steps of its funnel reach the hub and Zoho,
    # until the lead is sold (or lost), which ends the run.
    await dealer_reports(hub, "poll-sc", lead_id, "contacted", callback=False)
    await skip_time(skipping_env, timedelta(hours=1, minutes=1))
    await at_dealer(hub, lead_id, "poll-sc", status="contacted")

    async def zoho_contacted() -> dict[str, Any] | None:
        lead = await zoho_lead(hub, lead_id)
        return lead if lead.get("Lead_Status") == "Contacted" else None

    await eventually(zoho_contacted)
    reading = await hub.handle(lead_id).describe()  # what support sees in the Web UI meanwhile
    assert reading.typed_search_attributes.get(LEAD_STATUS) == "contacted"
    await dealer_reports(hub, "poll-sc", lead_id, "sold", callback=False)
    await skip_time(skipping_env, timedelta(hours=1, minutes=1))
    result = await hub.handle(lead_id).result()
    assert (result.status, result.dealer_id) == ("sold", "poll-sc")
    assert (await hub.lead(lead_id) or {})["status"] == "sold"


async def test_a_polled_dealer_that_accepted_after_its_last_read_keeps_the_lead(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """A dealer asked hourly with 30 minutes to accept: no read comes before its SLA passes. It accepts
    in its CRM and sends no webhook; as the SLA passes it is read once more, and keeps the lead (it used
    to be withdrawn without a read, and the lead went to the next dealer)."""
    hub = sla_hub
    lead_id = await hub.create_lead(State="SE", City="Aracaju")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "poll-se")
    await dealer_reports(hub, "poll-se", lead_id, "accepted", callback=False)
    await skip_time(skipping_env, timedelta(minutes=31))
    lead = await at_dealer(hub, lead_id, "poll-se", status="accepted")
    assert [delivery["dealer_id"] for delivery in lead["deliveries"]] == ["poll-se"]
    counters = (await hub.counters())["dealers"]
    assert (counters["poll-se"]["status_reads"], counters["poll-se"]["withdrawn"]) == (1, 0)
    assert counters.get("next-se", {}).get("created", 0) == 0


async def test_a_polled_dealer_whose_crm_fails_the_read_at_its_deadline_is_read_again_not_withdrawn(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """As above, but the dealer's CRM answers 503 to the first reads at the deadline (away a moment, or
    a burst of deadlines after an outage): the read that decides is asked again, finds the acceptance,
    and the dealer keeps the lead (three failed tries used to withdraw it unread)."""
    hub = sla_hub
    lead_id = await hub.create_lead(State="SE", City="Lagarto")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "poll-se")
    await dealer_reports(hub, "poll-se", lead_id, "accepted", callback=False)
    await hub.fault(target="poll-se", error_5xx_count=3)
    await skip_time(skipping_env, timedelta(minutes=31))
    lead = await at_dealer(hub, lead_id, "poll-se", status="accepted")
    assert [delivery["dealer_id"] for delivery in lead["deliveries"]] == ["poll-se"]
    counters = (await hub.counters())["dealers"]
    assert (counters["poll-se"]["faults_served"], counters["poll-se"]["withdrawn"]) == (3, 0)
    assert counters.get("next-se", {}).get("created", 0) == 0


async def polled_dealer_accepted_then_run_resumed_late(hub: Hub) -> str:
    """A lead at a dealer read hourly with 30 minutes to accept, accepted in its CRM in time (no
    webhook); its run terminated, and the resent webhook's run starting only after the SLA passed (31
    minutes after the delivery, by the portal's clock). The lead's id."""
    lead_id = await hub.create_lead(State="SE", City="Aracaju")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "poll-se")
    await dealer_reports(hub, "poll-se", lead_id, "accepted", callback=False)
    await hub.handle(lead_id).terminate(reason="stuck")
    engine = create_engine(hub.settings.database_url)
    delivered = datetime.now(UTC) - timedelta(minutes=31)
    try:
        async with session_factory(engine).begin() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.lead_id == lead_id)
                .values(delivered_at=delivered, accept_by=delivered + timedelta(minutes=30))
            )
    finally:
        await engine.dispose()
    assert (await hub.post_webhook(lead_id)).status_code == 202
    return lead_id


async def test_a_run_resumed_past_the_deadline_reads_the_polled_dealer_before_withdrawing(
    sla_hub: Hub,
) -> None:
    """The resumed run finds the SLA passed without its timer firing: it reads the dealer's CRM once, finds
    the acceptance, and the dealer keeps the lead (it used to be withdrawn unread, and the lead went on
    to the next dealer)."""
    hub = sla_hub
    lead_id = await polled_dealer_accepted_then_run_resumed_late(hub)
    lead = await at_dealer(hub, lead_id, "poll-se", status="accepted")
    assert [(each["dealer_id"], each["status"]) for each in lead["deliveries"]] == [("poll-se", "delivered")]
    counters = (await hub.counters())["dealers"]
    assert (counters["poll-se"]["status_reads"], counters["poll-se"]["withdrawn"]) == (1, 0)
    assert counters.get("next-se", {}).get("created", 0) == 0


async def rerouted_to_a_refusing_dealer(hub: Hub, env: WorkflowEnvironment) -> str:
    """A lead at a dealer read hourly with 30 minutes to accept, which never accepts; the only other
    dealer of its state refuses every lead. The SLA passes: the lead is withdrawn, re-routed to that
    dealer, and refused. The lead's id."""
    faults = {"target": "next-se", "reject": True}
    (await hub.http.post(f"{hub.sims_url}/_control/faults", json=faults)).raise_for_status()
    lead_id = await hub.create_lead(State="SE", City="Aracaju")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "poll-se")
    await skip_time(env, SLA + timedelta(minutes=1))
    return lead_id


async def test_a_re_route_no_dealer_takes_goes_to_the_fallback_owner_at_once(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """After a re-route, a next dealer that refuses the lead with none left hands it to the fallback
    owner at once, as no dealer left at the re-route does: runs before waited a day for support, the
    lead with no owner meanwhile."""
    hub = sla_hub
    lead_id = await rerouted_to_a_refusing_dealer(hub, skipping_env)

    async def exhausted() -> dict[str, Any] | None:
        lead = await hub.lead(lead_id)
        return lead if lead and lead["status"] == "sla_exhausted" else None

    lead = await eventually(exhausted, timeout=60)  # no time skipped: no day's wait for support
    assert [(d["dealer_id"], d["status"]) for d in lead["deliveries"]] == [("poll-se", "withdrawn")]
    assert (await zoho_lead(hub, lead_id))["Owner"]["id"] == FALLBACK_OWNER
    counters = (await hub.counters())["dealers"]
    assert (counters["poll-se"]["withdrawn"], counters["next-se"]["created"]) == (1, 0)


async def test_a_dealer_taken_out_of_the_rules_while_it_holds_a_lead_is_asked_to_drop_it(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """`hub-rules load` deactivates the dealer a lead waits at. The lead still moves on when the SLA
    passes, and that dealer's CRM is asked to drop it (it was only recorded as withdrawn, and the CRM
    kept a lead the next dealer had too)."""
    hub = sla_hub
    lead_id = await hub.create_lead(State="PR", City="Curitiba")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    rules = sla_rules(hub.sims_url)
    rules.dealers[0].active = False
    assert rules.dealers[0].id == "sla-a"
    engine = create_engine(hub.settings.database_url)
    try:
        await apply_rules(session_factory(engine), rules)
    finally:
        await engine.dispose()
    await skip_time(skipping_env, SLA + timedelta(minutes=1))
    lead = await at_dealer(hub, lead_id, "sla-b")
    first = lead["deliveries"][0]
    assert (first["dealer_id"], first["withdrawal_at_crm"]) == ("sla-a", "withdrawn")
    assert (await hub.counters())["dealers"]["sla-a"]["withdrawn"] == 1


async def test_a_report_of_a_dealer_without_an_sla_reaches_zoho_after_its_run_was_terminated(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """A dealer without an SLA: the run ends at delivery. Its "contacted" is stored and handed to a run
    of its own, which Zoho's outage keeps retrying until support terminates it. The run a resent webhook
    starts resumes the delivered lead and passes the stored status on (it passed on only the reports
    signalled to it, and Zoho never heard of "contacted")."""
    lead_id = await unfollowed_report_run_terminated_then_resent(sla_hub)
    await sla_hub.handle(lead_id).result()
    assert (await zoho_lead(sla_hub, lead_id)).get("Lead_Status") == "Contacted"


async def test_a_status_of_a_lead_zoho_no_longer_has_goes_to_the_subscribers_and_nothing_is_parked(
    sla_hub: Hub,
) -> None:
    """The lead's team deleted it in Zoho after its delivery; its dealer still reports. The status goes to
    the subscribers and the portal; Zoho refuses the write, and nothing is parked: no redrive could place
    it, and support would be alerted for nothing."""
    lead_id = await delivered_then_deleted_in_zoho(sla_hub)
    reported = await dealer_reports(sla_hub, "plain-al", lead_id, "contacted")
    assert reported["hub"]["body"]["outcome"] == "applied"
    await sla_hub.handle(lead_id).result()  # the run the report started, once it passed the status on
    assert await contacted_event(sla_hub, lead_id, "plain-al")
    lead = await sla_hub.lead(lead_id)
    assert lead is not None and (lead["status"], lead["dealer_id"]) == ("contacted", "plain-al")
    assert await parked_writebacks(sla_hub) == 0


async def delivered_then_deleted_in_zoho(hub: Hub) -> str:
    """A lead delivered to plain-al (its run ends at delivery), then deleted in Zoho by its team; its id."""
    lead_id = await hub.create_lead(State="AL", City="Maceió")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    (await hub.http.delete(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")).raise_for_status()
    return lead_id


async def parked_writebacks(hub: Hub) -> int:
    """The leads whose Zoho write-back waits parked for support's redrive."""
    async with one_off_sessions(hub.settings.database_url) as sessions:
        return await zoho_writebacks.count(sessions)


async def unfollowed_report_run_terminated_then_resent(hub: Hub) -> str:
    """A lead at the dealer without an SLA, its "contacted" stored while Zoho is down, the run passing it
    on terminated, Zoho back, and the lead's webhook sent again; the lead's id."""
    lead_id = await hub.create_lead(State="AL", City="Maceió")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "plain-al")
    delivered_by = await hub.handle(lead_id).result()
    assert delivered_by.dealer_id == "plain-al"
    first = (await hub.handle(lead_id).describe()).run_id
    await hub.fault(target="zoho", error_5xx_count=10_000)
    reported = await dealer_reports(hub, "plain-al", lead_id, "contacted")
    assert reported["hub"]["body"]["outcome"] == "applied"

    async def passing_it_on() -> bool:
        described = await hub.handle(lead_id).describe()
        return described.run_id != first and described.status == WorkflowExecutionStatus.RUNNING

    await eventually(passing_it_on)
    await hub.handle(lead_id).terminate(reason="stuck on Zoho")
    await hub.fault(target="zoho")
    assert (await hub.post_webhook(lead_id)).status_code == 202
    return lead_id


async def test_a_night_lead_waits_for_opening_and_no_dealer_left_means_the_fallback(
    sla_hub: Hub, skipping_env: WorkflowEnvironment
) -> None:
    """The only RS dealer is closed today and tomorrow: its 30 minutes start the day after at 08:00."""
    hub = sla_hub
    lead_id = await hub.create_lead(State="RS", City="Porto Alegre")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "night-rs")  # the best dealer anyway, closed or not
    opening = datetime.combine(datetime.now(BRT).date() + timedelta(days=2), datetime.min.time(), BRT)
    deadline = (opening + timedelta(hours=8, minutes=30)).astimezone(UTC)
    # Support reads when the lead moves on if the dealer does not accept it.
    waiting = (await hub.lead(lead_id) or {})["deliveries"][-1]
    assert datetime.fromisoformat(waiting["accept_by"]) == deadline
    await skip_time(skipping_env, timedelta(hours=24))
    assert (await hub.lead(lead_id) or {})["dealer_id"] == "night-rs"
    await skip_time(skipping_env, timedelta(days=2))
    lead = await hub.wait_for_status(lead_id, "sla_exhausted")
    assert deadline.isoformat() in str(lead["deliveries"][0]["withdrawal_reason"])
    assert "no dealer left" in str(lead["detail"])

    # A later run of the lead (a redrive, a resent webhook after a terminate) finds an RS dealer open
    # now: the lead stays with the fallback owner, never going to a dealer behind Zoho's back.
    await hub.handle(lead_id).result()
    rules = sla_rules(hub.sims_url)
    day_rs = {
        "id": "day-rs",
        "name": "day-rs",
        "crm": {"kind": "rest", "url": f"{hub.sims_url}/dealer-rest/day-rs"},
        "routing": {"states": ["RS"], "daily_capacity": 100, "priority": 20},
        "field_mapping": {"external_id": "id", "first_name": "First_Name"},
    }
    rules.dealers.append(RulesFile.model_validate({"dealers": [day_rs]}).dealers[0])
    async with one_off_sessions(hub.settings.database_url) as sessions:
        await apply_rules(sessions, rules)
    first = await started_with(hub.client, await hub.handle(lead_id).fetch_history(), LeadDistributionInput)
    assert await start_lead_distribution(hub.client, hub.settings, lead_id, first.event, redrive=True)
    assert (await hub.handle(lead_id).result()).status == "sla_exhausted"
    assert (await hub.counters())["dealers"].get("day-rs", {}).get("created", 0) == 0
    lead = await hub.lead(lead_id) or {}
    assert lead["status"] == "sla_exhausted"
    assert "at its fallback owner already" in str(lead["detail"])
    assert [d["dealer_id"] for d in lead["deliveries"]] == ["night-rs"]


async def test_dealer_webhook_refuses_what_it_cannot_trust(sla_hub: Hub) -> None:
    hub = sla_hub
    lead_id = await hub.create_lead(State="PR", City="Maringá")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    url = f"{hub.api_url}/webhooks/dealers/sla-a/leads/{lead_id}/status"
    header = hub.settings.dealer_webhook_secret_header

    async def post(target: str, body: Any, secret: str | None = DEALER_SECRET) -> int:
        headers = {header: secret} if secret is not None else {}
        return (await hub.http.post(target, json=body, headers=headers)).status_code

    assert await post(url, {"status": "accepted"}, secret="wrong") == 401
    assert await post(url, {"status": "accepted"}, secret=None) == 401
    # No dealer of that id: answered as a wrong secret, so outsiders cannot list the dealers.
    assert await post(url.replace("sla-a", "unknown-dealer"), {"status": "accepted"}) == 401
    assert await post(url.replace("sla-a", "unknown-dealer"), {"status": "accepted"}, secret=None) == 401
    assert await post(url.replace("sla-a", "sla-b"), {"status": "accepted"}) == 404  # not its lead
    assert await post(url.replace(lead_id, "999"), {"status": "accepted"}) == 404
    assert await post(url, {"status": "bought"}) == 422
    form = await hub.http.post(url, data={"status": "accepted"}, headers={header: DEALER_SECRET})
    assert (form.status_code, form.json()["detail"]) == (415, "content type must be application/json")
    undeclared = await hub.http.post(url, content=b'{"status": "bought"}', headers={header: DEALER_SECRET})
    assert undeclared.status_code == 422  # no content type: read as JSON (and its status checked)
    assert await post(url, {"status": "accepted", "at": "yesterday"}) == 422
    assert await post(url, {"status": "accepted", "at": "2026-12-01T10:00:00"}) == 422  # no offset
    assert await post(url, {"status": "accepted", "at": "0001-01-01T00:00:00+01:00"}) == 422  # no UTC time
    assert await post(url, {"status": "accepted"}, secret="rotated-out") == 401
    assert (await hub.lead(lead_id) or {})["status"] == "delivered"  # nothing half-processed
    # sla-a's secret rotates: its previous one is accepted alongside until removed, for sla-a only.
    assert hub.api is not None and hub.api.state.settings is hub.settings
    hub.settings.dealer_webhook_previous_secrets["sla-a"] = SecretStr("rotated-out")
    assert await post(url.replace("sla-a", "sla-b"), {"status": "accepted"}, secret="rotated-out") == 401
    assert await post(url, {"status": "accepted"}, secret="rotated-out") == 200
    assert await post(url, {"status": "accepted"}) == 200  # the new one too (a repeat now)


def test_reports_signalled_at_once_never_move_the_status_back() -> None:
    """Two status webhooks answered together signal the run concurrently; the older may come second."""
    from contracts.leads import DealerStatusReport
    from workflows.lead_distribution import LeadDistributionWorkflow

    run = LeadDistributionWorkflow()
    contacted = DealerStatusReport("sla-a", "contacted", "2026-12-03T10:05:00+00:00")
    accepted = DealerStatusReport("sla-a", "accepted", "2026-12-03T10:00:00+00:00")
    assert run._is_newest(contacted)
    assert not run._is_newest(accepted)  # older by the dealer's clock: not passed on
    assert not run._is_newest(contacted)  # a repeat
    assert run._is_newest(
        DealerStatusReport("sla-a", "sold", "2026-12-03T10:05:00+00:00")
    )  # as late, further
    assert run._is_newest(DealerStatusReport("sla-b", "accepted", "2026-12-03T09:00:00+00:00"))

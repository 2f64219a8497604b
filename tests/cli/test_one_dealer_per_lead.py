"""One dealer per lead whatever support and Zoho do to its runs: terminate, redrive, a resent webhook.

Only ``hub leads reassign`` moves a lead that reached a dealer, and the move is in its history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, session_factory
from db.rules import apply_rules
from tests.cli.conftest import HubCli, Ran
from tests.hub import Hub, contacted_event
from tests.hub import test_rules as routing_rules
from tests.support import eventually, skip_time
from tests.workflows.test_dealer_sla import (
    at_dealer,
    dealer_reports,
    delivered_then_deleted_in_zoho,
    parked_writebacks,
    sla_exhausted_lead,
    sla_hub,
    sla_rules,
    zoho_lead,
)

T = TypeVar("T")


async def set_capacity(hub: Hub, dealer_id: str, capacity: int) -> None:
    rules = routing_rules(hub.sims_url)
    next(d for d in rules.dealers if d.id == dealer_id).routing.daily_capacity = capacity
    engine = create_engine(hub.settings.database_url)
    await apply_rules(session_factory(engine), rules)
    await engine.dispose()


async def retrying(hub: Hub, lead_id: str, step: str) -> bool:
    """Whether the lead's run is retrying ``step`` (its second attempt or later is pending)."""
    described = await hub.handle(lead_id).describe()
    return any(
        pending.activity_type.name == step and pending.attempt >= 2
        for pending in described.raw_description.pending_activities
    )


async def creates(hub: Hub, dealer_id: str) -> dict[str, int]:
    return dict((await hub.dealer_leads(dealer_id))["creates_by_external_id"])


async def test_terminate_redrive_and_resend_never_reach_a_second_dealer(hub: Hub, hub_cli: HubCli) -> None:
    since = datetime.now(UTC).isoformat()
    await hub.fault(target="rest-sp-a", latency_ms=1500)  # the delivery takes a moment
    lead_id = await hub.create_lead(State="SP", City="São Paulo", Modelo_de_Interesse="Onix")
    await hub.post_webhook(lead_id)

    async def delivery_in_flight() -> bool:
        return (await hub.counters())["dealers"].get("rest-sp-a", {}).get("requests", 0) >= 1

    await eventually(delivery_in_flight)
    await hub.fault(target="zoho", error_5xx_count=10_000)  # Zoho down from here on
    delivered = await hub.wait_for_status(lead_id, "delivered")
    assert delivered["dealer_id"] == "rest-sp-a"
    # rest-sp-a is now full for the day: routing the lead again would send it to rest-sp-b.
    await set_capacity(hub, "rest-sp-a", 1)

    # Support terminates the run stuck on the Zoho outage; then redrives it; then terminates again.
    await eventually(lambda: retrying(hub, lead_id, "update_zoho_lead"))
    await hub.handle(lead_id).terminate(reason="stuck on the Zoho outage")
    redriven = await hub_cli(
        hub.settings, "leads", "redrive", "--status", "failed", "--since", since, "--yes"
    )
    assert redriven.code == 0, redriven.err
    assert f"lead-{lead_id}" in redriven.out and "redriven" in redriven.out
    await eventually(lambda: retrying(hub, lead_id, "fetch_lead"))  # Zoho is still down
    await hub.handle(lead_id).terminate(reason="still stuck")

    # Zoho is back and fires the lead's webhook again: the new run resumes the delivered lead.
    await hub.http.delete(f"{hub.sims_url}/_control/faults/zoho")
    resent = await hub.post_webhook(lead_id)
    assert resent.json()["status"] == "accepted"
    result = await hub.handle(lead_id).result()
    assert (result.status, result.dealer_id) == ("delivered", "rest-sp-a")
    assert result.dealer_lead_id == delivered["dealer_lead_id"]
    assert await creates(hub, "rest-sp-a") == {lead_id: 1}
    assert await creates(hub, "rest-sp-b") == {}
    zoho = (await hub.http.get(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")).json()["lead"]
    assert (zoho["Status_Distribuicao"], zoho["Concessionaria_Id"]) == ("delivered", "rest-sp-a")
    lead = await hub.lead(lead_id)
    assert lead is not None and (lead["status"], lead["dealer_id"]) == ("delivered", "rest-sp-a")
    assert [h["dealer_id"] for h in lead["history"] if h["status"] == "routed"] == ["rest-sp-a"]

    # Only support's explicit reassignment moves it, with its reason in the history.
    moved = await hub_cli(
        hub.settings, "leads", "reassign", lead_id, "rest-sp-b", "--reason", "customer moved", "--by", "ana"
    )
    assert moved.code == 0, moved.err
    result = await hub.handle(lead_id).result()
    assert (result.status, result.dealer_id) == ("delivered", "rest-sp-b")
    assert await creates(hub, "rest-sp-b") == {lead_id: 1}
    assert await creates(hub, "rest-sp-a") == {lead_id: 1}
    # The first dealer's CRM was asked to drop the lead before the second got it, and answered.
    counters = (await hub.counters())["dealers"]
    assert (counters["rest-sp-a"]["withdrawn"], counters["rest-sp-b"]["withdrawn"]) == (1, 0)
    lead = await hub.lead(lead_id)
    assert lead is not None and (lead["status"], lead["dealer_id"]) == ("delivered", "rest-sp-b")
    statuses = [(h["status"], h["dealer_id"]) for h in lead["history"]]
    assert statuses[-2:] == [("reassigned", "rest-sp-b"), ("delivered", "rest-sp-b")]
    assert "from rest-sp-a to rest-sp-b by ana: customer moved" in lead["history"][-2]["detail"]
    moved_away = [(d["dealer_id"], d["status"], d["withdrawal_at_crm"]) for d in lead["deliveries"]]
    assert moved_away == [("rest-sp-a", "released", "withdrawn"), ("rest-sp-b", "delivered", None)]

    # The same move again moves nothing; a dealer that does not exist is refused before anything changes.
    runs = await hub.count_workflows(f"WorkflowId = 'lead-{lead_id}'")
    why = ("--reason", "again", "--by", "ana")
    same = await hub_cli(hub.settings, "leads", "reassign", lead_id, "rest-sp-b", *why)
    assert same.code == 0 and "at rest-sp-b already: nothing moved" in same.out
    nobody = await hub_cli(hub.settings, "leads", "reassign", lead_id, "no-such-dealer", *why)
    assert nobody.code == 1 and "no active dealer no-such-dealer" in nobody.err
    assert await hub.count_workflows(f"WorkflowId = 'lead-{lead_id}'") == runs

    # And a later redrive or resend leaves it where support put it.
    again = await hub.post_webhook(lead_id)
    assert again.json()["status"] == "duplicate"
    assert await creates(hub, "rest-sp-a") == {lead_id: 1}


async def test_reassign_refuses_a_running_lead_and_an_unknown_one(hub: Hub, hub_cli: HubCli) -> None:
    lead_id = await hub.create_lead(State="BA", City="Salvador")  # waits for support: still running
    await hub.post_webhook(lead_id)
    await hub.wait_for_awaiting(lead_id)
    args = ("rest-mg", "--reason", "x", "--by", "ana")
    running = await hub_cli(hub.settings, "leads", "reassign", lead_id, *args)
    assert running.code == 1 and "hub leads assign" in running.err
    unknown = await hub_cli(hub.settings, "leads", "reassign", "5725767000000000404", *args)
    assert unknown.code == 1 and "unknown lead" in unknown.err


async def test_reassign_of_a_lead_zoho_no_longer_has_moves_nothing_and_says_why(
    hub: Hub, hub_cli: HubCli
) -> None:
    lead_id = await hub.create_lead(State="SP", City="São Paulo", Modelo_de_Interesse="Onix")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    history = (await hub.lead(lead_id) or {})["history"]
    # A salesperson deletes the lead in Zoho; support then tries to move it.
    (await hub.http.delete(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")).raise_for_status()
    why = ("--reason", "customer moved", "--by", "ana")
    moved = await hub_cli(hub.settings, "leads", "reassign", lead_id, "rest-sp-b", *why)
    assert moved.code == 1
    assert "Zoho no longer has the lead (deleted, or converted); it stays at rest-sp-a" in moved.err
    # The lead is where it was, as it was: no "failed" over a lead its dealer has, no second dealer.
    lead = await hub.lead(lead_id)
    assert lead is not None and (lead["status"], lead["dealer_id"]) == ("delivered", "rest-sp-a")
    assert lead["history"] == history
    assert await creates(hub, "rest-sp-b") == {}
    result = await hub.handle(lead_id).result()
    assert (result.status, result.dealer_id) == ("not_reassigned", None)


async def test_a_status_reported_while_a_reassign_finds_the_lead_gone_still_goes_on(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, hub_cli: HubCli
) -> None:
    """The reassign run is the lead's workflow while it reads Zoho: a dealer's status the API hands to it
    then reaches the subscribers, though the run moves nothing."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await delivered_then_deleted_in_zoho(hub)
        await hub.fault(target="zoho", error_5xx_count=10_000)  # the move's read of the lead waits on Zoho
        why = ("--reason", "customer moved", "--by", "ana")
        moving = asyncio.create_task(hub_cli(hub.settings, "leads", "reassign", lead_id, "sla-a", *why))
        await eventually(lambda: retrying(hub, lead_id, "fetch_lead"))
        reported = await dealer_reports(hub, "plain-al", lead_id, "contacted")
        assert reported["hub"]["body"]["outcome"] == "applied"
        await hub.fault(target="zoho")  # Zoho answers again: it has no such lead
        moved = await moving
        assert moved.code == 1 and "Zoho no longer has the lead" in moved.err
        await eventually(lambda: contacted_event(hub, lead_id, "plain-al"))
        lead = await hub.lead(lead_id)
        assert lead is not None and (lead["status"], lead["dealer_id"]) == ("contacted", "plain-al")
        # Zoho, which has no such lead, is not written to: nothing parked that no redrive could place.
        assert await parked_writebacks(hub) == 0


async def test_a_lead_sent_back_to_dealers_whose_crms_withdrew_it_is_a_new_lead_there(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, hub_cli: HubCli
) -> None:
    """A REST CRM and a SOAP DMS each withdrew the lead after a missed SLA; support sends it back to
    each in turn. Each gets a lead of its own again (the old key or the old record would be the
    withdrawn one), and the DMS that cannot withdraw keeps the lead it had."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await sla_exhausted_lead(hub, skipping_env, First_Name="Rui")
        await hub.handle(lead_id).result()
        for dealer_id in ("sla-a", "sla-b", "sla-c"):
            moved = await hub_cli(
                hub.settings, "leads", "reassign", lead_id, dealer_id, "--reason", "it asked", "--by", "ana"
            )
            assert moved.code == 0, moved.err
            await at_dealer(hub, lead_id, dealer_id)
            await hub.handle(lead_id).terminate("next dealer")  # the test moves it on; support would wait
        counters = (await hub.counters())["dealers"]
        created = {dealer_id: counters[dealer_id]["created"] for dealer_id in ("sla-a", "sla-b", "sla-c")}
        assert created == {"sla-a": 2, "sla-b": 2, "sla-c": 1}


async def status_events(hub: Hub, lead_id: str, dealer_id: str, status: str) -> list[str]:
    """The ids of the status events the subscribers kept for the lead's ``status`` at ``dealer_id``."""
    events = (await hub.http.get(f"{hub.sims_url}/_control/events/portal")).json()["events"]
    return [
        e["id"]
        for e in events
        if e["type"] == "LeadStatusAtualizado"
        and (e["data"]["lead_id"], e["data"]["dealer_id"], e["data"]["status"])
        == (lead_id, dealer_id, status)
    ]


async def test_a_dealer_the_lead_is_sent_back_to_reports_anew_and_the_subscribers_hear_it_again(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, hub_cli: HubCli
) -> None:
    """plain-al contacted the customer; support moved the lead to sla-a, then back to plain-al, which
    contacts the customer again. The second "contacted" is a report of its own: the subscribers get an
    event for each, not one they drop as a repeat of the first."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(State="AL", City="Maceió")
        await hub.post_webhook(lead_id)
        await hub.handle(lead_id).result()  # plain-al has no SLA: the run ends at delivery
        reported = await dealer_reports(hub, "plain-al", lead_id, "contacted")
        assert reported["hub"]["body"]["outcome"] == "applied"
        first = await eventually(lambda: status_events(hub, lead_id, "plain-al", "contacted"))
        await hub.handle(lead_id).result()  # the run the report started: support moves an ended lead

        why = ("--reason", "customer moved", "--by", "ana")
        for dealer_id in ("sla-a", "plain-al"):
            moved = await hub_cli(hub.settings, "leads", "reassign", lead_id, dealer_id, *why)
            assert moved.code == 0, moved.err
            await at_dealer(hub, lead_id, dealer_id)
            if dealer_id == "sla-a":
                await hub.handle(lead_id).terminate("next dealer")  # the test moves it on; support would wait
        await hub.handle(lead_id).result()
        again = await dealer_reports(hub, "plain-al", lead_id, "contacted")
        assert again["hub"]["body"]["outcome"] == "applied"

        async def heard_twice() -> list[str] | None:
            ids = await status_events(hub, lead_id, "plain-al", "contacted")
            return ids if len(ids) == 2 else None

        ids = await eventually(heard_twice)
        assert ids[0] == first[0] and ids[1] != first[0]
        # Each delivery is an event of its own too: the second at plain-al is no repeat of the first.
        events = (await hub.http.get(f"{hub.sims_url}/_control/events/portal")).json()["events"]
        kept = [(e["type"], e["data"]["dealer_id"], e["data"].get("status")) for e in events]
        assert kept == [
            ("LeadDistribuidoComSucesso", "plain-al", None),
            ("LeadStatusAtualizado", "plain-al", "contacted"),
            ("LeadDistribuidoComSucesso", "sla-a", None),
            ("LeadDistribuidoComSucesso", "plain-al", None),
            ("LeadStatusAtualizado", "plain-al", "contacted"),
        ]


def reassign_by_cli(hub: Hub, hub_cli: HubCli, dealer_id: str) -> Callable[[str], Coroutine[Any, Any, Ran]]:
    """Support's ``hub leads reassign`` of a lead to ``dealer_id``."""

    async def reassign(lead_id: str) -> Ran:
        return await hub_cli(
            hub.settings, "leads", "reassign", lead_id, dealer_id, "--reason", "moved", "--by", "ana"
        )

    return reassign


async def reported_as_support_moves(
    hub: Hub, move: Callable[[str], Coroutine[Any, Any, T]]
) -> tuple[str, asyncio.Task[T]]:
    """A lead at plain-al (no SLA: its run ended at delivery) that support moves to sla-a (``move``, given
    the lead's id) while Zoho is down, plain-al's "contacted" reaching the move's run as it waits on Zoho:
    the lead's id, and the move under way (Zoho still down)."""
    lead_id = await hub.create_lead(State="AL", City="Maceió")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    await hub.fault(target="zoho", error_5xx_count=10_000)  # the move's read of the lead waits on Zoho
    moving = asyncio.create_task(move(lead_id))
    await eventually(lambda: retrying(hub, lead_id, "fetch_lead"))
    reported = await dealer_reports(hub, "plain-al", lead_id, "contacted")
    assert reported["hub"]["body"]["outcome"] == "applied"
    return lead_id, moving


async def refused_with_its_drop_owed(hub: Hub, env: WorkflowEnvironment, lead_id: str) -> None:
    """The move of ``reported_as_support_moves``, Zoho back: sla-a refuses the lead, plain-al's CRM does
    not answer its drop, and no other dealer covers the lead, until support's time to assign one passed."""
    await hub.fault(target="plain-al", error_5xx_count=10_000)  # its drop stays owed
    await hub.fault(target="sla-a", reject=True)
    await hub.fault(target="zoho")
    await eventually(lambda: retrying(hub, lead_id, "withdraw_at_dealer"))
    await skip_time(env, timedelta(minutes=6))  # plain-al's CRM is not waited on longer
    await hub.wait_for_status(lead_id, "received")  # awaiting support's assign_dealer
    await skip_time(env, timedelta(hours=24))  # ... until its deadline


async def taken_out_of_the_rules(hub: Hub, dealer_id: str) -> None:
    rules = sla_rules(hub.sims_url)
    rules.dealers = [d for d in rules.dealers if d.id != dealer_id]  # inactive from here on
    engine = create_engine(hub.settings.database_url)
    await apply_rules(session_factory(engine), rules)
    await engine.dispose()


async def test_a_status_reported_as_support_moves_the_lead_reaches_the_subscribers_when_no_dealer_takes_it(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, hub_cli: HubCli
) -> None:
    """The new dealer refuses the lead, plain-al's CRM does not answer its drop, and no other dealer
    covers the lead: the move's run ends unrouted. The subscribers still hear of plain-al's report."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id, moving = await reported_as_support_moves(hub, reassign_by_cli(hub, hub_cli, "sla-a"))
        await refused_with_its_drop_owed(hub, skipping_env, lead_id)
        assert (await moving).code == 0  # the decision moved to sla-a, which then refused the lead
        result = await hub.handle(lead_id).result()
        assert (result.status, [a.outcome for a in result.attempts]) == ("unrouted", ["rejected"])
        assert await contacted_event(hub, lead_id, "plain-al")
        lead = await hub.lead(lead_id)
        assert lead is not None and lead["status"] == "unrouted"
        assert (await zoho_lead(hub, lead_id)).get("Lead_Status") != "Contacted"  # no dealer holds it


async def test_a_status_reported_as_a_refused_move_fails_reaches_zoho_and_the_subscribers(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, hub_cli: HubCli
) -> None:
    """sla-a is taken out of the rules while the move waits on Zoho: the move's run fails, the lead
    stays at plain-al, and plain-al's report that reached that run goes on to Zoho and the subscribers."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id, moving = await reported_as_support_moves(hub, reassign_by_cli(hub, hub_cli, "sla-a"))
        await taken_out_of_the_rules(hub, "sla-a")
        await hub.fault(target="zoho")
        moved = await moving
        assert moved.code == 1 and "its new run failed before moving it" in moved.err
        assert await contacted_event(hub, lead_id, "plain-al")
        assert (await zoho_lead(hub, lead_id)).get("Lead_Status") == "Contacted"
        lead = await hub.lead(lead_id)
        assert lead is not None and (lead["status"], lead["dealer_id"]) == ("contacted", "plain-al")

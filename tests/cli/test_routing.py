"""``hub routing simulate`` and ``hub leads explain``: the candidates, why each is kept or dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.cli.conftest import HubCli
from tests.hub import Hub
from tests.support import free_port, skip_time
from tests.workflows.test_dealer_sla import BRT, SLA, at_dealer, sla_exhausted_lead, sla_hub


@pytest.fixture
async def hub(skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str) -> AsyncIterator[Hub]:
    async with sla_hub(skipping_env, sqlite_url, task_queue) as running:
        yield running


async def test_simulate_ranks_the_dealers_and_says_why_others_are_dropped(hub: Hub, hub_cli: HubCli) -> None:
    ran = await hub_cli(hub.settings, "routing", "simulate", "--state", "PR", "--city", "Curitiba", "--json")
    assert ran.code == 0, ran.err
    candidates = {row["dealer_id"]: row for row in ran.lines("candidate")}
    assert [row["dealer_id"] for row in ran.lines("candidate") if row["kept"] == "yes"] == [
        "sla-a",
        "sla-b",
        "sla-c",
    ]
    assert candidates["sla-a"]["why"].endswith(": chosen")
    assert candidates["sla-b"]["why"].endswith("behind the best ones (fallback if they refuse)")
    assert candidates["poll-sc"]["why"] == "area: does not serve state PR"
    assert ran.lines("choice") == [{"type": "choice", "dealer_id": "sla-a"}]

    text = await hub_cli(hub.settings, "routing", "simulate", "--state", "BA")
    assert text.code == 0 and "choice: none (the lead would wait for support's assign)" in text.out


async def test_simulate_says_when_a_night_lead_must_be_accepted(hub: Hub, hub_cli: HubCli) -> None:
    """The RS dealer opens at 08:00 and is closed today and tomorrow: a lead at 23:10 the day after
    goes to it anyway, and its 30 minutes run from the next opening."""
    night = datetime.combine(datetime.now(BRT).date() + timedelta(days=2), time(23, 10), BRT)
    ran = await hub_cli(
        hub.settings, "routing", "simulate", "--state", "RS", "--at", night.isoformat(), "--json"
    )
    assert ran.code == 0, ran.err
    [candidate] = [row for row in ran.lines("candidate") if row["dealer_id"] == "night-rs"]
    assert candidate["kept"] == "yes" and "closed now (its SLA would start at opening)" in candidate["why"]
    morning = datetime.combine(night.date() + timedelta(days=1), time(8, 30), BRT)
    assert datetime.fromisoformat(candidate["accept_by"]) == morning
    assert ran.lines("choice") == [{"type": "choice", "dealer_id": "night-rs"}]
    # A dealer without an SLA keeps leads with no deadline: the column says so.
    text = await hub_cli(hub.settings, "routing", "simulate", "--state", "RS", "--at", night.isoformat())
    assert "ACCEPT BY" in text.out


async def test_explain_shows_each_delivery_and_that_a_lost_dealer_is_never_chosen_again(
    hub: Hub, hub_cli: HubCli, skipping_env: WorkflowEnvironment
) -> None:
    lead_id = await hub.create_lead(State="PR", City="Cascavel")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "sla-a")
    await skip_time(skipping_env, SLA + timedelta(minutes=1))
    await at_dealer(hub, lead_id, "sla-b")

    ran = await hub_cli(hub.settings, "leads", "explain", lead_id, "--json")
    assert ran.code == 0, ran.err
    deliveries = ran.lines("delivery")
    assert [(d["dealer_id"], d["status"]) for d in deliveries] == [
        ("sla-a", "withdrawn"),
        ("sla-b", "delivered"),
    ]
    assert "SLA to accept passed" in deliveries[0]["withdrawal_reason"]
    assert deliveries[1]["reason"].startswith("routed: covers the lead, open now, priority 20")
    candidates = {row["dealer_id"]: row for row in ran.lines("candidate")}
    assert candidates["sla-a"]["kept"] == "no"
    assert candidates["sla-a"]["why"].startswith("lost this lead before")

    unknown = await hub_cli(hub.settings, "leads", "explain", "999")
    assert unknown.code == 1 and "no lead 999" in unknown.err


async def test_explain_says_no_dealer_is_chosen_past_the_re_routing_cap(
    hub: Hub, hub_cli: HubCli, skipping_env: WorkflowEnvironment
) -> None:
    """Three dealers missed their SLA, past the cap of two re-routes: the run gave the lead to the
    fallback owner, and explain says routing claims no dealer for it, as the run decided."""
    lead_id = await sla_exhausted_lead(hub, skipping_env)
    ran = await hub_cli(hub.settings, "leads", "explain", lead_id)
    assert ran.code == 0, ran.err
    assert "choice: none (3 dealers missed their SLA, more than HUB_LEAD_MAX_REROUTES=2" in ran.out


async def test_explain_says_no_dealer_is_chosen_for_a_lead_at_its_fallback_owner(
    hub: Hub, hub_cli: HubCli, skipping_env: WorkflowEnvironment
) -> None:
    """The only RS dealer missed its SLA and none was left: the fallback owner has the lead, below the
    re-routing cap. Explain says routing claims no dealer for it, as a later run of the lead decides."""
    lead_id = await hub.create_lead(State="RS", City="Porto Alegre")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "night-rs")
    await skip_time(skipping_env, timedelta(days=3))
    await hub.wait_for_status(lead_id, "sla_exhausted")
    ran = await hub_cli(hub.settings, "leads", "explain", lead_id)
    assert ran.code == 0, ran.err
    assert "choice: none (it went to its fallback owner, and support has not moved it since" in ran.out


async def test_simulate_needs_the_portal_database_only(hub: Hub, hub_cli: HubCli) -> None:
    """Support explains routing while Temporal is away; a command that needs Temporal says it is away."""
    away = hub.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    ran = await hub_cli(away, "routing", "simulate", "--state", "PR", "--city", "Curitiba", "--json")
    assert ran.code == 0, ran.err
    assert ran.lines("choice") == [{"type": "choice", "dealer_id": "sla-a"}]
    parked = await hub_cli(away, "parked", "list")
    assert parked.code == 1
    assert parked.err.startswith(f"hub: cannot reach Temporal at {away.temporal_address}")

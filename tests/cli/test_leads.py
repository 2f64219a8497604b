"""``hub leads``: redrive leads whose run ended failed, assign a dealer to a waiting lead."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

import cli.leads
from db.engine import create_engine, session_factory
from db.rules import apply_rules
from tests.cli.conftest import HubCli
from tests.hub import Hub, running_hub
from tests.hub import test_rules as routing_rules


def unknown_lead_id() -> str:
    """A lead id Zoho (the simulator) does not know yet."""
    return f"5725767{random.randrange(10**11, 10**12)}"


async def runs_of(hub: Hub, lead_id: str) -> int:
    return await hub.count_workflows(f"WorkflowId = 'lead-{lead_id}'")


async def test_redrive_restarts_a_failed_lead_a_resent_webhook_does_not(hub: Hub, hub_cli: HubCli) -> None:
    since = datetime.now(UTC).isoformat()
    lead_id = unknown_lead_id()
    await hub.post_webhook(lead_id)  # Zoho does not know it (yet): the lead ends failed
    await hub.wait_for_status(lead_id, "failed")
    await hub.handle(lead_id).result()
    await hub.create_lead(id=lead_id, State="SP", City="Santos")  # now it does

    # The run ended normally, so a resent webhook joins it: it does not redo the lead.
    resent = await hub.post_webhook(lead_id)
    assert resent.json()["status"] == "duplicate"
    assert await runs_of(hub, lead_id) == 1

    redrive = ("leads", "redrive", "--status", "failed", "--since", since)
    listed = await hub_cli(hub.settings, "--json", *redrive, "--dry-run")
    assert listed.code == 0, listed.err
    [row] = [row for row in listed.lines("lead") if row["workflow_id"] == f"lead-{lead_id}"]
    assert (row["ended"], row["lead_status"], row["action"]) == ("completed", "failed", "would redrive")
    refused = await hub_cli(hub.settings, *redrive)  # no terminal to ask, and no --yes
    assert refused.code == 1 and "add --yes" in refused.err
    assert await runs_of(hub, lead_id) == 1  # neither changed anything

    done = await hub_cli(hub.settings, *redrive, "--yes", "--json")
    assert done.code == 0, done.err
    [row] = [row for row in done.lines("lead") if row["workflow_id"] == f"lead-{lead_id}"]
    assert row["action"] == "redriven"
    lead = await hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "rest-sp-a"
    assert (await hub.dealer_leads("rest-sp-a"))["creates_by_external_id"] == {lead_id: 1}
    assert await runs_of(hub, lead_id) == 2

    # Its latest run is no longer the failed one: a second redrive leaves the lead alone.
    again = await hub_cli(hub.settings, *redrive, "--yes", "--json")
    assert again.code == 0, again.err
    assert not [row for row in again.lines("lead") if row["workflow_id"] == f"lead-{lead_id}"]
    assert await runs_of(hub, lead_id) == 2


async def test_redrive_beyond_its_limit_says_so_and_a_second_call_takes_the_rest(
    hub: Hub, hub_cli: HubCli
) -> None:
    since = datetime.now(UTC).isoformat()
    lead_ids = [unknown_lead_id() for _ in range(2)]
    for lead_id in lead_ids:  # Zoho does not know them (yet): each ends failed, in this order
        await hub.post_webhook(lead_id)
        await hub.wait_for_status(lead_id, "failed")
        await hub.handle(lead_id).result()
        await hub.create_lead(id=lead_id, State="SP", City="Santos")
    redrive = ("leads", "redrive", "--status", "failed", "--since", since, "--yes", "--json", "--limit", "1")

    first = await hub_cli(hub.settings, *redrive)
    assert first.code == 1 and "more than 1 leads match: redrive the rest with --since " in first.out
    [row] = first.lines("lead")
    assert row["workflow_id"] == f"lead-{lead_ids[0]}"
    second = await hub_cli(hub.settings, *redrive)
    assert "1 skipped: a later run of the same workflow exists" in second.out  # the first, redriven
    assert f"lead-{lead_ids[1]}" in [row["workflow_id"] for row in second.lines("lead")]
    for lead_id in lead_ids:
        await hub.wait_for_status(lead_id, "delivered")


async def test_assign_a_waiting_lead_to_a_dealer(hub: Hub, hub_cli: HubCli) -> None:
    lead_id = await hub.create_lead(State="BA", City="Salvador")  # no dealer covers Bahia
    await hub.post_webhook(lead_id)
    await hub.wait_for_awaiting(lead_id)

    unknown = await hub_cli(hub.settings, "leads", "assign", unknown_lead_id(), "rest-mg", "--by", "ana")
    assert unknown.code == 1 and "unknown lead" in unknown.err
    no_dealer = await hub_cli(hub.settings, "leads", "assign", lead_id, "no-such-dealer", "--by", "ana")
    assert no_dealer.code == 1 and "no active dealer no-such-dealer" in no_dealer.err

    assigned = await hub_cli(
        hub.settings, "leads", "assign", lead_id, "rest-mg", "--by", "ana.souza", "--json"
    )
    assert assigned.code == 0, assigned.err
    assert assigned.lines() == [
        {
            "type": "assignment",
            "lead_id": lead_id,
            "dealer_id": "rest-mg",
            "dealer_name": "rest-mg",
            "assigned_by": "ana.souza",
        }
    ]
    lead = await hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "rest-mg"
    assert (await hub.dealer_leads("rest-mg"))["creates_by_external_id"] == {lead_id: 1}

    late = await hub_cli(hub.settings, "leads", "assign", lead_id, "rest-sp-a", "--by", "ana")
    assert late.code == 1 and "not waiting for a dealer" in late.err


async def test_assign_no_worker_takes_is_not_called_done(
    temporal_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    warehouse_settings: dict[str, Any],
    hub_cli: HubCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no worker to take it, ``assign`` stops waiting and says the move is not confirmed: support
    is sent to the Web UI, never told the lead moved, and the portal still has it waiting."""
    async with running_hub(temporal_env.client, sqlite_url, task_queue, **warehouse_settings) as hub:
        lead_id = await hub.create_lead(State="BA", City="Salvador")  # no dealer covers Bahia
        await hub.post_webhook(lead_id)
        await hub.wait_for_awaiting(lead_id)
    monkeypatch.setattr(cli.leads, "CONFIRM_WAIT", timedelta(seconds=2))
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, worker=False, **warehouse_settings
    ) as hub:  # the lead's run still waits, with no worker on its queue
        waited = await hub_cli(hub.settings, "leads", "assign", lead_id, "rest-mg", "--by", "ana", "--json")
        assert waited.code == 1 and not waited.lines("assignment")
        assert "the assignment is not confirmed (no worker took it within 2 s)" in waited.err
        assert "see its workflow in the Web UI before trying again" in waited.err
        lead = await hub.lead(lead_id)
        assert lead is not None and lead["dealer_id"] is None
        assert (await hub.dealer_leads("rest-mg"))["creates_by_external_id"] == {}


@pytest.fixture
async def impatient_hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> AsyncIterator[Hub]:
    """A hub whose leads wait one second for support's decision before they end unrouted."""
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, assign_dealer_deadline_seconds=1, **warehouse_settings
    ) as hub:
        yield hub


async def test_redrive_routes_an_unrouted_lead_again_under_new_rules(
    impatient_hub: Hub, hub_cli: HubCli
) -> None:
    hub, since = impatient_hub, datetime.now(UTC).isoformat()
    lead_id = await hub.create_lead(State="BA", City="Salvador")
    await hub.post_webhook(lead_id)
    await hub.wait_for_status(lead_id, "unrouted")
    await hub.handle(lead_id).result()

    # The routing rules now give Bahia to the Minas Gerais dealer.
    rules = routing_rules(hub.sims_url)
    next(d for d in rules.dealers if d.id == "rest-mg").routing.states.append("BA")
    engine = create_engine(hub.settings.database_url)
    await apply_rules(session_factory(engine), rules)
    await engine.dispose()

    failed_only = await hub_cli(
        hub.settings, "leads", "redrive", "--status", "failed", "--since", since, "--yes"
    )
    assert failed_only.code == 0 and f"lead-{lead_id}" not in failed_only.out  # unrouted is not failed
    done = await hub_cli(hub.settings, "leads", "redrive", "--status", "unrouted", "--since", since, "--yes")
    assert done.code == 0, done.err
    header, row = [line for line in done.out.splitlines() if "ACTION" in line or f"lead-{lead_id}" in line]
    assert header.split() == [
        "WORKFLOW",
        "ID",
        "RUN",
        "ID",
        "ENDED",
        "CLOSED",
        "AT",
        "LEAD",
        "STATUS",
        "ACTION",
    ]
    assert row.split()[2] == "completed" and row.split()[-2:] == ["unrouted", "redriven"]
    lead = await hub.wait_for_status(lead_id, "delivered")
    assert lead["dealer_id"] == "rest-mg"

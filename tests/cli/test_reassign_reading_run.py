"""Support moves a lead whose dealer accepted it while its run reads the dealer's CRM for what comes
next (a dealer that only answers status reads).

A module of its own: the time-skipping server is one per module, and this test's clock stays apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import cli.leads
from activities.leads import LeadActivities
from api.relay import ReportRelay
from contracts.leads import AWAITING_ACCEPTANCE
from core.constants import LEAD_STATUS, lead_workflow_id
from db import feedback
from db.engine import one_off_sessions
from db.feedback import HAND_OVER_GRACE
from db.models import ReportGuard
from tests.cli.conftest import HubCli
from tests.cli.test_one_dealer_per_lead import creates
from tests.hub import Hub, contacted_event
from tests.stored import local_activity_types
from tests.support import eventually, free_port, skip_time
from tests.workflows.test_dealer_sla import at_dealer, dealer_reports, handovers, sla_hub, zoho_lead
from workflows.lead_distribution import LOCAL_TRY


async def test_reassign_ends_the_run_that_only_reads_an_accepted_lead(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, hub_cli: HubCli
) -> None:
    """A dealer that only answers status reads accepted the lead; its run reads on for what comes next.
    Support can still move the lead: that run is ended, with the reason, and the lead moves."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await accepted_by_a_dealer_that_is_read(hub, skipping_env, "Joinville")
        reading = await hub.handle(lead_id).describe()
        assert reading.status == WorkflowExecutionStatus.RUNNING

        moved = await hub_cli(
            hub.settings, "leads", "reassign", lead_id, "sla-a", "--reason", "dealer closed", "--by", "ana"
        )
        assert moved.code == 0, moved.err
        await at_dealer(hub, lead_id, "sla-a")
        ended = await hub.client.get_workflow_handle(
            lead_workflow_id(lead_id), run_id=reading.run_id
        ).describe()
        assert ended.status == WorkflowExecutionStatus.TERMINATED
        assert await creates(hub, "sla-a") == {lead_id: 1}
        # The terminate's reason is plain text in the history: support's words stay out of it.
        history = await hub.client.get_workflow_handle(
            lead_workflow_id(lead_id), run_id=reading.run_id
        ).fetch_history()
        [terminated] = [
            e for e in history.events if e.HasField("workflow_execution_terminated_event_attributes")
        ]
        reason = terminated.workflow_execution_terminated_event_attributes.reason
        assert reason.startswith("reassigned to sla-a by support")
        assert "dealer closed" not in reason and "ana" not in reason
        # Nothing reached the ended run after the command's look: no report is left to hand on later,
        # and no guard of the move.
        async with one_off_sessions(hub.settings.database_url) as sessions:
            later = datetime.now(UTC) + timedelta(hours=1)
            assert await feedback.guards_passed(sessions, later) == 0
            assert await feedback.due_reports(sessions, later, 10) == []


async def test_a_report_still_due_when_the_lead_moves_reaches_the_subscribers_not_zoho(
    skipping_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    hub_cli: HubCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dealer reported "contacted" while Temporal was away from the API, and support moved the lead
    before the sweep handed the report on. The report is in the lead's history and reaches the
    subscribers, but the lead's status in Zoho and the Web UI stays that of the dealer now holding it."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await accepted_by_a_dealer_that_is_read(hub, skipping_env, "Blumenau")

        assert hub.api is not None
        relay: ReportRelay = hub.api.state.relay
        away = await Client.connect(f"127.0.0.1:{free_port()}", namespace=hub.client.namespace, lazy=True)
        monkeypatch.setattr(relay, "_client", away)
        failed = handovers("after_answer", "failed")
        contacted = await dealer_reports(hub, "poll-sc", lead_id, "contacted")
        assert contacted["hub"]["body"]["outcome"] == "applied"

        async def hand_over_failed() -> bool:
            return handovers("after_answer", "failed") > failed

        await eventually(hand_over_failed, timeout=30)
        moved = await hub_cli(
            hub.settings, "leads", "reassign", lead_id, "sla-a", "--reason", "dealer closed", "--by", "ana"
        )
        assert moved.code == 0, moved.err
        await at_dealer(hub, lead_id, "sla-a")
        # The report is to reach the run that waits for sla-a (the delivering run handed the wait on).
        await eventually(lambda: idle_in_run(hub, lead_id, AWAITING_ACCEPTANCE, following=True))
        assert not await passed_on(hub, lead_id)

        monkeypatch.setattr(relay, "_client", hub.client)  # Temporal is back
        monkeypatch.setattr("api.relay.utcnow", lambda: datetime.now(UTC) + HAND_OVER_GRACE)
        assert await relay.sweep() == 1
        await eventually(lambda: contacted_event(hub, lead_id, "poll-sc"))
        await eventually(lambda: passed_on(hub, lead_id))  # the run's task that passed it on completed

        assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Not Contacted"  # poll-sc's acceptance
        described = await hub.handle(lead_id).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING  # sla-a's SLA runs on
        assert described.typed_search_attributes.get(LEAD_STATUS) == AWAITING_ACCEPTANCE
        lead = await hub.lead(lead_id) or {}
        assert ("poll-sc", "contacted") in [(h["dealer_id"], h["status"]) for h in lead["history"]]
        assert (lead["status"], lead["dealer_id"]) == ("delivered", "sla-a")


async def test_a_report_handed_to_the_reading_run_as_support_ends_it_still_reaches_the_subscribers(
    skipping_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    hub_cli: HubCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dealer reports "contacted" between the command's look at the reading run and its end: the
    report reached that run, which dies before passing it on (Zoho and the subscribers fail meanwhile).
    The command, seeing the report's signal in the ended run's history, makes it due again once the new
    run runs: the sweep hands it there, the subscribers hear of it, and Zoho keeps its status."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await accepted_by_a_dealer_that_is_read(hub, skipping_env, "Itajaí")
        monkeypatch.setattr(WorkflowHandle, "terminate", reporting_as_it_ends(hub, lead_id, back_after=True))
        moved = await hub_cli(
            hub.settings, "leads", "reassign", lead_id, "sla-a", "--reason", "dealer closed", "--by", "ana"
        )
        assert moved.code == 0, moved.err
        await at_dealer(hub, lead_id, "sla-a")
        assert not await contacted_event(hub, lead_id, "poll-sc")  # died with the reading run

        assert hub.api is not None
        relay: ReportRelay = hub.api.state.relay
        assert await relay.sweep() == 1
        await eventually(lambda: contacted_event(hub, lead_id, "poll-sc"))
        lead = await hub.lead(lead_id) or {}
        assert (lead["status"], lead["dealer_id"]) == ("delivered", "sla-a")
        assert (await zoho_lead(hub, lead_id))["Lead_Status"] == "Not Contacted"  # poll-sc's acceptance


async def test_a_report_that_died_with_the_reading_run_is_handed_on_when_the_command_dies_too(
    skipping_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    hub_cli: HubCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As above, the dealer's "contacted" reaches the reading run just before the command ends it; then
    the command dies before it starts the new run and looks at the ended one. The report, made due
    before the terminate, is handed on once the move's time passes: the lead, still at its dealer
    (nothing moved), gets a run that passes the status on."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await accepted_by_a_dealer_that_is_read(hub, skipping_env, "Blumenau")

        async def dies(*_: Any, **__: Any) -> None:
            raise ConnectionResetError("the command's host went away")

        monkeypatch.setattr(WorkflowHandle, "terminate", reporting_as_it_ends(hub, lead_id, back_after=False))
        monkeypatch.setattr(cli.leads, "start_again", dies)
        monkeypatch.setattr(cli.leads, "MOVE_GUARD", timedelta(seconds=1))
        with pytest.raises(ConnectionResetError):
            await hub_cli(
                hub.settings, "leads", "reassign", lead_id, "sla-a", "--reason", "closed", "--by", "ana"
            )
        assert not await contacted_event(hub, lead_id, "poll-sc")  # died with the reading run
        await back_after_the_runs_last_try(hub)

        assert hub.api is not None
        relay: ReportRelay = hub.api.state.relay
        assert await relay.sweep() == 1  # the guard's time passed meanwhile
        await eventually(lambda: contacted_event(hub, lead_id, "poll-sc"))
        lead = await hub.lead(lead_id) or {}
        assert (lead["status"], lead["dealer_id"]) == ("contacted", "poll-sc")  # nothing moved


async def test_a_move_whose_run_another_move_ended_first_leaves_that_moves_guard(
    skipping_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    hub_cli: HubCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two terminals move the lead at once: the other command ends the reading run first. This one says
    so and leaves the guard, which the other command (or, were it to die, the sweep) settles; it once
    cleared it, and a report that died with the run was then never handed on."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await accepted_by_a_dealer_that_is_read(hub, skipping_env, "Joinville")
        terminate = WorkflowHandle.terminate

        async def ended_by_the_other_move_first(
            handle: WorkflowHandle[Any, Any], *args: Any, **kwargs: Any
        ) -> None:
            await terminate(handle, reason="the other terminal's move")
            await terminate(handle, *args, **kwargs)

        monkeypatch.setattr(WorkflowHandle, "terminate", ended_by_the_other_move_first)
        ran = await hub_cli(
            hub.settings, "leads", "reassign", lead_id, "sla-a", "--reason", "x", "--by", "ana"
        )
        assert ran.code == 1 and "its workflow ended meanwhile" in ran.err, ran.err
        async with one_off_sessions(hub.settings.database_url) as sessions, sessions() as session:
            guards = (
                await session.execute(select(ReportGuard.dealer_id).where(ReportGuard.lead_id == lead_id))
            ).all()
        assert [dealer for (dealer,) in guards] == ["poll-sc"]


def reporting_as_it_ends(hub: Hub, lead_id: str, *, back_after: bool) -> Callable[..., Awaitable[None]]:
    """``WorkflowHandle.terminate`` as the dealer reports "contacted" just before the command ends the
    reading run: Zoho and the subscriber fail every call until then, so the run passes nothing on
    (``back_after``: and are back once its last try is over)."""
    terminate = WorkflowHandle.terminate

    async def reported_then_terminated(handle: WorkflowHandle[Any, Any], *args: Any, **kwargs: Any) -> None:
        await zoho_and_subscriber_down(hub)
        await contacted_reaches_the_run(hub, lead_id)
        await terminate(handle, *args, **kwargs)
        if back_after:
            await back_after_the_runs_last_try(hub)

    return reported_then_terminated


async def zoho_and_subscriber_down(hub: Hub) -> None:
    await hub.fault(target="zoho", error_5xx_count=1000)
    await hub.fault(target="events/portal", error_5xx_count=1000)


async def back_after_the_runs_last_try(hub: Hub) -> None:
    """Zoho and the subscriber back once the ended run's last try is over: its local try, retried a
    second after its first failure, or an activity attempt under way, may outlive the terminate (and
    would pass the report on, rightly then; not what these tests are about)."""
    await asyncio.sleep(2 * LOCAL_TRY.initial_interval.total_seconds())
    await hub.fault(target="zoho")
    await hub.fault(target="events/portal")


async def contacted_reaches_the_run(hub: Hub, lead_id: str) -> None:
    """poll-sc reports "contacted" by its webhook, and the API hands it to the lead's run."""
    handed = handovers("after_answer", "handed_on")
    await dealer_reports(hub, "poll-sc", lead_id, "contacted")

    async def handed_to_the_run() -> bool:
        return handovers("after_answer", "handed_on") > handed

    await eventually(handed_to_the_run)


async def accepted_by_a_dealer_that_is_read(hub: Hub, env: WorkflowEnvironment, city: str) -> str:
    """A lead delivered to poll-sc (its CRM is read, it sends no webhooks), which accepted it: its run
    now reads the dealer's CRM for what comes next."""
    lead_id = await hub.create_lead(State="SC", City=city)
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "poll-sc")
    await dealer_reports(hub, "poll-sc", lead_id, "accepted", callback=False)
    await skip_time(env, timedelta(minutes=2))
    await at_dealer(hub, lead_id, "poll-sc", status="accepted")
    await eventually(lambda: idle_in_run(hub, lead_id, "accepted"))  # done passing the acceptance on
    return lead_id


async def idle_in_run(hub: Hub, lead_id: str, status: str, *, following: bool = False) -> bool:
    """Whether the lead's latest run shows ``status`` and has nothing under way (no activity, no
    workflow task); ``following``: and is a run that only waits (it continues an earlier one)."""
    described = await hub.handle(lead_id).describe()
    raw = described.raw_description
    if described.typed_search_attributes.get(LEAD_STATUS) != status or raw.pending_activities:
        return False
    if raw.HasField("pending_workflow_task"):
        return False
    if following:
        started = (await hub.handle(lead_id).fetch_history()).events[0]
        return bool(started.workflow_execution_started_event_attributes.continued_execution_run_id)
    return True


async def passed_on(hub: Hub, lead_id: str) -> bool:
    """Whether the lead's latest run recorded a local activity (a status's publication) as done: a run
    that only waits records none until a report reaches it."""
    history = await hub.handle(lead_id).fetch_history()
    return "publish_event" in local_activity_types(history.events)


def test_the_move_knows_a_read_of_the_dealers_crm_by_its_activity_name() -> None:
    """The command looks for that activity in the ended run's history by name (it imports no activities)."""
    assert LeadActivities.poll_dealer_status.__name__ == cli.leads.POLL_STEP

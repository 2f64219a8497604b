"""Records the saved histories that ``test_replay.py`` replays in CI: one run of every workflow type.

    .venv/bin/python -m pytest tests/workflows/record_histories.py     # all of them
    .venv/bin/python -m pytest tests/workflows/record_histories.py -k lead

(pytest collects this file only when it is named, so the test suite never rewrites the histories.)
Each flow runs once end to end on the dev server with the simulators and the BigQuery emulator, and its
history is written to ``histories/<name>.json``, encrypted with the local development key.

Record a history for a new workflow type, or one more for a path worth guarding, and commit it. Never
re-record a history to make a failing replay pass: the failure means runs started by the released code
would break on the new code. Keep the old path behind ``workflow.patched(...)`` instead, and keep the
old history, so CI proves the old runs still replay.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.dbt import DbtBuildInput
from cli.redrive import started_with
from contracts.dbt_build import (
    STATUS_QUERY,
    BuildRequest,
    DbtBuildStatus,
    DbtBuildSummary,
    dbt_build_workflow_id,
    send_build_request,
)
from contracts.leads import (
    AssignDealerInput,
    LeadDistributionInput,
    Reassignment,
    start_event_redrive,
    start_lead_distribution,
    start_zoho_writeback_redrive,
)
from contracts.orders import STATUS_QUERY as ORDER_STATUS_QUERY
from contracts.orders import VtexOrderStatus
from core.constants import (
    LEAD_STATUS,
    REDRIVE_PARKED_SIGNAL,
    lead_workflow_id,
    opportunity_workflow_id,
    vtex_order_workflow_id,
)
from core.settings import Settings
from db import refused_events
from db.engine import one_off_sessions
from simulators.zoho_deals import deal_webhook_fields
from tests.cli.test_one_dealer_per_lead import (
    refused_with_its_drop_owed,
    reported_as_support_moves,
    taken_out_of_the_rules,
)
from tests.hub import Hub, running_hub
from tests.support import SMALL_STORE, eventually, skip_time
from tests.workflows.test_dbt_build import blocked_then_passed
from tests.workflows.test_dealer_sla import (
    SLA,
    at_dealer,
    contacted_reached_a_run_then_terminated,
    dealer_reports,
    polled_dealer_accepted_then_run_resumed_late,
    rerouted_to_a_refusing_dealer,
    rerouted_while_the_subscriber_is_away,
    sla_hub,
    terminated_after_the_decision,
    unfollowed_report_run_terminated_then_resent,
)
from tests.workflows.test_lead_distribution import (
    delivered_after_its_dealer_left_the_rules,
    delivered_past_an_unanswering_dealer,
    unanswering_dealer_hub,
)
from tests.workflows.test_opportunity_sync import moved_twice_within_one_second, resent_to_the_next_run
from tests.workflows.test_vtex_catalog_sync import start_sync as start_catalog_sync
from tests.workflows.test_vtex_customer_sync import start_sync as start_customer_sync
from tests.workflows.test_vtex_order import (
    LIFECYCLE,
    OmsBehindItsHooks,
    OmsWithoutTheOrder,
    invoiced_behind_the_oms,
    order_not_found_then_found,
    order_worker,
    park_then_redrive,
    refusing_bronze,
    start_refused_order,
    told_it_was_invoiced,
    untimed_invoiced_hook,
    version_parked_then_redriven,
)
from workflows.dbt_build import DbtBuildWorkflow
from workflows.lead_distribution import LeadDistributionWorkflow
from workflows.lead_warehouse_sync import LeadSyncInput, LeadWarehouseSyncWorkflow
from workflows.sandbox import WORKFLOW_RUNNER
from workflows.vtex_feed_reconcile import VtexFeedReconcileInput, VtexFeedReconcileWorkflow
from workflows.vtex_hook_config import VtexHookConfigInput, VtexHookConfigWorkflow
from workflows.vtex_order_backfill import OrderBackfillInput, start_order_backfill

HISTORIES = Path(__file__).parent / "histories"


@pytest.fixture
async def hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> AsyncIterator[Hub]:
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, simulator=SMALL_STORE, opportunity_idle_close_seconds=2,
        **warehouse_settings,
    ) as hub:  # fmt: skip
        yield hub


@pytest.fixture
async def gathering_hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> AsyncIterator[Hub]:
    """A hub whose order workflows gather hooks for half a second (a timer per batch)."""
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, simulator=SMALL_STORE,
        vtex_order_batch_window_seconds=0.5, **warehouse_settings,
    ) as hub:  # fmt: skip
        yield hub


async def save(client: Client, workflow_id: str, name: str) -> None:
    """Write the history of the workflow's latest run."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


async def test_record_lead_assigned_by_support(hub: Hub) -> None:
    """No dealer covers the lead; support's assign_dealer update delivers it."""
    lead_id = await hub.create_lead(State="BA", City="Salvador")
    await hub.post_webhook(lead_id)
    await hub.wait_for_awaiting(lead_id)
    await hub.handle(lead_id).execute_update(
        LeadDistributionWorkflow.assign_dealer, AssignDealerInput("rest-mg", assigned_by="support")
    )
    await hub.handle(lead_id).result()
    # lead_assigned_by_support.json holds the same path from before the delivery-decision patch.
    await save(hub.client, lead_workflow_id(lead_id), "lead_assigned_by_support_decision_in_database")


async def test_record_lead_rejected_then_delivered(hub: Hub) -> None:
    """The first dealer refuses the lead: its claim is released and the next dealer is claimed."""
    await hub.fault(target="rest-sp-a", reject=True)
    lead_id = await hub.create_lead(State="SP", City="Campinas")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    await save(hub.client, lead_workflow_id(lead_id), "lead_rejected_then_delivered")


async def test_record_lead_first_steps_tried_locally(hub: Hub) -> None:
    """Since the first-steps-tried-locally patch: the lead's "received" record and its claim are local
    activities; Zoho fails the read's local try, so the read runs as an activity, then the delivery."""
    await hub.fault(target="zoho", error_5xx_count=1)
    lead_id = await hub.create_lead(State="SP", City="Santos")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    await save(hub.client, lead_workflow_id(lead_id), "lead_first_steps_tried_locally")


async def test_record_lead_resumed_after_terminate(hub: Hub) -> None:
    """A delivered lead's run is terminated before its feedback; the resent webhook's run resumes it."""
    await hub.fault(target="rest-mg", latency_ms=1000)
    lead_id = await hub.create_lead(State="MG", City="Betim")
    await hub.post_webhook(lead_id)

    async def delivery_in_flight() -> bool:
        return (await hub.counters())["dealers"].get("rest-mg", {}).get("requests", 0) >= 1

    await eventually(delivery_in_flight)
    await hub.fault(target="zoho", error_5xx_count=3)
    await hub.wait_for_status(lead_id, "delivered")
    await hub.handle(lead_id).terminate(reason="stuck on Zoho")
    await hub.http.delete(f"{hub.sims_url}/_control/faults/zoho")
    await hub.post_webhook(lead_id)
    result = await hub.handle(lead_id).result()
    assert result.dealer_id == "rest-mg"
    await save(hub.client, lead_workflow_id(lead_id), "lead_resumed_after_terminate")


async def test_record_lead_unanswered_claim_withdrawn(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    """Since the unanswered-claim-withdrawn-at-crm patch: the first dealer's CRM stores the lead and never
    answers; its claim is released unanswered, its CRM asked to drop the lead, and the next dealer gets it."""
    async with unanswering_dealer_hub(temporal_env, sqlite_url, task_queue, warehouse_settings) as hub:
        lead_id, _ = await delivered_past_an_unanswering_dealer(hub)
        await hub.handle(lead_id).result()
        await save(hub.client, lead_workflow_id(lead_id), "lead_unanswered_claim_withdrawn")


async def test_record_lead_unanswered_claim_before_withdrawal(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    """Recorded with the code from before the unanswered-claim-withdrawn-at-crm patch (kept as it was):
    the claim is released and the next dealer gets the lead, with no call to the first dealer's CRM."""
    async with unanswering_dealer_hub(temporal_env, sqlite_url, task_queue, warehouse_settings) as hub:
        lead_id, _ = await delivered_past_an_unanswering_dealer(hub)
        await hub.handle(lead_id).result()
        await save(hub.client, lead_workflow_id(lead_id), "lead_unanswered_claim_before_withdrawal")


async def record_inactive_dealer_released(
    temporal_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    warehouse_settings: dict[str, Any],
    name: str,
) -> None:
    async with unanswering_dealer_hub(temporal_env, sqlite_url, task_queue, warehouse_settings, 60) as hub:
        lead_id, _ = await delivered_after_its_dealer_left_the_rules(hub)
        await hub.handle(lead_id).result()
        await save(hub.client, lead_workflow_id(lead_id), name)


async def test_record_lead_inactive_dealer_released_owing_drop(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    """Since the inactive-dealer-released-owing-drop patch: rest-sp-a, taken out of the rules while its
    CRM stored the lead unanswered, is asked to drop it before rest-sp-b gets it."""
    await record_inactive_dealer_released(
        temporal_env, sqlite_url, task_queue, warehouse_settings, "lead_inactive_dealer_released_owing_drop"
    )


async def test_record_lead_inactive_dealer_released_as_refused(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    """Recorded with the code from before the inactive-dealer-released-owing-drop patch (kept as it was):
    rest-sp-a's claim was released as refused, its CRM holding the lead, and rest-sp-b got it."""
    await record_inactive_dealer_released(
        temporal_env, sqlite_url, task_queue, warehouse_settings, "lead_inactive_dealer_released_as_refused"
    )


async def test_record_lead_sla_missed_then_accepted(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """The first dealer lets its SLA pass (the lead is withdrawn), the next accepts in time. Each wait is
    in a run of its own: the run that delivers hands on, the next misses the SLA and delivers to the
    next dealer, the last is accepted. (lead_sla_missed_then_accepted.json holds the same path from
    before the follow-dealer-in-own-run patch, all in one run.)"""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(State="PR", City="Curitiba")
        await hub.post_webhook(lead_id)
        await at_dealer(hub, lead_id, "sla-a")
        await skip_time(skipping_env, SLA + timedelta(minutes=1))
        await at_dealer(hub, lead_id, "sla-b")
        await dealer_reports(hub, "sla-b", lead_id, "accepted")
        result = await hub.handle(lead_id).result()
        assert (result.status, result.dealer_id) == ("accepted", "sla-b")
        histories, run_id = [], None
        while True:  # from the last run back: each names the run it continues
            handle = hub.client.get_workflow_handle(lead_workflow_id(lead_id), run_id=run_id)
            history = await handle.fetch_history()
            histories.insert(0, history)
            started = history.events[0].workflow_execution_started_event_attributes
            if not started.continued_execution_run_id:
                break
            run_id = started.continued_execution_run_id
        names = ("lead_delivered_then_handed_on", "lead_followed_sla_missed", "lead_followed_accepted")
        for history, name in zip(histories, names, strict=True):
            (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


async def test_record_lead_feedback_beside_the_flow(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the feedback-beside-the-flow patch: the subscriber is away from the delivery on, and the
    first dealer's SLA passes all the same; the next dealer gets the lead, the subscriber comes back and
    gets both events, then the run hands the wait on."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await rerouted_while_the_subscriber_is_away(hub, skipping_env)
        (await hub.http.delete(f"{hub.sims_url}/_control/faults/events/portal")).raise_for_status()
        await skip_time(skipping_env, timedelta(minutes=11))  # the event's next retry
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), "withdraw_lead")
        await eventually(lambda: history_ended(hub, history))
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), "withdraw_lead")
        (HISTORIES / "lead_feedback_beside_the_flow.json").write_text(history.to_json() + "\n")


async def test_record_lead_feedback_in_the_flow(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the feedback-beside-the-flow patch (kept as it was): the run
    waits for the subscriber before it looks at the first dealer's SLA."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        await hub.fault(target="events/portal", error_5xx_count=100_000)
        lead_id = await hub.create_lead(State="PR", City="Maringá")
        await hub.post_webhook(lead_id)
        await at_dealer(hub, lead_id, "sla-a")
        await skip_time(skipping_env, SLA + timedelta(minutes=1))
        (await hub.http.delete(f"{hub.sims_url}/_control/faults/events/portal")).raise_for_status()
        await skip_time(skipping_env, timedelta(minutes=11))
        await at_dealer(hub, lead_id, "sla-b")
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), "withdraw_lead")
        await eventually(lambda: history_ended(hub, history))
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), "withdraw_lead")
        (HISTORIES / "lead_feedback_in_the_flow.json").write_text(history.to_json() + "\n")


async def history_ended(hub: Hub, history: WorkflowHistory) -> bool:
    """Whether the run of ``history`` has ended (continued as new, here)."""
    run_id = history.events[0].workflow_execution_started_event_attributes.original_execution_run_id
    described = await hub.client.get_workflow_handle(history.workflow_id, run_id=run_id).describe()
    return described.status != WorkflowExecutionStatus.RUNNING


async def the_run_that(client: Client, workflow_id: str, scheduled: str) -> WorkflowHistory:
    """The latest run of the workflow (or one it continues) whose history schedules ``scheduled``."""
    run_id = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        kinds = [
            event.activity_task_scheduled_event_attributes.activity_type.name
            for event in history.events
            if event.HasField("activity_task_scheduled_event_attributes")
        ]
        if scheduled in kinds:
            return history
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        assert run_id, f"no run of {workflow_id} scheduled {scheduled}"


async def polled_dealer_accepted_unheard(hub: Hub, env: WorkflowEnvironment) -> str:
    """A lead at a dealer read hourly with 30 minutes to accept, accepted in its CRM with no webhook,
    and the SLA passed; the lead's id."""
    lead_id = await hub.create_lead(State="SE", City="Aracaju")
    await hub.post_webhook(lead_id)
    await at_dealer(hub, lead_id, "poll-se")
    await dealer_reports(hub, "poll-se", lead_id, "accepted", callback=False)
    await skip_time(env, SLA + timedelta(minutes=1))
    return lead_id


async def test_record_lead_polled_read_before_withdrawal(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the read-dealer-status-before-withdrawal patch: the dealer's CRM is read as its SLA passes,
    and the acceptance found keeps the lead there. The run that read is saved."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await polled_dealer_accepted_unheard(hub, skipping_env)
        await at_dealer(hub, lead_id, "poll-se", status="accepted")
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), "poll_dealer_status")
        (HISTORIES / "lead_polled_read_before_withdrawal.json").write_text(history.to_json() + "\n")


async def test_record_lead_polled_withdrawn_unread(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the read-dealer-status-before-withdrawal patch (kept as it
    was): the SLA passed without a read, the lead was withdrawn and went to the next dealer."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await polled_dealer_accepted_unheard(hub, skipping_env)
        await at_dealer(hub, lead_id, "next-se")
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), "withdraw_lead")
        (HISTORIES / "lead_polled_withdrawn_unread.json").write_text(history.to_json() + "\n")


async def record_resumed_past_deadline(
    env: WorkflowEnvironment, sqlite_url: str, task_queue: str, name: str, dealer_id: str
) -> None:
    """The run a resent webhook starts after a terminate, past the SLA of a dealer read hourly that
    accepted in its CRM; saved as ``name`` once the lead is at ``dealer_id``."""
    async with sla_hub(env, sqlite_url, task_queue) as hub:
        lead_id = await polled_dealer_accepted_then_run_resumed_late(hub)
        read = dealer_id == "poll-se"
        await at_dealer(hub, lead_id, dealer_id, status="accepted" if read else "delivered")
        step = "poll_dealer_status" if read else "withdraw_lead"
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), step)
        (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


async def test_record_lead_resumed_past_deadline_read_first(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the read-dealer-status-when-resumed-past-deadline patch: that run reads the dealer's CRM
    first, and the acceptance keeps the lead there."""
    name = "lead_resumed_past_deadline_read_first"
    await record_resumed_past_deadline(skipping_env, sqlite_url, task_queue, name, "poll-se")


async def test_record_lead_resumed_past_deadline_withdrawn_unread(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the read-dealer-status-when-resumed-past-deadline patch (kept
    as it was): that run withdrew the lead unread, and it went to the next dealer."""
    name = "lead_resumed_past_deadline_withdrawn_unread"
    await record_resumed_past_deadline(skipping_env, sqlite_url, task_queue, name, "next-se")


async def record_reroute_not_taken(
    env: WorkflowEnvironment, sqlite_url: str, task_queue: str, name: str, *, status: str
) -> None:
    """The run that re-routes a lead its first dealer did not accept in time to a dealer that refuses
    it, none left; saved as ``name`` once the lead's search status is ``status``."""
    async with sla_hub(env, sqlite_url, task_queue) as hub:
        lead_id = await rerouted_to_a_refusing_dealer(hub, env)

        async def reached() -> bool:
            described = await hub.handle(lead_id).describe()
            return described.typed_search_attributes.get(LEAD_STATUS) == status

        await eventually(reached, timeout=60)
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), "withdraw_lead")
        (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


async def test_record_lead_reroute_not_taken_to_fallback(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the fallback-owner-when-reroute-not-taken patch: the fallback owner gets the lead at once."""
    name = "lead_reroute_not_taken_to_fallback"
    await record_reroute_not_taken(skipping_env, sqlite_url, task_queue, name, status="sla_exhausted")


async def test_record_lead_reroute_not_taken_awaiting_assignment(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the fallback-owner-when-reroute-not-taken patch (kept as it
    was): the run waited for support's assign_dealer."""
    name = "lead_reroute_not_taken_awaiting_assignment"
    await record_reroute_not_taken(skipping_env, sqlite_url, task_queue, name, status="awaiting_assignment")


async def record_unfollowed_stored_status(
    env: WorkflowEnvironment, sqlite_url: str, task_queue: str, name: str
) -> None:
    """The run a resent webhook starts after a terminate, at a dealer without an SLA whose "contacted"
    is stored, saved as ``name``."""
    async with sla_hub(env, sqlite_url, task_queue) as hub:
        lead_id = await unfollowed_report_run_terminated_then_resent(hub)
        await hub.handle(lead_id).result()
        await save(hub.client, lead_workflow_id(lead_id), name)


async def test_record_lead_unfollowed_stored_status_passed_on(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the pass-on-stored-status-of-unfollowed-dealer patch: that run passes the stored status on."""
    name = "lead_unfollowed_stored_status_passed_on"
    await record_unfollowed_stored_status(skipping_env, sqlite_url, task_queue, name)


async def test_record_lead_unfollowed_stored_status_before_passing_on(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the pass-on-stored-status-of-unfollowed-dealer patch (kept as
    it was): that run passes on the delivery only."""
    name = "lead_unfollowed_stored_status_before_passing_on"
    await record_unfollowed_stored_status(skipping_env, sqlite_url, task_queue, name)


async def test_record_lead_withdrawal_resumed_then_sla_exhausted(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the reroute-cap-and-withdrawals-in-database patch: the run that a resent webhook starts
    after a terminate makes the CRM call of the withdrawal the terminated run left pending, and ends the
    lead sla_exhausted, its cap of re-routes passed. That run is saved."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(State="PR", City="Curitiba")
        await hub.post_webhook(lead_id)
        for dealer_id in ("sla-a", "sla-b"):
            await at_dealer(hub, lead_id, dealer_id)
            await skip_time(skipping_env, SLA + timedelta(minutes=1))
        await at_dealer(hub, lead_id, "sla-c")
        await terminated_after_the_decision(hub, lead_id, "sla-c")
        assert (await hub.handle(lead_id).result()).status == "sla_exhausted"
        await save(hub.client, lead_workflow_id(lead_id), "lead_withdrawal_resumed_then_sla_exhausted")


async def test_record_lead_stored_status_passed_on(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the pass-on-stored-dealer-status patch: the run a resent webhook starts after a terminate
    passes on the dealer's status the terminated run had not. That run is saved."""
    await record_resumed_with_a_stored_status(
        skipping_env, sqlite_url, task_queue, "lead_stored_status_passed_on"
    )


async def test_record_lead_stored_status_before_passing_on(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the pass-on-stored-dealer-status patch (kept as it was): the
    resumed run starts from the stored status and passes nothing on."""
    name = "lead_stored_status_before_passing_on"
    await record_resumed_with_a_stored_status(skipping_env, sqlite_url, task_queue, name)


async def record_resumed_with_a_stored_status(
    env: WorkflowEnvironment, sqlite_url: str, task_queue: str, name: str
) -> None:
    async with sla_hub(env, sqlite_url, task_queue) as hub:
        lead_id = await contacted_reached_a_run_then_terminated(hub, "Cascavel")
        await hub.post_webhook(lead_id)
        await hub.handle(lead_id).result()
        await save(hub.client, lead_workflow_id(lead_id), name)


async def test_record_lead_accepted_passed_on_locally(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """A lead is delivered and its dealer accepts it: since the status-passed-on-in-local-activities
    patch, the run that delivers tells Zoho and the subscribers in local activities, and so does the run
    that waits for the dealer when the acceptance comes. Each run is saved."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(State="PR", City="Curitiba")
        await hub.post_webhook(lead_id)
        await at_dealer(hub, lead_id, "sla-a")
        await dealer_reports(hub, "sla-a", lead_id, "accepted")
        result = await hub.handle(lead_id).result()
        assert (result.status, result.dealer_id) == ("accepted", "sla-a")
        handle = hub.client.get_workflow_handle(lead_workflow_id(lead_id))
        following = await handle.fetch_history()
        started = following.events[0].workflow_execution_started_event_attributes
        delivering = await hub.client.get_workflow_handle(
            lead_workflow_id(lead_id), run_id=started.continued_execution_run_id
        ).fetch_history()
        for history, name in (
            (delivering, "lead_delivered_passed_on_locally"),
            (following, "lead_accepted_passed_on_locally"),
        ):
            (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


async def test_record_opportunity_updates(hub: Hub) -> None:
    """Two stage changes sent in reverse order; the workflow ends once the deal is quiet."""
    deal_id = await hub.create_deal()
    now = datetime.now(timezone(timedelta(hours=-3))).replace(microsecond=0)
    changes = [
        {"deal_id": deal_id, "stage": stage, "modified_time": (now + timedelta(minutes=n)).isoformat()}
        for n, stage in enumerate(["Needs Analysis", "Negotiation/Review"])
    ]
    for change in reversed(changes):
        assert (await hub.post_deal_webhook(change)).status_code == 202
    await hub.client.get_workflow_handle(opportunity_workflow_id(deal_id)).result()
    await save(hub.client, opportunity_workflow_id(deal_id), "opportunity_updates")


async def test_record_opportunity_newer_record_kept(hub: Hub) -> None:
    """A stage move's webhook handled after a later edit of the deal in Zoho: Zoho's newer record stays
    the current state (patch newer-zoho-record-stays-current)."""
    deal_id = await hub.create_deal()
    moved = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage",
        json={"stage": "Negotiation/Review", "send_webhook": False},
    )
    edit = {"fields": {"Amount": 98000}}
    (await hub.http.patch(f"{hub.sims_url}/_control/zoho/deals/{deal_id}", json=edit)).raise_for_status()
    assert (await hub.post_deal_webhook(deal_webhook_fields(moved.json()["deal"]))).status_code == 202
    await hub.client.get_workflow_handle(opportunity_workflow_id(deal_id)).result()
    await save(hub.client, opportunity_workflow_id(deal_id), "opportunity_newer_record_kept")


async def test_record_opportunity_same_second_changes(hub: Hub) -> None:
    """Two stage moves Zoho stamped with the same second, their webhooks sent in order: Zoho's record of
    that second is the deal's state and both stages join the history (patch same-second-deal-changes)."""
    deal_id, _ = await moved_twice_within_one_second(hub, "in order")
    await hub.client.get_workflow_handle(opportunity_workflow_id(deal_id)).result()
    # opportunity_same_second_before_patch.json holds the same path from before the patch: the first
    # webhook's stage laid over the record, the second dropped as stored before.
    await save(hub.client, opportunity_workflow_id(deal_id), "opportunity_same_second_changes")


async def test_record_opportunity_resent_to_the_next_run(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    """A run started by continue-as-new with the stage of its last applied second (since the
    same-second-deal-changes patch), which drops the same change sent again, then continues as new."""
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, simulator=SMALL_STORE, opportunity_idle_close_seconds=60,
        opportunity_changes_per_run=1, opportunity_batch_window_seconds=1.0, **warehouse_settings,
    ) as hub:  # fmt: skip
        workflow_id, run_id, _ = await resent_to_the_next_run(hub)
        history = await hub.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        (HISTORIES / "opportunity_resent_to_the_next_run.json").write_text(history.to_json() + "\n")


async def parked(hub: Hub, workflow_id: str, partner: str) -> bool:
    query = f"WorkflowId = '{workflow_id}' AND Parked = '{partner}' AND ExecutionStatus = 'Running'"
    return await hub.count_workflows(query) == 1


async def credentials(hub: Hub, partner: str, *, revoked: bool) -> None:
    body = {"target": partner, "revoked": revoked}
    (await hub.http.post(f"{hub.sims_url}/_control/credentials", json=body)).raise_for_status()


async def test_record_opportunity_parked_then_redriven(hub: Hub) -> None:
    """Zoho refuses the deal's read (credentials revoked): the change is parked, then redriven."""
    deal_id = await hub.create_deal()
    await credentials(hub, "zoho", revoked=True)
    await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage",
        json={"stage": "Needs Analysis", "partial": True},
    )
    workflow_id = opportunity_workflow_id(deal_id)
    await eventually(lambda: parked(hub, workflow_id, "zoho"))
    await credentials(hub, "zoho", revoked=False)
    await hub.client.get_workflow_handle(workflow_id).signal(REDRIVE_PARKED_SIGNAL)
    await hub.client.get_workflow_handle(workflow_id).result()
    await save(hub.client, workflow_id, "opportunity_parked_then_redriven")


async def test_record_zoho_writeback_redriven(hub: Hub) -> None:
    """A lead whose outcome Zoho refused (a picklist value its admin removed, then put back): support's
    redrive writes the parked fields."""
    picklist = f"{hub.sims_url}/_control/zoho/picklists"
    restricted = {"field": "Status_Distribuicao", "values": ["received"]}
    (await hub.http.post(picklist, json=restricted)).raise_for_status()
    lead_id = await hub.create_lead(State="MG", City="Contagem")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    (await hub.http.post(picklist, json={**restricted, "values": None})).raise_for_status()
    redrive = await start_zoho_writeback_redrive(hub.client, hub.settings, lead_id)
    assert await redrive.result() == "written"
    await save(hub.client, redrive.id, "zoho_writeback_redriven")


async def test_record_event_redriven(hub: Hub) -> None:
    """A lead event the portal refused (its schema check, then fixed): support's redrive sends it."""
    faults = f"{hub.sims_url}/_control/faults"
    (await hub.http.post(faults, json={"target": "events/portal", "reject": True})).raise_for_status()
    lead_id = await hub.create_lead(State="MG", City="Contagem")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    (await hub.http.delete(f"{faults}/events/portal")).raise_for_status()

    async def parked_of_lead() -> list[refused_events.ParkedEvent]:
        async with one_off_sessions(hub.settings.database_url) as sessions:
            rows, _ = await refused_events.parked(sessions, 100)
        return [row for row in rows if row.lead_id == lead_id]

    [parked] = await eventually(parked_of_lead)
    redrive = await start_event_redrive(hub.client, hub.settings, parked.event_id, lead_id)
    assert await redrive.result() == "delivered"
    await save(hub.client, redrive.id, "event_redriven")


async def test_record_vtex_order_parked_then_redriven(hub: Hub) -> None:
    """The OMS refuses the order's read (app token revoked): the read is parked, then redriven."""
    order_id = await hub.create_order()
    await credentials(hub, "vtex", revoked=True)
    await hub.move_order(order_id, "invoiced")
    workflow_id = vtex_order_workflow_id(order_id)
    await eventually(lambda: parked(hub, workflow_id, "vtex"))
    await credentials(hub, "vtex", revoked=False)
    await hub.client.get_workflow_handle(workflow_id).signal(REDRIVE_PARKED_SIGNAL)
    await hub.client.get_workflow_handle(workflow_id).result()
    await save(hub.client, workflow_id, "vtex_order_parked_then_redriven")


async def test_record_vtex_order_landing_parked_then_redriven(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Bronze refuses the state change's append for good: the run parks it, then lands it once redriven.
    (``vtex_order_landing_refused_before_parking`` was recorded by the code before: the run failed.)"""
    async with refusing_bronze(temporal_env, task_queue) as bronze:
        handle, event = await start_refused_order(temporal_env, task_queue)
        await park_then_redrive(temporal_env, handle, event, bronze)
    await save(temporal_env.client, handle.id, "vtex_order_landing_parked_then_redriven")


async def test_record_vtex_order_version_parked_as_bigquery(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Since the park-refused-version-landings-as-bigquery patch: BigQuery refuses an order version for
    good; the run parks it as BigQuery's refusal, is redriven, and lands it and the next."""
    workflow_id, _ = await version_parked_then_redriven(temporal_env, task_queue)
    await save(temporal_env.client, workflow_id, "vtex_order_version_parked_as_bigquery")


async def test_record_vtex_order_not_found_read_again_then_parked(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Since the read-an-order-not-found-again-then-park patch: the OMS answers 404, the run reads again
    after each wait, parks, and is redriven once the OMS serves the order."""
    workflow_id, _ = await order_not_found_then_found(skipping_env, task_queue, OmsWithoutTheOrder())
    await save(skipping_env.client, workflow_id, "vtex_order_not_found_read_again_then_parked")


async def test_record_vtex_order_served_behind_its_hook(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Since the read-an-order-served-behind-its-hook-again patch: the invoiced hook came, the OMS still
    serves the order handling; the run reads again after each wait, parks, and is redriven."""
    workflow_id, _ = await invoiced_behind_the_oms(skipping_env, task_queue, OmsBehindItsHooks())
    await save(skipping_env.client, workflow_id, "vtex_order_served_behind_its_hook")


async def test_record_vtex_order_served_behind_before_reading_again(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Recorded with the code from before the read-an-order-served-behind-its-hook-again patch (kept as
    it was): the invoiced hook came, the OMS served the order handling, the run took that and closed."""
    oms = OmsBehindItsHooks()
    async with order_worker(skipping_env, task_queue, oms.land_order_events, oms.land_order_version):
        handle = await told_it_was_invoiced(skipping_env, task_queue, idle_close_seconds=60)
        assert (await handle.result()).state == "handling"
    assert oms.reads == 1
    await save(skipping_env.client, handle.id, "vtex_order_served_behind_before_reading_again")


async def test_record_vtex_order_served_behind_an_untimed_hook(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Since the read-an-order-served-behind-an-untimed-hook-again patch: the invoiced hook came without
    CurrentChange, the OMS still serves the order handling; the run reads again after each wait, parks,
    and is redriven."""
    oms = OmsBehindItsHooks()
    workflow_id, _ = await invoiced_behind_the_oms(skipping_env, task_queue, oms, timed=False)
    await save(skipping_env.client, workflow_id, "vtex_order_served_behind_an_untimed_hook")


async def test_record_vtex_order_served_behind_an_untimed_hook_before_reading_again(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Recorded with the code from before the read-an-order-served-behind-an-untimed-hook-again patch
    (kept as it was): the invoiced hook came without CurrentChange, the OMS served the order handling,
    the run took that and closed."""
    oms = OmsBehindItsHooks()
    async with order_worker(skipping_env, task_queue, oms.land_order_events, oms.land_order_version):
        handle = await told_it_was_invoiced(skipping_env, task_queue, timed=False, idle_close_seconds=60)
        assert (await handle.result()).state == "handling"
    assert oms.reads == 1
    await save(skipping_env.client, handle.id, "vtex_order_served_behind_an_untimed_hook_before")


async def test_record_vtex_order_not_found_before_retries(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Recorded with the code from before the read-an-order-not-found-again-then-park patch (kept as it
    was): the OMS answers 404 once, the change is noted unreadable, the run closes when idle."""
    oms = OmsWithoutTheOrder()
    async with order_worker(skipping_env, task_queue, oms.land_order_events, oms.land_order_version):
        handle, _ = await start_refused_order(skipping_env, task_queue)
        await handle.result()
    assert oms.reads == 1
    await save(skipping_env.client, handle.id, "vtex_order_not_found_before_retries")


async def test_record_vtex_order_untimed_hook_read(hub: Hub) -> None:
    """Since the read-changes-without-current-change patch: an invoiced hook without CurrentChange,
    after handling was read, reads the order; the run ends invoiced."""
    order_id = await untimed_invoiced_hook(hub)
    await hub.client.get_workflow_handle(vtex_order_workflow_id(order_id)).result()
    await save(hub.client, vtex_order_workflow_id(order_id), "vtex_order_untimed_hook_read")


async def test_record_vtex_order_untimed_hook_before_reading(hub: Hub) -> None:
    """Recorded with the code from before the read-changes-without-current-change patch (kept as it
    was): the invoiced hook without CurrentChange is ignored as older; the run is then terminated."""
    order_id = await untimed_invoiced_hook(hub)
    handle = hub.client.get_workflow_handle(vtex_order_workflow_id(order_id))

    async def ignored() -> bool:
        return bool((await handle.query(ORDER_STATUS_QUERY, result_type=VtexOrderStatus)).ignored)

    await eventually(ignored)
    await handle.terminate("recorded")
    await save(hub.client, vtex_order_workflow_id(order_id), "vtex_order_untimed_hook_before_reading")


async def test_record_vtex_order_to_invoiced(gathering_hub: Hub) -> None:
    """Hooks gathered in a window (the default before hooks were handled as they come)."""
    await record_order_lifecycle(gathering_hub, "vtex_order_to_invoiced")


async def test_record_vtex_order_hooks_as_they_come(hub: Hub) -> None:
    """The default: no window, each hook handled as it comes."""
    await record_order_lifecycle(hub, "vtex_order_hooks_as_they_come")


async def record_order_lifecycle(hub: Hub, name: str) -> None:
    order_id = await hub.create_order()
    await hub.move_order(order_id, *LIFECYCLE, delivery="repeated_reversed")
    await hub.client.get_workflow_handle(vtex_order_workflow_id(order_id)).result()
    await save(hub.client, vtex_order_workflow_id(order_id), name)


async def test_record_order_backfill(hub: Hub) -> None:
    params = OrderBackfillInput.for_range(
        hub.settings, datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), rate=400
    )
    handle = await start_order_backfill(hub.client, hub.settings, params)
    assert (await handle.result()).orders_landed > 0
    await save(hub.client, handle.id, "order_backfill")


async def test_record_catalog_sync(hub: Hub) -> None:
    handle = await start_catalog_sync(hub, page_size=20)  # three pages, then the removed SKUs
    assert (await handle.result()).done
    await save(hub.client, handle.id, "catalog_sync")


async def test_record_customer_sync(hub: Hub) -> None:
    handle = await start_customer_sync(hub, page_size=10)
    assert (await handle.result()).done
    await save(hub.client, handle.id, "customer_sync")


async def test_record_lead_warehouse_sync(hub: Hub) -> None:
    """A delivered lead's changes, landed in pages of two, then the watermark and a build request."""
    lead_id = await hub.create_lead(State="SP", City="São Paulo")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    handle = await hub.client.start_workflow(
        LeadWarehouseSyncWorkflow.run,
        LeadSyncInput(page_size=2, build_task_queue=hub.settings.dbt_task_queue),
        id=f"lead-warehouse-sync-{uuid.uuid4().hex[:8]}",
        task_queue=hub.settings.vtex_orders_task_queue,
    )
    assert (await handle.result()).landed > 0
    await save(hub.client, handle.id, "lead_warehouse_sync")


async def test_record_lead_warehouse_sync_deals(hub: Hub) -> None:
    """A delivered lead converted to a deal that was won: the lead's changes, then the deal's (the
    deals patch), in pages of two, then the watermark and a build request."""
    lead_id = await hub.create_lead(State="SP", City="São Paulo")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    converted = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/leads/{lead_id}/convert", json={"Stage": "Qualification"}
    )
    deal = converted.raise_for_status().json()["deal"]
    await hub.wait_for_modified_time(deal["id"], deal["Modified_Time"])
    moved = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal['id']}/stage",
        json={"stage": "Closed Won", "send_webhook": True},
    )
    await hub.wait_for_modified_time(deal["id"], moved.raise_for_status().json()["deal"]["Modified_Time"])
    handle = await hub.client.start_workflow(
        LeadWarehouseSyncWorkflow.run,
        LeadSyncInput(page_size=2, build_task_queue=hub.settings.dbt_task_queue),
        id=f"lead-warehouse-sync-{uuid.uuid4().hex[:8]}",
        task_queue=hub.settings.vtex_orders_task_queue,
    )
    result = await handle.result()
    assert result.read["deal"] == 1 and result.read["deal_stage"] == 2
    await save(hub.client, handle.id, "lead_warehouse_sync_deals")


async def test_record_feed_reconcile(hub: Hub) -> None:
    """Hooks that were lost, found in Feed v3 and handed to the order's workflow."""
    order_id = await hub.create_order()
    await hub.move_order(order_id, "payment-approved", "ready-for-handling", delivery="none")
    handle = await hub.client.start_workflow(
        VtexFeedReconcileWorkflow.run,
        VtexFeedReconcileInput(api_task_queue=hub.settings.vtex_api_task_queue),
        id=f"vtex-orders-feed-reconcile-{uuid.uuid4().hex[:8]}",
        task_queue=hub.settings.vtex_orders_task_queue,
    )
    assert (await handle.result()).delivered == 2
    await save(hub.client, handle.id, "feed_reconcile")


async def test_record_hook_config(hub: Hub) -> None:
    handle = await start_hook_config(hub.client, hub.settings, VtexHookConfigWorkflow.run)
    await handle.result()
    await save(hub.client, handle.id, "hook_config")


async def start_hook_config(
    client: Client, settings: Settings, run: Any, task_queue: str | None = None
) -> WorkflowHandle[Any, Any]:
    """A hook configuration run (``run``: the workflow's run method, or a changed one's)."""
    return await client.start_workflow(
        run,
        VtexHookConfigInput(hook_url=settings.vtex_hook_url, api_task_queue=settings.vtex_api_task_queue),
        id=f"vtex-orders-hook-config-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue or settings.vtex_orders_task_queue,
    )


@activity.defn(name="dbt_build")
async def passing_build(_: DbtBuildInput) -> DbtBuildSummary:
    """A build that passes without running dbt: the workflow's history is the same."""
    return DbtBuildSummary(success=True, models_built=13, tests_passed=46)


async def test_record_dbt_build(hub: Hub) -> None:
    """Two requests, two builds; then the workflow (which never ends by itself) is terminated."""
    await record_builds(hub, "recorded", [("vtex orders", False), ("vtex catalog sync", False)], "dbt_build")


async def test_record_dbt_build_fast_leaves_out_blocked(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Since the fast-builds-leave-out-blocked-models patch: a full build's key test fails, the next fast
    build leaves that model and what reads it out, until a full build passes it; then terminated."""
    workflow_id, _, _ = await blocked_then_passed(temporal_env.client, task_queue)
    await save(temporal_env.client, workflow_id, "dbt_build_fast_leaves_out_blocked")


async def test_record_dbt_build_fast_and_full(hub: Hub) -> None:
    """A full first build, a fast one, and one asked for in full; then the workflow is terminated."""
    requests = [("vtex orders", False), ("vtex orders", False), ("demo", True)]
    await record_builds(hub, "cadence", requests, "dbt_build_fast_and_full")


async def test_record_dbt_build_spaced(hub: Hub) -> None:
    """Since the builds-spaced patch: three builds, each a second's spacing after the last one started."""
    requests = [("vtex orders", False), ("vtex orders", False), ("demo", True)]
    await record_builds(hub, "spaced", requests, "dbt_build_spaced", spacing_seconds=1.0)


async def record_builds(
    hub: Hub, queue: str, requests: list[tuple[str, bool]], name: str, spacing_seconds: float = 0.0
) -> None:
    """Send these build requests (reason, full) one after another, each once the last was built."""
    # A task queue of its own: the hub's worker would run the real dbt.
    settings = hub.settings.model_copy(
        update={
            "dbt_task_queue": f"{hub.settings.dbt_task_queue}-{queue}",
            "dbt_build_spacing_seconds": spacing_seconds,
        }
    )
    workflow_id = dbt_build_workflow_id(settings)
    handle = hub.client.get_workflow_handle(workflow_id)
    async with Worker(
        hub.client,
        task_queue=settings.dbt_task_queue,
        workflows=[DbtBuildWorkflow],
        activities=[passing_build],
        workflow_runner=WORKFLOW_RUNNER,
    ):
        for builds, (reason, full) in enumerate(requests, start=1):
            await send_build_request(hub.client, settings, BuildRequest(reason, full=full))
            await eventually(lambda builds=builds: has_built(handle, builds))
        await handle.terminate("recorded")
    await save(hub.client, workflow_id, name)


async def has_built(handle: WorkflowHandle[Any, Any], count: int) -> bool:
    status = await handle.query(STATUS_QUERY, result_type=DbtBuildStatus)
    return status.builds == count and not status.building


async def record_sla_missed_at_first_dealer(
    env: WorkflowEnvironment, sqlite_url: str, task_queue: str, name: str
) -> None:
    """The run of a lead its first dealer did not accept within its SLA, re-routed to the next one;
    saved as ``name``."""
    async with sla_hub(env, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(State="PR", City="Curitiba")
        await hub.post_webhook(lead_id)
        await at_dealer(hub, lead_id, "sla-a")
        await skip_time(env, SLA + timedelta(minutes=1))
        await at_dealer(hub, lead_id, "sla-b")
        history = await the_run_that(hub.client, lead_workflow_id(lead_id), "withdraw_lead")
        (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


async def test_record_lead_sla_deadline_on_temporal_clock(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the sla-deadline-on-temporal-clock patch: the run waits until the deadline its activity put
    on Temporal's clock."""
    await record_sla_missed_at_first_dealer(
        skipping_env, sqlite_url, task_queue, "lead_sla_deadline_on_temporal_clock"
    )


async def test_record_lead_sla_deadline_from_handling(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the sla-deadline-on-temporal-clock patch (kept as it was): the
    run waited the seconds left from when it handled the plan."""
    await record_sla_missed_at_first_dealer(
        skipping_env, sqlite_url, task_queue, "lead_sla_deadline_from_handling"
    )


async def record_reassigned_gone_from_zoho(hub: Hub, name: str) -> None:
    """Support's move of a delivered lead a salesperson then deleted in Zoho (``hub leads reassign``
    starts that run); the run saved as ``name``."""
    lead_id = await hub.create_lead(State="SP", City="São Paulo", Modelo_de_Interesse="Onix")
    await hub.post_webhook(lead_id)
    await hub.handle(lead_id).result()
    (await hub.http.delete(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")).raise_for_status()
    assert await start_move(hub, "rest-sp-b")(lead_id)
    await hub.handle(lead_id).result()
    history = await hub.handle(lead_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json() + "\n")


def start_move(hub: Hub, dealer_id: str) -> Callable[[str], Coroutine[Any, Any, str | None]]:
    """Support's move of a lead whose run ended to ``dealer_id``: the run ``hub leads reassign`` starts."""

    async def move(lead_id: str) -> str | None:
        ended = await hub.handle(lead_id).fetch_history()
        first = await started_with(hub.client, ended, LeadDistributionInput)
        to = Reassignment(dealer_id, reason="customer moved", by="ana")
        return await start_lead_distribution(
            hub.client, hub.settings, lead_id, first.event, redrive=True, reassignment=to
        )

    return move


async def record_reassigned(hub: Hub, name: str) -> None:
    """Support's move of a delivered lead from rest-sp-a to rest-sp-b (``hub leads reassign`` starts that
    run); the run saved as ``name``."""
    lead_id = await hub.create_lead(State="SP", City="São Paulo", Modelo_de_Interesse="Onix")
    await hub.post_webhook(lead_id)
    assert (await hub.handle(lead_id).result()).dealer_id == "rest-sp-a"
    assert await start_move(hub, "rest-sp-b")(lead_id)
    assert (await hub.handle(lead_id).result()).dealer_id == "rest-sp-b"
    await save(hub.client, lead_workflow_id(lead_id), name)


async def record_report_to_a_move_no_dealer_takes(
    env: WorkflowEnvironment, sqlite_url: str, task_queue: str, name: str
) -> None:
    """plain-al's report reaches support's move of the lead to sla-a, which refuses it; no dealer left,
    the run ends unrouted. Saved as ``name``."""
    async with sla_hub(env, sqlite_url, task_queue) as hub:
        lead_id, moving = await reported_as_support_moves(hub, start_move(hub, "sla-a"))
        assert await moving
        await refused_with_its_drop_owed(hub, env, lead_id)
        assert (await hub.handle(lead_id).result()).status == "unrouted"
        await save(hub.client, lead_workflow_id(lead_id), name)


async def test_record_lead_report_to_a_move_passed_on_at_its_end(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the reports-passed-on-at-every-end patch: the run passes the report on to the subscribers
    as it ends."""
    name = "lead_report_to_a_move_passed_on_at_its_end"
    await record_report_to_a_move_no_dealer_takes(skipping_env, sqlite_url, task_queue, name)


async def test_record_lead_report_to_a_move_left_at_its_end(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the reports-passed-on-at-every-end patch (kept as it was): the
    run ended unrouted with the report it was handed."""
    name = "lead_report_to_a_move_left_at_its_end"
    await record_report_to_a_move_no_dealer_takes(skipping_env, sqlite_url, task_queue, name)


async def record_report_to_a_failed_move(
    env: WorkflowEnvironment, sqlite_url: str, task_queue: str, name: str
) -> None:
    """plain-al's report reaches support's move of the lead to sla-a, which is taken out of the rules
    before the move: the run fails. Saved as ``name``."""
    async with sla_hub(env, sqlite_url, task_queue) as hub:
        lead_id, moving = await reported_as_support_moves(hub, start_move(hub, "sla-a"))
        assert await moving
        await taken_out_of_the_rules(hub, "sla-a")
        await hub.fault(target="zoho")
        with pytest.raises(WorkflowFailureError):
            await hub.handle(lead_id).result()
        await save(hub.client, lead_workflow_id(lead_id), name)


async def test_record_lead_report_to_a_failed_move_passed_on(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the reports-passed-on-at-every-end patch: the failing run passes the report on (Zoho, the
    subscribers) before it fails."""
    name = "lead_report_to_a_failed_move_passed_on"
    await record_report_to_a_failed_move(skipping_env, sqlite_url, task_queue, name)


async def test_record_lead_report_to_a_failed_move_left(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Recorded with the code from before the reports-passed-on-at-every-end patch (kept as it was): the
    run failed with the report it was handed."""
    name = "lead_report_to_a_failed_move_left"
    await record_report_to_a_failed_move(skipping_env, sqlite_url, task_queue, name)


async def test_record_lead_sent_back_event_per_delivery(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """Since the event-id-per-delivery-and-report patch: support sends the lead back to plain-al, whose
    CRM withdrew it; the move's run delivers it under a key of its own, which its event's id names."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(State="AL", City="Maceió")
        await hub.post_webhook(lead_id)
        await hub.handle(lead_id).result()
        assert await start_move(hub, "sla-a")(lead_id)
        await at_dealer(hub, lead_id, "sla-a")
        await hub.handle(lead_id).terminate("next dealer")
        assert await start_move(hub, "plain-al")(lead_id)
        assert (await hub.handle(lead_id).result()).dealer_id == "plain-al"
        await save(hub.client, lead_workflow_id(lead_id), "lead_sent_back_event_per_delivery")


async def test_record_lead_reassigned_withdrawn_at_previous(hub: Hub) -> None:
    """Since the reassign-withdraws-at-previous-dealer patch: the move's run asks rest-sp-a's CRM to drop
    the lead before rest-sp-b gets it."""
    await record_reassigned(hub, "lead_reassigned_withdrawn_at_previous")


async def test_record_lead_reassigned_first_steps_locally(hub: Hub) -> None:
    """Recorded since the first-steps-tried-locally patch, with the code from before the
    reassign-withdraws-at-previous-dealer patch (kept as it was): the move's run reads the lead and
    records "received" in local activities, then decides and delivers as activities, and asks the first
    dealer's CRM for nothing."""
    await record_reassigned(hub, "lead_reassigned_first_steps_locally")


async def test_record_lead_reassigned_gone_from_zoho_kept(hub: Hub) -> None:
    """Since the reassign-only-a-lead-zoho-has patch: the run reads the lead first and, Zoho without it,
    ends not_reassigned, recording nothing."""
    await record_reassigned_gone_from_zoho(hub, "lead_reassigned_gone_from_zoho_kept")


async def test_record_lead_reassigned_gone_from_zoho_failed(hub: Hub) -> None:
    """Recorded with the code from before the reassign-only-a-lead-zoho-has patch (kept as it was): the
    run recorded "received", then "failed" over the lead still at its dealer."""
    await record_reassigned_gone_from_zoho(hub, "lead_reassigned_gone_from_zoho_failed")

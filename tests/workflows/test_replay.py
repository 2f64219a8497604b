"""Saved histories of every workflow type replay against the current code: a non-deterministic change
fails here, before it ships and breaks the runs already under way.

The histories in ``histories/`` were recorded by earlier code (``record_histories.py`` says how and
when to record one); they are encrypted with the local development key.
"""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.workflow import NondeterminismError

from core.codec import ENCODING, LOCAL_PAYLOAD_KEY, LOCAL_PAYLOAD_KEY_ID
from core.settings import Settings
from tests.stored import activity_types, local_activity_types, payloads_in
from tests.workflows.changed_workflows import HookConfigWithAPauseFirst
from workflows.replay import WORKFLOWS, replay

HISTORIES = Path(__file__).parent / "histories"
SAVED = sorted(HISTORIES.glob("*.json"))
LOCAL = Settings(environment="test", payload_keys={LOCAL_PAYLOAD_KEY_ID: LOCAL_PAYLOAD_KEY})


def saved(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def registered_name(cls: type) -> str:
    return workflow._Definition.must_from_class(cls).name  # the SDK's own reading of @workflow.defn


def test_every_workflow_the_worker_runs_has_a_saved_history() -> None:
    recorded = {workflow_type(saved(path)) for path in SAVED}
    missing = sorted({registered_name(cls) for cls in WORKFLOWS} - recorded)
    assert not missing, f"no saved history of {missing}: record one (tests/workflows/record_histories.py)"


@pytest.mark.parametrize("path", SAVED, ids=lambda path: path.stem)
async def test_saved_history_replays_with_the_current_code(path: Path) -> None:
    failure = await replay(saved(path), LOCAL)
    assert failure is None, f"{path.name} no longer replays with the current code: {failure!r}"


# Recorded by code from before payload encryption: their payloads are plain JSON.
BEFORE_ENCRYPTION = {
    "lead_delivered_before_status_patch.json",
    "vtex_order_before_events_with_version.json",
    "customer_sync_before_build_requests.json",
}


def markers(history: WorkflowHistory) -> int:
    """How many patch markers the run recorded (their ids are encrypted in newer histories)."""
    return sum(1 for event in history.events if event.HasField("marker_recorded_event_attributes"))


def scheduled_activities(name: str) -> list[str]:
    """The activity types a saved history scheduled, in order."""
    return activity_types(saved(HISTORIES / f"{name}.json").events)


def test_a_hook_without_current_change_was_ignored_before_and_reads_the_order_since() -> None:
    before = scheduled_activities("vtex_order_untimed_hook_before_reading")
    assert before.count("land_order_version") == 1  # handling only
    assert scheduled_activities("vtex_order_untimed_hook_read").count("land_order_version") == 2


def builds_after_a_timer(history: WorkflowHistory) -> int:
    """How many activities the run scheduled right after a timer fired (workflow tasks aside)."""
    kinds = [
        event.WhichOneof("attributes")
        for event in history.events
        if not event.WhichOneof("attributes").startswith("workflow_task_")
    ]
    return sum(
        1
        for before, kind in itertools.pairwise(kinds)
        if kind == "activity_task_scheduled_event_attributes" and before == "timer_fired_event_attributes"
    )


def test_the_saved_histories_hold_what_their_replay_proves() -> None:
    """A lead recorded before the status patch (its three separate record_lead_status steps), an order
    recorded before its events and version landed together (no patch marker), and every history
    recorded since payload encryption with its payloads encrypted."""
    assert scheduled_activities("lead_delivered_before_status_patch").count("record_lead_status") == 3
    old_order = saved(HISTORIES / "vtex_order_before_events_with_version.json")
    assert markers(old_order) == 0
    old_sync = saved(HISTORIES / "customer_sync_before_build_requests.json")
    old_steps = scheduled_activities("customer_sync_before_build_requests")
    assert "request_dbt_build" not in old_steps and markers(old_sync) == 0
    assert markers(saved(HISTORIES / "vtex_order_hooks_as_they_come.json")) >= 1
    # Leads followed their dealer in the run that delivered them, then in runs of their own.
    waited_in_place = saved(HISTORIES / "lead_sla_missed_then_accepted.json")
    assert not any(
        e.HasField("workflow_execution_continued_as_new_event_attributes") for e in waited_in_place.events
    )
    handed_on = saved(HISTORIES / "lead_delivered_then_handed_on.json")
    assert handed_on.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    followed = saved(HISTORIES / "lead_followed_accepted.json")
    assert followed.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    # A deal's webhook laid over Zoho's record before the newer-record patch; since, a newer record stays.
    assert markers(saved(HISTORIES / "opportunity_updates.json")) == 0
    assert markers(saved(HISTORIES / "opportunity_newer_record_kept.json")) == 1
    # Two moves within one second: before the same-second patch the second was dropped as stored before
    # (two stores); since, Zoho's record of that second is stored, then the first move's stage (three).
    for name, marked, stores in (("before_patch", 0, 2), ("changes", 1, 3)):
        history = f"opportunity_same_second_{name}"
        assert markers(saved(HISTORIES / f"{history}.json")) == marked
        assert scheduled_activities(history).count("apply_deal_change") == stores
    # A run continued as new knows its last applied second's stage: the same change again, no Zoho read.
    resent = saved(HISTORIES / "opportunity_resent_to_the_next_run.json")
    assert resent.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    assert scheduled_activities("opportunity_resent_to_the_next_run") == ["apply_deal_change"]
    # Builds back to back before the spacing patch; since, a timer between a build's request and its start.
    assert builds_after_a_timer(saved(HISTORIES / "dbt_build_fast_and_full.json")) == 0
    assert builds_after_a_timer(saved(HISTORIES / "dbt_build_spaced.json")) >= 1
    for path in SAVED:
        if path.name not in BEFORE_ENCRYPTION:
            encodings = {p.metadata["encoding"] for p in payloads_in(*saved(path).events)}
            assert encodings == {ENCODING}, path.name


def test_a_resumed_lead_passes_its_stored_status_on_only_since_its_patch() -> None:
    """A run resumed after a terminate, its dealer's "contacted" stored: before the
    pass-on-stored-dealer-status patch it passed on only the delivery; since, the status too."""
    before = saved(HISTORIES / "lead_stored_status_before_passing_on.json")
    since = saved(HISTORIES / "lead_stored_status_passed_on.json")
    assert local_activity_types(before.events) == ["publish_event", "update_zoho_lead"]
    assert local_activity_types(since.events) == [
        "publish_event",
        "update_zoho_lead",
        "update_zoho_lead",
        "publish_event",
    ]
    assert markers(since) == markers(before) + 3  # the patch, and the status's two local activities


def test_a_resumed_lead_at_an_unfollowed_dealer_passes_its_stored_status_on_only_since_its_patch() -> None:
    """A dealer without an SLA, its "contacted" stored, the run passing it on terminated: the run a resent
    webhook starts passed on only the delivery before the pass-on-stored-status-of-unfollowed-dealer
    patch; since, the stored status too."""
    before = saved(HISTORIES / "lead_unfollowed_stored_status_before_passing_on.json")
    since = saved(HISTORIES / "lead_unfollowed_stored_status_passed_on.json")
    assert sorted(local_activity_types(before.events)) == ["publish_event", "update_zoho_lead"]
    assert sorted(local_activity_types(since.events)) == ["publish_event"] * 2 + ["update_zoho_lead"] * 2


def test_the_lead_histories_cover_both_homes_of_the_delivery_decision() -> None:
    """Leads recorded before the delivery-decision patch route in the run (route_lead); later ones claim
    in the database, and a run after a terminate resumes the delivered lead without calling a dealer."""
    steps = scheduled_activities

    assert "route_lead" in steps("lead_assigned_by_support")
    assert "assign_lead" in steps("lead_assigned_by_support_decision_in_database")
    assert steps("lead_rejected_then_delivered").count("claim_lead") == 2
    resumed = steps("lead_resumed_after_terminate")
    assert "claim_lead" in resumed and "deliver_lead" not in resumed
    # Since the SLA patch: delivered, withdrawn when the SLA passed, claimed and delivered again, then
    # the next dealer's acceptance arrived as a signal.
    rerouted = steps("lead_sla_missed_then_accepted")
    assert rerouted.count("deliver_lead") == 2 and rerouted.count("withdraw_lead") == 1
    sla_events = saved(HISTORIES / "lead_sla_missed_then_accepted.json").events
    assert any(e.HasField("timer_started_event_attributes") for e in sla_events)
    assert any(e.HasField("workflow_execution_signaled_event_attributes") for e in sla_events)
    # Since the reroute-cap patch, a run after a terminate makes the withdrawal left pending and ends
    # the lead at its cap (the earlier lead histories show runs from before it, which claimed anyway).
    capped = steps("lead_withdrawal_resumed_then_sla_exhausted")
    assert capped[capped.index("claim_lead") :] == [
        "claim_lead",
        "withdraw_at_dealer",
        "record_lead_status",
        "update_zoho_lead",
    ]
    assert "deliver_lead" not in capped


def test_the_lead_histories_pass_statuses_on_in_activities_and_in_local_activities() -> None:
    """A delivery and a dealer's acceptance went on to Zoho and the subscribers in two activities each,
    and since the status-passed-on-in-local-activities patch in two local activities (markers)."""
    scheduled = scheduled_activities

    for before in ("lead_delivered_then_handed_on", "lead_followed_accepted"):
        assert {"update_zoho_lead", "publish_event"} <= set(scheduled(before))
    for since in ("lead_delivered_passed_on_locally", "lead_accepted_passed_on_locally"):
        assert not {"update_zoho_lead", "publish_event"} & set(scheduled(since))
        assert sorted(local_activity_types(saved(HISTORIES / f"{since}.json").events)) == [
            "publish_event",
            "update_zoho_lead",
        ]


def test_a_new_leads_first_steps_were_activities_before_and_are_tried_locally_since() -> None:
    """Before the first-steps-tried-locally patch, the "received" record, the read from Zoho and the
    claim were three activities; since, local activities, with the read an activity where its local try
    failed (Zoho answered 503)."""
    assert scheduled_activities("lead_rejected_then_delivered")[:3] == [
        "record_lead_status",
        "fetch_lead",
        "claim_lead",
    ]
    assert scheduled_activities("lead_first_steps_tried_locally") == ["fetch_lead", "deliver_lead"]
    since = saved(HISTORIES / "lead_first_steps_tried_locally.json")
    assert local_activity_types(since.events)[:3] == ["record_lead_status", "fetch_lead", "claim_lead"]


@pytest.mark.parametrize(
    "name",
    [
        "opportunity_parked_then_redriven",
        "vtex_order_parked_then_redriven",
        "vtex_order_landing_parked_then_redriven",
        "vtex_order_version_parked_as_bigquery",
    ],
)
def test_the_parked_histories_hold_a_refusal_and_its_redrive(name: str) -> None:
    events = saved(HISTORIES / f"{name}.json").events
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    failed = [e for e in events if e.HasField("activity_task_failed_event_attributes")]
    assert "redrive_parked" in signals and failed  # refused once, then redriven


def test_an_order_recorded_before_landings_parked_failed_on_the_refusal() -> None:
    """Its replay proves runs of that code still fail the same way rather than park (no marker)."""
    events = saved(HISTORIES / "vtex_order_landing_refused_before_parking.json").events
    assert events[-1].HasField("workflow_execution_failed_event_attributes")
    failed = [
        e.activity_task_failed_event_attributes
        for e in events
        if e.HasField("activity_task_failed_event_attributes")
    ]
    assert len(failed) == 1 and failed[0].failure.application_failure_info.type == "PermanentFailure"


def test_the_order_histories_cover_both_ways_of_taking_hooks() -> None:
    """One order gathered its hooks in half-second windows; the other took each as it came (its only
    timer is the linger after the final state)."""

    def timers(name: str) -> list[timedelta]:
        events = saved(HISTORIES / f"{name}.json").events
        return [
            event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            for event in events
            if event.HasField("timer_started_event_attributes")
        ]

    assert timedelta(seconds=0.5) in timers("vtex_order_to_invoiced")
    assert timers("vtex_order_hooks_as_they_come") == [timedelta(seconds=2)]


async def test_a_changed_workflow_fails_the_replay() -> None:
    """The check can fail: the hook configuration workflow with a timer added before its activity."""
    history = saved(HISTORIES / "hook_config.json")
    assert await replay(history, LOCAL) is None
    failure = await replay(history, LOCAL, workflows=[HookConfigWithAPauseFirst])
    assert isinstance(failure, NondeterminismError)
    assert "StartTimer" in str(failure) or "Timer" in str(failure)


async def test_a_history_needs_the_key_it_was_encrypted_with() -> None:
    """Replays decrypt with the project's data converter: a ring without the key cannot read them."""
    other = Settings(environment="test", payload_keys={"other": "A" * 43 + "="})
    failure = await replay(saved(HISTORIES / "hook_config.json"), other)
    assert failure is not None and "PayloadKeyError" in str(failure)


def test_an_order_not_found_was_given_up_before_and_is_read_again_since() -> None:
    """Before the read-an-order-not-found-again-then-park patch one 404 ended the read; since, the run
    waits and reads again (four timers), then parks until redriven."""

    def reads_and_timers(name: str) -> tuple[int, int]:
        events = saved(HISTORIES / f"{name}.json").events
        reads = scheduled_activities(name).count("land_order_version")
        return reads, sum(1 for e in events if e.HasField("timer_started_event_attributes"))

    assert reads_and_timers("vtex_order_not_found_before_retries")[0] == 1
    reads, timers = reads_and_timers("vtex_order_not_found_read_again_then_parked")
    assert reads == 6 and timers >= 4


def test_an_order_served_behind_its_hook_was_taken_before_and_is_read_again_since() -> None:
    """Before the read-an-order-served-behind-its-hook-again patch the older version the OMS served was
    taken for the hook's; since, the run reads again after each wait (four timers), parks, is redriven."""
    before = scheduled_activities("vtex_order_served_behind_before_reading_again")
    assert before.count("land_order_version") == 1
    events = saved(HISTORIES / "vtex_order_served_behind_its_hook.json").events
    assert scheduled_activities("vtex_order_served_behind_its_hook").count("land_order_version") == 6
    assert sum(1 for e in events if e.HasField("timer_started_event_attributes")) >= 4


def test_an_order_served_behind_an_untimed_hook_was_taken_before_and_is_read_again_since() -> None:
    """The same for a hook without CurrentChange, since the read-an-order-served-behind-an-untimed-hook-
    again patch: before, the version of the state before it was taken for current and the run closed."""
    before = scheduled_activities("vtex_order_served_behind_an_untimed_hook_before")
    assert before.count("land_order_version") == 1
    events = saved(HISTORIES / "vtex_order_served_behind_an_untimed_hook.json").events
    assert scheduled_activities("vtex_order_served_behind_an_untimed_hook").count("land_order_version") == 6
    assert sum(1 for e in events if e.HasField("timer_started_event_attributes")) >= 4


def test_a_polled_dealer_was_withdrawn_unread_before_and_is_read_at_its_deadline_since() -> None:
    """Before the read-dealer-status-before-withdrawal patch a dealer read hourly with 30 minutes to
    accept lost the lead at its deadline unread; since, it is read then, and its acceptance keeps it."""
    before = scheduled_activities("lead_polled_withdrawn_unread")
    assert "withdraw_lead" in before and "poll_dealer_status" not in before
    since = scheduled_activities("lead_polled_read_before_withdrawal")
    assert "poll_dealer_status" in since and "withdraw_lead" not in since


def test_a_run_resumed_past_a_polled_dealers_deadline_withdrew_unread_before_and_reads_first_since() -> None:
    """Before the read-dealer-status-when-resumed-past-deadline patch a run that resumed the lead after
    the SLA passed withdrew it at once; since, it reads the dealer's CRM first, and the acceptance found
    keeps the lead there."""
    before = scheduled_activities("lead_resumed_past_deadline_withdrawn_unread")
    assert "withdraw_lead" in before and "poll_dealer_status" not in before
    since = scheduled_activities("lead_resumed_past_deadline_read_first")
    assert "poll_dealer_status" in since and "withdraw_lead" not in since


def test_a_re_route_no_dealer_took_waited_for_support_before_and_goes_to_the_fallback_owner_since() -> None:
    """Before the fallback-owner-when-reroute-not-taken patch a re-routed lead the next dealer refused,
    none left, waited a day for support (a second timer, after the SLA's); since, the fallback owner
    gets it at once (Zoho's owner written)."""

    def timers(name: str) -> int:
        events = saved(HISTORIES / f"{name}.json").events
        return sum(1 for event in events if event.HasField("timer_started_event_attributes"))

    before = scheduled_activities("lead_reroute_not_taken_awaiting_assignment")
    since = scheduled_activities("lead_reroute_not_taken_to_fallback")
    withdrawn = ["withdraw_lead", "withdraw_at_dealer", "fetch_lead"]
    refused = [*withdrawn, "claim_lead", "deliver_lead", "claim_lead"]
    assert before[1:7] == since[1:7] == refused  # re-routed, refused, none left
    assert before[7:] == ["record_lead_status"] and timers("lead_reroute_not_taken_awaiting_assignment") == 2
    assert since[7:] == ["record_lead_status", "update_zoho_lead"]
    assert timers("lead_reroute_not_taken_to_fallback") == 1


def test_a_dealers_sla_was_waited_from_handling_before_and_until_its_deadline_on_temporal_clock_since() -> (
    None
):
    """The run that withdraws a lead from its first dealer at its SLA and delivers it to the next,
    recorded before and since the sla-deadline-on-temporal-clock patch: the same steps, and since, the
    patch's marker where the run took the next dealer's deadline on Temporal's clock."""
    before = saved(HISTORIES / "lead_sla_deadline_from_handling.json")
    since = saved(HISTORIES / "lead_sla_deadline_on_temporal_clock.json")
    steps = scheduled_activities("lead_sla_deadline_from_handling")
    assert steps == scheduled_activities("lead_sla_deadline_on_temporal_clock")
    assert steps[:5] == ["withdraw_lead", "withdraw_at_dealer", "fetch_lead", "claim_lead", "deliver_lead"]
    assert markers(since) == markers(before) + 1


def test_a_reassigned_lead_gone_from_zoho_ended_failed_before_and_moves_nothing_since() -> None:
    """Support's move of a lead Zoho no longer has, before and since the reassign-only-a-lead-zoho-has
    patch: before, the run recorded "received" and "failed" over the lead at its dealer; since, it reads
    the lead first and records nothing."""
    before = scheduled_activities("lead_reassigned_gone_from_zoho_failed")
    assert before == ["record_lead_status", "fetch_lead", "record_lead_status"]
    assert scheduled_activities("lead_reassigned_gone_from_zoho_kept") == ["fetch_lead"]


def test_a_reassignment_left_the_first_dealer_holding_the_lead_before_and_has_it_dropped_since() -> None:
    """Support's move of a delivered lead, before and since the reassign-withdraws-at-previous-dealer
    patch (both since first-steps-tried-locally: the lead's read and its "received" run in the worker,
    the move's decision and the delivery are activities). Before, the first dealer's CRM kept the lead;
    since, it is asked to drop it before the new dealer gets it. Both saved histories replay (above)."""
    before = saved(HISTORIES / "lead_reassigned_first_steps_locally.json")
    since = saved(HISTORIES / "lead_reassigned_withdrawn_at_previous.json")
    assert activity_types(before.events) == ["reassign_lead", "deliver_lead"]
    assert activity_types(since.events) == ["reassign_lead", "withdraw_at_dealer", "deliver_lead"]
    local = ["fetch_lead", "record_lead_status", "update_zoho_lead", "publish_event"]
    assert local_activity_types(before.events) == local_activity_types(since.events) == local
    assert markers(since) == markers(before) + 1


def test_a_dealer_gone_inactive_mid_delivery_was_released_as_refused_before_and_owes_a_drop_since() -> None:
    """A dealer taken out of the rules while its CRM stored the lead unanswered: before the
    inactive-dealer-released-owing-drop patch its claim was released as refused and the next dealer got
    the lead; since, its CRM is asked to drop the lead first."""
    before = scheduled_activities("lead_inactive_dealer_released_as_refused")
    assert before == ["deliver_lead", "claim_lead", "deliver_lead"]
    since = scheduled_activities("lead_inactive_dealer_released_owing_drop")
    assert since == ["deliver_lead", "claim_lead", "withdraw_at_dealer", "deliver_lead"]


def test_an_unanswered_claim_was_released_before_and_is_withdrawn_at_its_crm_since() -> None:
    """Since the unanswered-claim-withdrawn-at-crm patch the first dealer's CRM is asked to drop the lead
    between its release and the next dealer's delivery; before it, no such call was made."""

    before = scheduled_activities("lead_unanswered_claim_before_withdrawal")
    assert before.count("deliver_lead") == 2 and "withdraw_at_dealer" not in before
    since = scheduled_activities("lead_unanswered_claim_withdrawn")
    second_claim = since.index("claim_lead", since.index("deliver_lead"))
    assert since[second_claim : second_claim + 3] == ["claim_lead", "withdraw_at_dealer", "deliver_lead"]


def patch_ids(name: str) -> list[str]:
    """The patch markers a saved history recorded, in order (the SDK core keeps their ids in plain text)."""
    return [
        json.loads(event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for event in saved(HISTORIES / f"{name}.json").events
        if event.marker_recorded_event_attributes.marker_name == "core_patch"
    ]


def local_steps(name: str) -> list[str]:
    return local_activity_types(saved(HISTORIES / f"{name}.json").events)


def test_a_report_handed_to_a_move_that_ends_unrouted_was_left_before_and_goes_on_since() -> None:
    """A dealer's report reached support's move of the lead, which no dealer then took. Before the
    reports-passed-on-at-every-end patch the run ended with it; since, it publishes it first (to the
    subscribers only: no dealer holds the lead, so Zoho is not written)."""
    assert "publish_event" not in local_steps("lead_report_to_a_move_left_at_its_end")
    since = "lead_report_to_a_move_passed_on_at_its_end"
    assert local_steps(since)[-1] == "publish_event" and "update_zoho_lead" not in local_steps(since)
    assert "reports-passed-on-at-every-end" in patch_ids(since)
    # The report is about plain-al's first delivery: its event's id is the one it always had.
    assert "event-id-per-delivery-and-report" not in patch_ids(since)


def test_a_report_handed_to_a_move_that_fails_was_left_before_and_goes_on_since() -> None:
    """The move's run fails (its dealer left the rules). Before the patch it failed with the report it
    was handed; since, the report goes to Zoho and the subscribers first (the lead is where it was)."""
    before = local_steps("lead_report_to_a_failed_move_left")
    assert "publish_event" not in before and "update_zoho_lead" not in before
    since = "lead_report_to_a_failed_move_passed_on"
    assert local_steps(since)[-2:] == ["update_zoho_lead", "publish_event"]
    assert "reports-passed-on-at-every-end" in patch_ids(since)


def test_a_delivery_to_a_dealer_the_lead_was_sent_back_to_has_an_event_id_of_its_own() -> None:
    """Since the event-id-per-delivery-and-report patch, a delivery under a key of its own (the lead
    sent back to a dealer whose CRM withdrew it) names its key in its events' ids; a first delivery's
    events keep the ids they always had, so its runs record no marker."""
    assert "event-id-per-delivery-and-report" in patch_ids("lead_sent_back_event_per_delivery")
    assert "event-id-per-delivery-and-report" not in patch_ids("lead_reassigned_withdrawn_at_previous")


def test_a_lead_waited_for_an_absent_subscriber_before_its_sla_before_and_goes_on_beside_it_since() -> None:
    """The subscriber away from the delivery on. Before the feedback-beside-the-flow patch, the run
    waited for the event (retried as an activity) and only then found the SLA passed: no timer, the
    dealer kept the lead until the subscriber was back. Since, the SLA's timer runs while the event is
    retried, the lead moves at its deadline, and the run hands the wait on once the subscriber has both
    events."""

    def timers(name: str) -> int:
        events = saved(HISTORIES / f"{name}.json").events
        return sum(1 for event in events if event.HasField("timer_started_event_attributes"))

    moved = ["withdraw_lead", "withdraw_at_dealer", "claim_lead", "deliver_lead"]
    before = scheduled_activities("lead_feedback_in_the_flow")
    assert before[before.index("publish_event") + 1 :] == moved
    assert timers("lead_feedback_in_the_flow") == 0
    since = scheduled_activities("lead_feedback_beside_the_flow")
    assert since[since.index("publish_event") + 1 :] == moved and timers("lead_feedback_beside_the_flow") >= 1
    handed_on = saved(HISTORIES / "lead_feedback_beside_the_flow.json").events[-1]
    assert handed_on.HasField("workflow_execution_continued_as_new_event_attributes")

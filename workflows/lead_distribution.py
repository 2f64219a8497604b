"""LeadDistributionWorkflow: one per Zoho lead, from webhook to a dealer CRM and back."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    is_cancelled_exception,
)

from contracts.leads import (
    ASSIGN_DEALER_UPDATE,
    AWAITING_ACCEPTANCE,
    AWAITING_ASSIGNMENT,
    DEALER_STATUS_SIGNAL,
    LEAD_DISTRIBUTION_WORKFLOW,
    NOT_REASSIGNED,
    STATE_QUERY,
    SUPPORT_LOGIN,
    AssignDealerInput,
    AssignDealerResult,
    DealerStatusReport,
    DeliveryAttempt,
    Following,
    LeadDistributionInput,
    LeadDistributionResult,
    PassedOn,
)
from workflows.parking import Parking
from workflows.policies import DATABASE_RETRY, error_type, failure_cause

with workflow.unsafe.imports_passed_through():
    from activities.errors import PERMANENT_FAILURE
    from activities.leads import (
        DEALER_REJECTED,
        DROP_OWED,
        LEAD_MOVED_ON,
        LEAD_NOT_FOUND,
        NO_EARLIER_ATTEMPT,
        UNKNOWN_DEALER,
        AssignLeadInput,
        ClaimLeadInput,
        ClaimLeadResult,
        DealerLookupInput,
        DeliverLeadInput,
        DeliverLeadResult,
        FetchLeadInput,
        FollowPlan,
        FollowPlanInput,
        LeadActivities,
        PollStatusInput,
        PublishEventInput,
        ReassignLeadInput,
        RecordStatusInput,
        RouteLeadInput,
        UpdateZohoLeadInput,
        WithdrawAtDealerInput,
        WithdrawLeadInput,
        WithdrawLeadResult,
    )
    from core.constants import (
        DEALER_ID,
        DEALER_STATUSES,
        EVENT_SOURCE,
        LEAD_EVENT_DISTRIBUTED,
        LEAD_EVENT_STATUS_UPDATED,
        LEAD_ID,
        LEAD_STATUS,
        REDRIVE_PARKED_SIGNAL,
        ZOHO_LEAD_STATUS,
        ZOHO_OWNER_FIELD,
        LeadStatus,
        lead_delivery_key,
    )
    from core.events import cloud_event

# Patch: route_lead records "routed" and deliver_lead records "delivered" themselves, two activity
# round trips fewer per lead. Runs started before it replay with their separate record_lead_status steps.
STATUS_WITH_STEP = "status-recorded-with-route-and-delivery"
# Patch: the delivery decision lives in the portal database (db/deliveries.py), so every later run of
# the lead resumes it instead of routing again. Runs started before it route with route_lead and keep
# the decision in the run.
DELIVERY_CLAIM = "delivery-decision-in-database"

# Patch: after delivery the run follows the dealer: it passes the statuses the dealer reports on to Zoho
# and the subscribers, and a dealer with an SLA that does not accept in time loses the lead to the next
# dealer (at most max_reroutes times, then the fallback owner). Runs started before it end at delivery.
DEALER_SLA = "dealer-sla-and-status"
# Patch: a delivered lead that waits for its dealer waits in a new run (continue-as-new) that starts from
# what it needs (contracts.leads.Following), so a status signalled to it replays a few events, not the
# whole delivery, and a cached waiting run holds little. The delivery's result says how to follow the
# dealer, and Zoho and the subscribers hear of the delivery at once. Runs before it wait where they
# delivered, after reading the follow plan and telling Zoho, then the subscribers.
FOLLOW_IN_OWN_RUN = "follow-dealer-in-own-run"
# Patch: a delivery, and each status the dealer reports, go on to Zoho and the subscribers in local
# activities, run by the worker within the workflow task that delivered or took the report: no activity
# tasks through the server, about half of what an acceptance costs it. Runs before it used two activities.
# With it, a status of a dealer the lead has since left (a report still due when support moved the lead)
# reaches only the subscribers: before, it also set the lead's status in Zoho and the Web UI.
PASS_ON_LOCALLY = "status-passed-on-in-local-activities"
# Patch: the re-routing cap and the CRM withdrawals live in the portal database, not only in the run. A
# new run of the lead (a resent webhook after a terminate, a redrive) makes the CRM calls of withdrawals an
# ended run left pending, and a lead past its cap ends sla_exhausted instead of going to one more dealer.
# Runs before it claimed a dealer whatever the lead's withdrawals.
REROUTES_IN_DATABASE = "reroute-cap-and-withdrawals-in-database"
# Patch: a dealer whose CRM never answered the create call for the whole retry window may have stored
# the lead all the same: its claim is released as "unanswered", and its CRM is asked to drop the lead
# before the next dealer gets it. Runs started before it released the claim and moved on.
UNANSWERED_RELEASE = "unanswered-claim-withdrawn-at-crm"
# Patch: a run that reads the lead's follow plan from the database passes the dealer's stored status on
# (Zoho, the subscribers) before any signalled one. A run terminated after a report reached it and before
# it passed the report on had left Zoho and the subscribers without it: the next run of the lead (a resent
# webhook, a redrive) knew of the status only as its starting point. Passing it on again is harmless (the
# event's id is stable; Zoho's write checks the database for a newer report). Runs before it did not.
PASS_ON_STORED_STATUS = "pass-on-stored-dealer-status"
# Patch: a dealer whose CRM is read (sla.status_poll_seconds) is read once more as its SLA passes, before
# the lead is withdrawn: one that accepted after the last read (or, reads as long as the SLA, was never
# read) keeps the lead. Runs started before it withdrew the lead at the deadline without reading.
READ_BEFORE_WITHDRAWAL = "read-dealer-status-before-withdrawal"
# Patch: PASS_ON_STORED_STATUS for a dealer that is not followed (no SLA, no status reads): a run that
# resumes its delivered lead from the database passes the dealer's stored status on. Runs before it
# passed on only the reports signalled to them.
PASS_ON_STORED_STATUS_UNFOLLOWED = "pass-on-stored-status-of-unfollowed-dealer"
# Patch: READ_BEFORE_WITHDRAWAL for a run that finds the SLA passed without its timer firing: one that
# resumes the lead from the database after the deadline (a resent webhook or a redrive after a
# terminate, a handed-on run whose first task came late). It reads the dealer's CRM once before it
# withdraws; runs before it withdrew the lead unread, though the dealer may have accepted in time.
READ_WHEN_RESUMED_PAST_DEADLINE = "read-dealer-status-when-resumed-past-deadline"
# Patch: after a re-route, a next dealer that does not take the lead (it refuses it, or its CRM never
# answers) with no other dealer left hands the lead to the fallback owner at once, as no dealer left at
# the re-route's own claim does. Runs before it waited for support's assign_dealer until the assignment
# deadline (24 hours from the run's start by default), the lead with no owner meanwhile.
FALLBACK_WHEN_REROUTE_NOT_TAKEN = "fallback-owner-when-reroute-not-taken"
# Patch: the SLA deadline the run waits until is the hub's deadline on Temporal's clock, as the activity
# that read it computed (FollowPlan.sla_wait_until). Runs before it waited the seconds left at the read
# from the time they handled its result: a worker away in between gave the dealer as much more time.
SLA_DEADLINE_ON_TEMPORAL_CLOCK = "sla-deadline-on-temporal-clock"
# Patch: a run support started to move the lead (reassign_to) reads it from Zoho before it records any
# status; one Zoho no longer has (deleted, or converted) ends NOT_REASSIGNED, the lead at its dealer and
# its status as they were. Runs before it recorded "received" then "failed" over a lead still at its
# dealer, which moved nothing.
REASSIGN_ONLY_A_LEAD_IN_ZOHO = "reassign-only-a-lead-zoho-has"
# Patch: a new lead's first steps (its "received" record, the read of the lead from Zoho, the claim of a
# dealer) are tried in local activities, run by the worker within the lead's first workflow task: a lead
# delivered to a dealer then costs the server two workflow tasks, not five, and one activity task, not
# four, which is what a burst of leads queued behind. A step whose local try fails runs as an activity,
# as before, where the Web UI shows its attempts. Runs before it ran the three steps as activities.
LOCAL_FIRST_STEPS = "first-steps-tried-locally"
# Patch: support's move of a lead (reassign_to) asks the CRM of the dealer that had it to drop it (and
# makes any drop an earlier run left owed) before the new dealer gets it: that dealer holds no lead it
# lost without a withdrawal asked for and recorded. Runs before it moved the lead and left the first
# dealer's CRM holding it (support told that dealer).
REASSIGN_WITHDRAWS_AT_PREVIOUS = "reassign-withdraws-at-previous-dealer"
# Patch: a dealer taken out of the rules (inactive) while its delivery attempts went on, its CRM not
# answering, may hold the lead all the same (an earlier attempt's create reached it): its claim is released
# as UNANSWERED_RELEASE releases one, and its CRM is asked to drop the lead before the next dealer gets
# it. Runs before it released the claim as refused and moved on, leaving that CRM holding the lead.
RELEASE_INACTIVE_DEALER_OWING_DROP = "inactive-dealer-released-owing-drop"
# Patch: a dealer's report that reached the run and was not yet passed on goes on before the run ends
# or continues as new: where it gives the lead up or hands it to the fallback owner, or where support's
# move is refused (its dealer left the rules, or owes a drop), and where it continues as new after a
# withdrawal. A report the dealer's webhook was answered for before support moved the lead away reaches
# the move's run; runs before it ended without it, and the subscribers never heard of it.
REPORTS_PASSED_ON_AT_EVERY_END = "reports-passed-on-at-every-end"
# Patch: the events of a delivery to a dealer the lead was sent back to (a new delivery, under a key of
# its own) have ids derived from that key too: the delivery and the dealer's reports are new events.
# Runs before it gave them the first delivery's ids, which the subscribers dropped as repeats. A first
# delivery's ids are as they were, so no run in flight sends an event again under a new id.
EVENT_ID_PER_DELIVERY = "event-id-per-delivery-and-report"
# Patch: what goes to Zoho and to the subscribers goes beside the lead's flow, in a lane per partner that
# keeps its order (workflows.lead_distribution.Lane), instead of being waited for in the flow: a Zoho out
# of API credits or a subscriber away for hours no longer holds up the dealer's SLA, the re-routing, or
# the other partner's news. The run waits for its lanes before it ends or continues as new, and hands a
# delivered lead's wait on (FOLLOW_IN_OWN_RUN) once they are clear. Runs before it waited for each write
# and event in turn, up to 6 and 24 hours, before their dealer's SLA was looked at.
FEEDBACK_BESIDE_THE_FLOW = "feedback-beside-the-flow"
# A delivery attempt's outcome when the lead had left that delivery (a run reset to before it).
MOVED_ON = "moved on"
# The local try of a step (_done_locally): Zoho's update is one call of at most 10 s (the HTTP clients'
# timeout), tried again a second later (a Retry-After is left to the activity it falls back to); an event
# goes to each subscriber in turn, so its try is a single attempt: a retry would resend to every one.
LOCAL_TRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_attempts=2, non_retryable_error_types=[PERMANENT_FAILURE]
)
LOCAL_SINGLE_TRY = RetryPolicy(maximum_attempts=1)
LOCAL_TRY_TIMEOUT = timedelta(seconds=15)
# After acceptance, how often a dealer whose CRM is read (it sends no webhooks) is read for later statuses.
READ_AFTER_ACCEPTANCE = timedelta(hours=1)
# A read of a dealer's CRM that fails changes nothing: the next read decides. Except the read past the SLA
# deadline, which decides whether the lead is withdrawn: its CRM, briefly away or rate-limiting (a burst of
# deadlines after an outage), is asked again for this long before the lead moves on unread. (Options of
# the same activity: replays see the same commands.)
READ_AT_DEADLINE_WINDOW = timedelta(minutes=10)
READ_AT_DEADLINE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1)
)
# A run that ends so leaves the lead at no dealer.
UNHELD_STATUSES = (LeadStatus.FAILED.value, LeadStatus.UNROUTED.value, LeadStatus.SLA_EXHAUSTED.value)
# A lead the dealer lost or sold moves no further in its funnel: nothing more to read.
FINAL_DEALER_STATUSES = (LeadStatus.LOST.value, LeadStatus.SOLD.value)

LOCAL_STEP_TIMEOUT = timedelta(seconds=30)
# How long the hub keeps asking a dealer's CRM to drop a lead it lost, before recording it as pending.
WITHDRAWAL_WINDOW = timedelta(hours=1)
# ... and a dealer's CRM that never answered the create call, before the next dealer gets the lead.
UNANSWERED_WITHDRAWAL_WINDOW = timedelta(minutes=5)
# A delivery attempt heartbeats every 2 s: one silent this long is dead, and its retry may start.
DELIVERY_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# Ids of the events the hub publishes about a lead: the same lead and dealer give the same id in every
# run, so a subscriber drops the copy a redriven or resumed run sends (it dedupes on webhook-id).
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c56-4c1e-4a8e-9a55-3f3e1f0f5a21")


async def in_turn_or_together(first: Awaitable[None], second: Awaitable[None], *, together: bool) -> None:
    """Both steps: scheduled at once, or the second after the first (the order older runs recorded)."""
    if together:
        await asyncio.gather(first, second)
    else:
        await first
        await second


class Lane:
    """Steps run one after another beside a run's flow, which goes on without waiting for them.

    Steps handle their partner's failures themselves; one that raises is a bug, kept in ``failed`` with
    the steps after it: the run raises it (``check``), failing its workflow task as it would have failed
    in the flow, rather than end with those steps dropped."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], Awaitable[None]]] = []
        self._running: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None

    @property
    def idle(self) -> bool:
        return self._running is None and not self._steps

    def add(self, step: Callable[[], Awaitable[None]]) -> None:
        self._steps.append(step)
        if self._running is None and self.failed is None:
            self._running = asyncio.create_task(self._run())

    def check(self) -> None:
        if self.failed is not None:
            raise self.failed

    async def _run(self) -> None:
        try:
            while self._steps:
                await self._steps[0]()
                self._steps.pop(0)
        except BaseException as error:
            self.failed = error
        finally:
            self._running = None


@workflow.defn(name=LEAD_DISTRIBUTION_WORKFLOW)
class LeadDistributionWorkflow:
    def __init__(self) -> None:
        self._lead_id = ""
        self._status = LeadStatus.RECEIVED.value
        self._dealer_id: str | None = None
        self._attempts: list[DeliveryAttempt] = []
        self._dealer_gone = False  # the last delivery attempt found its dealer inactive (UNKNOWN_DEALER)
        self._awaiting_assignment = False
        self._assigned: str | None = None
        self._assigned_by = ""
        self._status_with_step = False
        self._parking = Parking()
        self._reports: list[DealerStatusReport] = []  # recorded by the API, to pass on
        self._passed_on: dict[str, tuple[datetime, int]] = {}  # per dealer: the newest report passed on
        # The last delivery's follow plan and its SLA deadline on Temporal's clock (deliver_lead's result).
        self._delivered_plan: tuple[FollowPlan, datetime | None] | None = None
        self._params: LeadDistributionInput | None = None
        self._exhausted: int | None = None  # the withdrawals of a lead found past its re-routing cap
        self._local_first = False  # LOCAL_FIRST_STEPS
        self._delivery_key = ""  # the idempotency key of the delivery the run follows
        # What Zoho and the subscribers are still to get, each in order (FEEDBACK_BESIDE_THE_FLOW).
        self._to_zoho, self._to_subscribers = Lane(), Lane()
        self._local_tries = 0  # of what Zoho and the subscribers get, under way in the workflow task

    @workflow.run
    async def run(self, params: LeadDistributionInput) -> LeadDistributionResult:
        self._lead_id = params.lead_id
        self._params = params
        try:
            result = await self._run(params)
        except FailureError as error:
            if not is_cancelled_exception(error):  # what went out before the run failed still goes
                await self._fed_back(None)
            raise
        # Where the lead is at no dealer now, Zoho keeps the outcome, and the subscribers hear.
        holder, write_zoho = self._dealer_id or "", self._status not in UNHELD_STATUSES
        await self._pass_on_left(holder, write_zoho=write_zoho)
        await self._fed_back(holder, write_zoho=write_zoho)
        return result

    def _woken(self, held_up: bool) -> bool:
        """Whether the wait for a dealer has work: a report, or a hand-on (or continue-as-new) ``held_up``
        until Zoho and the subscribers had the run's news, or a lane's bug to raise."""
        return self._lane_failed() or bool(self._reports) or (held_up and self._feedback_idle())

    def _lane_failed(self) -> bool:
        return self._to_zoho.failed is not None or self._to_subscribers.failed is not None

    def _feedback_idle(self) -> bool:
        """Whether both lanes are done; raises a lane's bug (conditions ask ``_lane_failed`` first)."""
        self._to_zoho.check()
        self._to_subscribers.check()
        return self._to_zoho.idle and self._to_subscribers.idle

    async def _clear_to_go_on(self) -> bool:
        """Whether the run may end its part here (hand on, continue as new): Zoho and the subscribers have
        its news and no report waits. Local tries end within the workflow task, so they are waited for;
        a partner's activity retrying (for hours, maybe) is not: the run goes on meanwhile."""
        if self._local_tries:
            await workflow.wait_condition(lambda: not self._local_tries or self._lane_failed())
        return self._feedback_idle() and not self._reports

    async def _fed_back(self, holder: str | None, *, write_zoho: bool = True) -> None:
        """Once Zoho and the subscribers have what the run sent them (or it was parked), with the reports
        that reached the run meanwhile passed on too (as ``_pass_on_left`` does): before it ends, which
        would drop what is still under way."""
        while not self._feedback_idle():
            await workflow.wait_condition(
                lambda: self._lane_failed() or self._feedback_idle() or bool(self._reports)
            )
            await self._pass_on_left(holder, write_zoho=write_zoho)

    async def _run(self, params: LeadDistributionInput) -> LeadDistributionResult:
        if params.following is not None:
            return await self._keep_following(params, params.following)
        self._status_with_step = workflow.patched(STATUS_WITH_STEP)
        decision_in_database = workflow.patched(DELIVERY_CLAIM)
        workflow.upsert_search_attributes([LEAD_ID.value_set(params.lead_id)])
        self._local_first = decision_in_database and workflow.patched(LOCAL_FIRST_STEPS)
        if params.reassign_to and workflow.patched(REASSIGN_ONLY_A_LEAD_IN_ZOHO):
            # Read before any status: a lead Zoho no longer has stays where it is, its status too.
            lead = await self._fetch_lead(park_refused=True)
            if lead is None:
                return await self._not_reassigned(params.reassign_to)
            await self._set_status(LeadStatus.RECEIVED, local=self._local_first)
        else:
            await self._set_status(LeadStatus.RECEIVED, local=self._local_first)
            # Runs that keep their decision in the database also park a lead Zoho refuses to serve.
            lead = await self._fetch_lead(park_refused=decision_in_database)
        if lead is None and self._reports:
            # A dealer's status after the lead left Zoho's Leads (converted to a contact and a deal):
            # the status is in the portal already; the subscribers still hear of it.
            await self._pass_on_reports(self._reports[0].dealer_id)
            return self._result()
        if lead is None:
            await self._set_status(LeadStatus.FAILED, detail=f"lead {params.lead_id} not found in Zoho")
            return self._result()
        if decision_in_database:
            return await self._distribute(lead, params)

        candidates = await self._route(lead)
        delivered = await self._deliver_to_first_accepting(candidates, lead, params, routed=True)
        deadline = workflow.now() + timedelta(seconds=params.assign_deadline_seconds)
        while delivered is None:
            dealer_id = await self._wait_for_assignment(deadline)
            if dealer_id is None:
                return await self._give_up()
            delivered = await self._deliver_to_first_accepting([dealer_id], lead, params, routed=False)

        dealer_id, dealer_lead_id = delivered
        await self._set_status(
            LeadStatus.DELIVERED,
            dealer_id=dealer_id,
            dealer_lead_id=dealer_lead_id,
            recorded=self._status_with_step,  # by deliver_lead
        )
        await self._feed_back_to_zoho({"Status_Distribuicao": "delivered", "Concessionaria_Id": dealer_id})
        await self._publish_distributed(dealer_id, dealer_lead_id)
        return self._result(dealer_lead_id)

    @workflow.update(name=ASSIGN_DEALER_UPDATE)
    async def assign_dealer(self, params: AssignDealerInput) -> AssignDealerResult:
        """Support's decision for a lead no dealer took: deliver it to this dealer."""
        found = await workflow.execute_activity_method(
            LeadActivities.lookup_dealer,
            DealerLookupInput(dealer_id=params.dealer_id),
            start_to_close_timeout=LOCAL_STEP_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        if not found.found:
            raise ApplicationError(f"no active dealer {params.dealer_id}", type=UNKNOWN_DEALER)
        if not self._awaiting_assignment:
            raise ApplicationError("the lead is no longer waiting for a dealer", type="NotAwaitingAssignment")
        workflow.logger.info("dealer %s assigned by %s", params.dealer_id, params.assigned_by or "unknown")
        self._assigned = params.dealer_id
        self._assigned_by = params.assigned_by
        self._awaiting_assignment = False
        return AssignDealerResult(dealer_id=params.dealer_id, dealer_name=found.name)

    @assign_dealer.validator
    def _validate_assign_dealer(self, params: AssignDealerInput) -> None:
        # Rejected updates leave no trace in history, so bad calls cost nothing.
        if not params.dealer_id.strip():
            raise ValueError("dealer_id is required")
        if params.assigned_by and not SUPPORT_LOGIN.fullmatch(params.assigned_by):
            # It is kept in the history and the warehouse: a login, never words about the customer.
            raise ValueError("assigned_by is a support login: letters, digits and . _ @ + - only, 64 at most")
        if not self._awaiting_assignment:
            raise ValueError(f"the lead is not waiting for a dealer (status {self._status})")

    @workflow.query(name=STATE_QUERY)
    def state(self) -> LeadDistributionResult:
        """Where the lead stands now."""
        return LeadDistributionResult(
            lead_id=self._lead_id,
            status=self._status,
            dealer_id=self._dealer_id,
            attempts=list(self._attempts),
        )

    async def _distribute(
        self, lead: dict[str, Any], params: LeadDistributionInput
    ) -> LeadDistributionResult:
        """Deliver the lead along its decision in the portal database, taking one where none exists.

        A decision found there was taken by an earlier run: this run resumes it (same dealer, same key),
        and a delivered one only gets its feedback steps again (idempotent). A dealer that does not take
        the lead releases its claim and the next is claimed; none left: support decides.

        Once delivered (runs with DEALER_SLA), the run follows the dealer: a dealer with an SLA that does
        not accept in time loses the lead, which goes to the next dealer it was never at, as a new claim.
        """
        if params.reassign_to:
            move = ReassignLeadInput(
                self._lead_id, params.reassign_to, params.reassign_reason, params.reassigned_by
            )
            try:
                claim = await self._decide(LeadActivities.reassign_lead, move)
            except ActivityError as error:
                if error_type(error) in (UNKNOWN_DEALER, DROP_OWED):  # refused: the lead is where it was
                    await self._pass_on_left(None)
                raise
            if claim.pending_withdrawals and workflow.patched(REASSIGN_WITHDRAWS_AT_PREVIOUS):
                for pending in claim.pending_withdrawals:  # (marked only where it acts)
                    # Not waited on long: the new dealer gets the lead once its CRM answered or after
                    # the window, the drop then "pending" where support sees it.
                    await self._withdraw_at_dealer(pending, window=UNANSWERED_WITHDRAWAL_WINDOW)
        elif workflow.patched(REROUTES_IN_DATABASE):
            capped = self._claim_input(lead, max_reroutes=params.max_reroutes)
            claim = await self._decide(LeadActivities.claim_lead, capped, local=self._local_first)
            if workflow.info().continued_run_id is None:  # a run continued as new: its own run tried them
                # Where the lead is at its dealer already (a run a report started, say), the drops
                # owed elsewhere gate nothing: its statuses wait for them only briefly.
                window = UNANSWERED_WITHDRAWAL_WINDOW if claim.delivered else WITHDRAWAL_WINDOW
                for pending in claim.pending_withdrawals:
                    await self._withdraw_at_dealer(pending, window=window)
            if claim.exhausted:
                # Below the cap, an earlier run gave the lead to its fallback owner (no dealer left).
                past_cap = claim.withdrawals > params.max_reroutes
                why = (
                    f"{claim.withdrawals} dealers missed their SLA"
                    if past_cap
                    else "at its fallback owner already"
                )
                return await self._sla_exhausted(params, why)
        else:
            claim = await self._decide(LeadActivities.claim_lead, self._claim_input(lead))
        following = workflow.patched(DEALER_SLA)
        return await self._deliver_and_follow(claim, lead, params, following=following, rerouted=False)

    async def _deliver_and_follow(
        self,
        claim: ClaimLeadResult,
        lead: dict[str, Any],
        params: LeadDistributionInput,
        *,
        following: bool,
        rerouted: bool,
    ) -> LeadDistributionResult:
        """Deliver along the claim, then follow the dealer; one that misses its SLA loses the lead to
        the next dealer it was never at, as a new claim (``rerouted``: an earlier one already lost it)."""
        deadline = workflow.now() + timedelta(seconds=params.assign_deadline_seconds)
        while True:
            delivered = await self._until_delivered(claim, lead, params, deadline, rerouted=rerouted)
            if delivered is None and self._exhausted is not None:  # (runs reset past their cap only)
                return await self._sla_exhausted(params, f"{self._exhausted} dealers missed their SLA")
            if delivered is None and rerouted:
                return await self._sla_exhausted(params, "no dealer that was tried took the lead")
            if delivered is None:
                return await self._give_up()
            claim = delivered
            dealer_id, dealer_lead_id = str(claim.dealer_id), claim.dealer_lead_id or ""
            self._delivery_key = claim.idempotency_key
            # Recorded with the delivery, in the transaction that marked the decision delivered.
            await self._set_status(
                LeadStatus.DELIVERED, dealer_id=dealer_id, dealer_lead_id=dealer_lead_id, recorded=True
            )
            # Runs that hand the wait on tell Zoho and the subscribers at once, and follow the plan the
            # delivery returned; earlier ones told them in turn and read the plan again.
            own_runs = following and claim.followed and workflow.patched(FOLLOW_IN_OWN_RUN)
            local = workflow.patched(PASS_ON_LOCALLY)
            await in_turn_or_together(
                self._feed_back_to_zoho(
                    {"Status_Distribuicao": "delivered", "Concessionaria_Id": dealer_id}, local=local
                ),
                self._publish_distributed(dealer_id, dealer_lead_id, stable_id=True, local=local),
                together=own_runs or local,
            )
            if not following:
                return self._result(dealer_lead_id)
            planned = self._delivered_plan if own_runs else None
            stored = claim.dealer_status and not claim.followed
            if stored and workflow.patched(PASS_ON_STORED_STATUS_UNFOLLOWED):  # (marked only where it acts)
                report = DealerStatusReport(dealer_id, claim.dealer_status, claim.dealer_status_at)
                self._reports.insert(0, report)  # a signalled copy of it is then skipped as not newer
            lost = await self._follow(
                dealer_id, dealer_lead_id, followed=claim.followed, own_run=False, planned=planned
            )
            if lost is None:
                return self._result(dealer_lead_id)
            if lost.withdrawals > params.max_reroutes:
                return await self._sla_exhausted(params, f"{lost.withdrawals} dealers missed their SLA")
            if workflow.info().is_continue_as_new_suggested():
                await self._pass_on_left("", write_zoho=False)  # (the withdrawal took a while)
                if await self._clear_to_go_on():  # else the run re-routes itself, a partner away
                    self._continue_as_new()
            rerouted = True
            claim = await self._decide(LeadActivities.claim_lead, self._claim_input(lead))
            if claim.dealer_id is None:
                return await self._sla_exhausted(params, "no dealer left to take the lead")

    async def _until_delivered(
        self,
        claim: ClaimLeadResult,
        lead: dict[str, Any],
        params: LeadDistributionInput,
        deadline: datetime,
        *,
        rerouted: bool = False,
    ) -> ClaimLeadResult | None:
        """Deliver along the claim: a dealer that does not take the lead releases it and the next is
        claimed; none left, support decides until ``deadline`` (``rerouted``: the fallback owner takes
        it at once instead). None: nobody took it."""
        self._delivered_plan = None
        while not claim.delivered:
            if claim.dealer_id is None:
                if rerouted and workflow.patched(FALLBACK_WHEN_REROUTE_NOT_TAKEN):  # (marked where it acts)
                    return None
                dealer_id = await self._wait_for_assignment(deadline)
                if dealer_id is None:
                    return None
                assigned = AssignLeadInput(self._lead_id, dealer_id, assigned_by=self._assigned_by)
                claim = await self._decide(LeadActivities.assign_lead, assigned)
                continue
            await self._set_status(LeadStatus.ROUTED, dealer_id=claim.dealer_id, recorded=True)
            delivered = await self._deliver(
                str(claim.dealer_id),
                lead,
                params,
                record_delivered=True,
                idempotency_key=claim.idempotency_key,
                heartbeat_timeout=min(
                    DELIVERY_HEARTBEAT_TIMEOUT, timedelta(seconds=params.delivery_attempt_timeout_seconds)
                ),
            )
            if delivered is not None:
                claim.delivered, claim.dealer_lead_id = True, delivered.dealer_lead_id
                claim.followed = delivered.followed
                if delivered.plan is not None:
                    self._delivered_plan = (delivered.plan, _sla_wait_until(delivered.plan))
            elif self._attempts[-1].outcome == MOVED_ON:
                # A run reset to before a delivery the lead has since left: go on where the lead is (its
                # claim), or claim where it may go, its re-routing cap counted; nothing is released.
                capped = self._claim_input(lead, max_reroutes=params.max_reroutes)
                claim = await self._decide(LeadActivities.claim_lead, capped)
                if claim.exhausted:
                    self._exhausted = claim.withdrawals
                    return None
            else:
                unanswered = self._attempts[-1].outcome == "unavailable" and workflow.patched(
                    UNANSWERED_RELEASE
                )
                if self._dealer_gone and workflow.patched(RELEASE_INACTIVE_DEALER_OWING_DROP):
                    unanswered = True  # (marked only where it acts)
                released = self._claim_input(lead, release=claim.dealer_id)
                released.release_unanswered = unanswered
                claim = await self._decide(LeadActivities.claim_lead, released)
                for pending in claim.pending_withdrawals:  # (asked for only with release_unanswered)
                    # A CRM away for the whole retry window is likely away still: the lead does not
                    # wait long for it, and the release stays "pending" where support sees it.
                    await self._withdraw_at_dealer(pending, window=UNANSWERED_WITHDRAWAL_WINDOW)
        return claim

    @workflow.signal(name=DEALER_STATUS_SIGNAL)
    def dealer_status(self, report: DealerStatusReport) -> None:
        """A status the dealer reported, already recorded in the portal database: pass it on."""
        self._reports.append(report)

    async def _follow(
        self,
        dealer_id: str,
        dealer_lead_id: str,
        *,
        followed: bool,
        own_run: bool,
        planned: tuple[FollowPlan, datetime | None] | None = None,
    ) -> WithdrawLeadResult | None:
        """Follow the lead at its dealer until it accepts (None: it keeps the lead) or its SLA passes
        (the withdrawal). Statuses the dealer reports go on to Zoho and the subscribers as they come.

        A dealer without an SLA or a status read is not followed: reports already in are passed on."""
        if not followed:
            await self._pass_on_reports(dealer_id)
            return None
        if planned is not None:
            plan, wait_until = planned
        else:
            plan = await self._follow_plan(dealer_id)
            wait_until = _sla_wait_until(plan)
            reported = plan.dealer_status in DEALER_STATUSES and plan.dealer_status_at
            if reported and workflow.patched(PASS_ON_STORED_STATUS):  # (marked only where it acts)
                stored = DealerStatusReport(dealer_id, str(plan.dealer_status), plan.dealer_status_at)
                self._reports.insert(0, stored)  # a signalled copy of it is then skipped as not newer
        assert self._params is not None
        read_until = workflow.now() + timedelta(days=self._params.follow_days)
        return await self._wait_for_dealer(
            dealer_id, dealer_lead_id, plan, wait_until, read_until, own_run=own_run
        )

    async def _wait_for_dealer(
        self,
        dealer_id: str,
        dealer_lead_id: str,
        plan: FollowPlan,
        sla_deadline: datetime | None,
        read_until: datetime,
        *,
        own_run: bool,
    ) -> WithdrawLeadResult | None:
        """Wait for the dealer's statuses until it accepts or ``sla_deadline`` (Temporal's clock) passes;
        a dealer whose CRM is read is read on after acceptance, hourly, until the lead is lost or sold or
        ``read_until`` passes. ``own_run``: this run only waits (the run that delivered handed it on)."""
        status = plan.dealer_status
        poll = timedelta(seconds=plan.poll_seconds) if plan.poll_seconds else None
        read_past_deadline = False  # the dealer's CRM was read once the SLA had passed
        held_up = False  # a hand-on or continue-as-new waits for Zoho and the subscribers
        while True:
            status = await self._pass_on_reports(dealer_id, together=own_run) or status
            if not plan.holds or sla_deadline is None or status in FINAL_DEALER_STATUSES:
                return None
            now = workflow.now()
            if status in DEALER_STATUSES:  # accepted: the SLA is met
                # Runs before FOLLOW_IN_OWN_RUN ended here; now a dealer that only answers reads is read on.
                if poll is None or now >= read_until or not (own_run or workflow.patched(FOLLOW_IN_OWN_RUN)):
                    return None
                wake = min(read_until, now + max(poll, READ_AFTER_ACCEPTANCE))
            elif now >= sla_deadline:
                # Marked only where it acts: a run whose timer fired read the dealer at the deadline.
                if poll and not read_past_deadline and workflow.patched(READ_WHEN_RESUMED_PAST_DEADLINE):
                    read_past_deadline = True
                    await self._poll_status(dealer_id, dealer_lead_id, deciding=True)
                    continue
                withdrawal = await self._withdraw(dealer_id, plan.sla_deadline)
                if withdrawal.withdrawn:
                    return withdrawal
                if withdrawal.dealer_status is None:  # the lead is no longer at this dealer
                    return None
                status = withdrawal.dealer_status  # the acceptance committed first: the dealer keeps it
                continue
            else:
                wake = min(sla_deadline, now + poll) if poll else sla_deadline
            # Each hand-on or continue-as-new waits until Zoho and the subscribers have the run's news
            # and no report waits: meanwhile (a partner away) the wait goes on here.
            if own_run and workflow.info().is_continue_as_new_suggested():
                if await self._clear_to_go_on():  # (long reads after acceptance)
                    self._hand_on(dealer_id, dealer_lead_id, plan, status, sla_deadline, read_until)
                held_up = True
            if not own_run and workflow.patched(FOLLOW_IN_OWN_RUN):
                if await self._clear_to_go_on():
                    self._hand_on(dealer_id, dealer_lead_id, plan, status, sla_deadline, read_until)
                held_up = True
            if workflow.info().is_continue_as_new_suggested():
                if await self._clear_to_go_on():
                    self._continue_as_new()  # long waits with frequent status reads
                held_up = True
            accepted = status in DEALER_STATUSES
            if not accepted and self._status != AWAITING_ACCEPTANCE:
                self._set_search_status(AWAITING_ACCEPTANCE)
            elif accepted and self._status != status:  # reads on (runs of their own only reach this)
                self._set_search_status(str(status))
            try:
                await workflow.wait_condition(partial(self._woken, held_up), timeout=wake - now)
            except TimeoutError:
                # At the deadline too (since the patch): an acceptance after the last read keeps the lead.
                if poll and (accepted or wake < sla_deadline or workflow.patched(READ_BEFORE_WITHDRAWAL)):
                    deciding = not accepted and wake >= sla_deadline
                    await self._poll_status(dealer_id, dealer_lead_id, deciding=deciding)
                    read_past_deadline = workflow.now() >= sla_deadline

    async def _follow_plan(self, dealer_id: str) -> FollowPlan:
        plan: FollowPlan = await workflow.execute_activity_method(
            LeadActivities.follow_plan,
            FollowPlanInput(self._lead_id, dealer_id),
            start_to_close_timeout=LOCAL_STEP_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        return plan

    async def _poll_status(self, dealer_id: str, dealer_lead_id: str, *, deciding: bool = False) -> None:
        """Ask the dealer's CRM; a status newer than the hub's is passed on as a report would be.
        ``deciding``: the read past the SLA deadline, asked again for ``READ_AT_DEADLINE_WINDOW``."""
        try:
            polled = await workflow.execute_activity_method(
                LeadActivities.poll_dealer_status,
                PollStatusInput(self._lead_id, dealer_id, dealer_lead_id),
                start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                schedule_to_close_timeout=READ_AT_DEADLINE_WINDOW if deciding else None,
                retry_policy=READ_AT_DEADLINE_RETRY if deciding else RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as error:  # the next poll, or the SLA, decides: a failed read changes nothing
            workflow.logger.warning("status of the lead at %s not read: %s", dealer_id, error.cause or error)
            return
        if polled.applied and polled.status:
            self._reports.append(DealerStatusReport(dealer_id, polled.status, polled.at))

    async def _pass_on_left(self, dealer_id: str | None, *, write_zoho: bool = True) -> None:
        """The reports that reached the run and are not passed on yet, as it ends or continues as new
        (``dealer_id`` None: the run cannot tell which dealer holds the lead). Zoho's write checks the
        database for each: the dealer may have lost the lead since."""
        if self._reports and workflow.patched(REPORTS_PASSED_ON_AT_EVERY_END):  # (marked where it acts)
            await self._pass_on_reports(dealer_id, write_zoho=write_zoho, check_zoho=True)

    async def _pass_on_reports(
        self,
        holder: str | None,
        *,
        together: bool = False,
        write_zoho: bool = True,
        check_zoho: bool = False,
    ) -> str | None:
        """Pass each pending report on (Zoho's Lead_Status, a signed event); the newest status of the
        dealer that holds the lead (``holder``; None: each report's own dealer), if any.
        ``together``: both at once (runs that only wait do; earlier runs did one after the other).
        ``write_zoho=False``: the event only (Zoho no longer has the lead). ``check_zoho``: Zoho's
        write checks the database for every report."""
        newest = None
        while self._reports:
            report = self._reports.pop(0)
            dealer_id = report.dealer_id if holder is None else holder
            # A run that passed nothing on from this dealer yet (a run a report started, say) cannot tell
            # whether a newer report went on before it: Zoho's write checks the database then.
            unknown_before = check_zoho or report.dealer_id not in self._passed_on
            if report.status not in DEALER_STATUSES or not self._is_newest(report):
                continue  # two reports signalled at once may arrive swapped: Zoho keeps the newer
            newest = report.status if report.dealer_id == dealer_id else newest
            local = workflow.patched(PASS_ON_LOCALLY)
            name = f"{LEAD_EVENT_STATUS_UPDATED}:{self._lead_id}:{report.dealer_id}:{report.status}"
            name += self._delivery_named(report.dealer_id)
            data = {"lead_id": self._lead_id, "dealer_id": report.dealer_id, "status": report.status}
            event = self._publish(LEAD_EVENT_STATUS_UPDATED, name, {**data, "at": report.at}, local=local)
            # The subscribers only: where Zoho no longer has the lead, or where the dealer reported before
            # support moved the lead away from it and the report reached this run after the move (the
            # lead's status in Zoho and the Web UI stays the one of the dealer that holds it).
            if not write_zoho or (local and report.dealer_id != dealer_id):
                await event
                continue
            self._set_search_status(report.status)
            zoho_status = ZOHO_LEAD_STATUS[LeadStatus(report.status)]
            checked = report if unknown_before else None
            to_zoho = self._feed_back_to_zoho({"Lead_Status": zoho_status}, local=local, report=checked)
            await in_turn_or_together(to_zoho, event, together=together or local)
        return newest

    def _hand_on(
        self,
        dealer_id: str,
        dealer_lead_id: str,
        plan: FollowPlan,
        status: str | None,
        sla_deadline: datetime,
        read_until: datetime,
    ) -> None:
        """Go on waiting for the dealer in a new run that starts from the lead's place (no return)."""
        assert self._params is not None
        following = Following(
            dealer_id=dealer_id,
            dealer_lead_id=dealer_lead_id,
            sla_deadline=plan.sla_deadline,
            wait_until=sla_deadline.isoformat(),
            poll_seconds=plan.poll_seconds,
            dealer_status=status,
            read_until=read_until.isoformat(),
            attempts=list(self._attempts),
            passed_on=[PassedOn(d, at.isoformat(), rank) for d, (at, rank) in self._passed_on.items()],
            delivery_key=self._delivery_key,
        )
        workflow.continue_as_new(
            dataclasses.replace(self._params, reassign_to=None, event={}, following=following)
        )

    async def _keep_following(
        self, params: LeadDistributionInput, following: Following
    ) -> LeadDistributionResult:
        """A run handed a delivered lead: wait for its dealer; one that misses its SLA loses the lead
        to the next dealer, with the lead read from Zoho again for that delivery."""
        self._status_with_step = True  # only runs of this code hand a lead on
        self._dealer_id, self._attempts = following.dealer_id, list(following.attempts)
        self._delivery_key = following.delivery_key
        self._passed_on = {p.dealer_id: (datetime.fromisoformat(p.at), p.rank) for p in following.passed_on}
        # The Web UI's status until the wait shows it awaits acceptance, or the dealer's newest.
        self._status = following.dealer_status or LeadStatus.DELIVERED.value
        plan = FollowPlan(
            holds=True,
            sla_deadline=following.sla_deadline,
            poll_seconds=following.poll_seconds,
            dealer_status=following.dealer_status,
        )
        lost = await self._wait_for_dealer(
            following.dealer_id,
            following.dealer_lead_id,
            plan,
            datetime.fromisoformat(following.wait_until),
            # Empty: handed on without reads after acceptance (nothing to read on for).
            datetime.fromisoformat(following.read_until) if following.read_until else workflow.now(),
            own_run=True,
        )
        if lost is None:
            return self._result(following.dealer_lead_id)
        if lost.withdrawals > params.max_reroutes:
            return await self._sla_exhausted(params, f"{lost.withdrawals} dealers missed their SLA")
        lead = await self._fetch_lead(park_refused=True)
        if lead is None:
            return await self._sla_exhausted(params, "the lead is no longer in Zoho's Leads")
        claim = await self._decide(LeadActivities.claim_lead, self._claim_input(lead))
        if claim.dealer_id is None:
            return await self._sla_exhausted(params, "no dealer left to take the lead")
        return await self._deliver_and_follow(claim, lead, params, following=True, rerouted=True)

    def _continue_as_new(self) -> None:
        """Go on in a new run with a short history: it resumes the lead from the database (a support
        reassignment already applied is not applied again)."""
        assert self._params is not None
        workflow.continue_as_new(
            dataclasses.replace(self._params, reassign_to=None, event={}, following=None)
        )

    def _is_newest(self, report: DealerStatusReport) -> bool:
        """Whether the report is newer (by the dealer's time, then the funnel) than the last passed on."""
        key = (datetime.fromisoformat(report.at), DEALER_STATUSES.index(LeadStatus(report.status)))
        last = self._passed_on.get(report.dealer_id)
        if last is not None and key <= last:
            return False
        self._passed_on[report.dealer_id] = key
        return True

    async def _withdraw(self, dealer_id: str, sla_deadline: str) -> WithdrawLeadResult:
        """Take the lead from a dealer that missed its SLA, then ask its CRM to drop it (recorded)."""
        reason = f"SLA to accept passed at {sla_deadline} without acceptance"
        decision: WithdrawLeadResult = await workflow.execute_activity_method(
            LeadActivities.withdraw_lead,
            WithdrawLeadInput(self._lead_id, dealer_id, reason),
            start_to_close_timeout=LOCAL_STEP_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        if not decision.withdrawn:
            return decision
        self._attempts.append(DeliveryAttempt(dealer_id, "withdrawn", reason))
        self._set_search_status(LeadStatus.WITHDRAWN.value)
        await self._withdraw_at_dealer(
            WithdrawAtDealerInput(self._lead_id, dealer_id, decision.idempotency_key, decision.dealer_lead_id)
        )
        return decision

    async def _withdraw_at_dealer(
        self, withdrawal: WithdrawAtDealerInput, window: timedelta = WITHDRAWAL_WINDOW
    ) -> None:
        """Ask the CRM of a dealer that lost the lead to drop it, for at most ``window``; what it answered
        is recorded."""
        try:
            await workflow.execute_activity_method(
                LeadActivities.withdraw_at_dealer,
                withdrawal,
                start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                schedule_to_close_timeout=window,
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(minutes=5), non_retryable_error_types=[PERMANENT_FAILURE]
                ),
            )
        except ActivityError as error:
            # The decision stands (the lead moves on); the withdrawal stays "pending" where support sees it.
            dealer_id = withdrawal.dealer_id
            workflow.logger.error("dealer %s did not drop the lead: %s", dealer_id, error.cause or error)

    async def _sla_exhausted(self, params: LeadDistributionInput, why: str) -> LeadDistributionResult:
        """No dealer accepted in time: the fallback owner in Zoho gets the lead, and support is alerted."""
        owner = params.fallback_owner_id
        await self._set_status(
            LeadStatus.SLA_EXHAUSTED,
            detail=f"{why}; handed to {'Zoho owner ' + owner if owner else 'its Zoho owner'}",
        )
        fields: dict[str, Any] = {"Status_Distribuicao": LeadStatus.SLA_EXHAUSTED.value}
        if owner:
            fields[ZOHO_OWNER_FIELD] = {"id": owner}
        await self._feed_back_to_zoho(fields)
        return self._result()

    def _claim_input(
        self, lead: dict[str, Any], release: str | None = None, max_reroutes: int | None = None
    ) -> ClaimLeadInput:
        return ClaimLeadInput(
            lead_id=self._lead_id,
            state=str(lead.get("State") or ""),
            city=str(lead.get("City") or ""),
            model=str(lead.get("Modelo_de_Interesse") or ""),
            release_dealer_id=release,
            exclude=sorted({attempt.dealer_id for attempt in self._attempts}),
            max_reroutes=max_reroutes,
        )

    async def _decide(self, step: Any, params: Any, *, local: bool = False) -> ClaimLeadResult:
        """Run one of the steps that read or take the lead's delivery decision (claim, assign, reassign);
        ``local``: tried in a local activity first (``_tried_locally``)."""
        done, claim = await self._tried_locally(step, params) if local else (False, None)
        if not done:
            claim = await workflow.execute_activity_method(
                step,
                params,
                start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                retry_policy=RetryPolicy(
                    maximum_interval=DATABASE_RETRY.maximum_interval,
                    non_retryable_error_types=[UNKNOWN_DEALER],
                ),
            )
        assert isinstance(claim, ClaimLeadResult)
        if claim.resumed and claim.dealer_id:
            workflow.logger.info("lead resumes its delivery decision: dealer %s", claim.dealer_id)
        return claim

    async def _deliver(
        self,
        dealer_id: str,
        lead: dict[str, Any],
        params: LeadDistributionInput,
        *,
        record_delivered: bool,
        idempotency_key: str = "",
        heartbeat_timeout: timedelta | None = None,
    ) -> DeliverLeadResult | None:
        """The dealer's id of the lead once its CRM has it; None when the dealer did not take it."""
        try:
            result = await workflow.execute_activity_method(
                LeadActivities.deliver_lead,
                DeliverLeadInput(
                    lead_id=self._lead_id,
                    dealer_id=dealer_id,
                    lead=lead,
                    record_delivered=record_delivered,
                    idempotency_key=idempotency_key,
                ),
                start_to_close_timeout=timedelta(seconds=params.delivery_attempt_timeout_seconds),
                schedule_to_close_timeout=timedelta(seconds=params.delivery_retry_window_seconds),
                heartbeat_timeout=heartbeat_timeout,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(minutes=5),
                    non_retryable_error_types=[DEALER_REJECTED, UNKNOWN_DEALER],
                ),
            )
        except ActivityError as error:
            kind = error_type(error)
            rejected = kind in (DEALER_REJECTED, UNKNOWN_DEALER)
            self._dealer_gone = kind == UNKNOWN_DEALER and _after_earlier_attempts(error)
            outcome = MOVED_ON if kind == LEAD_MOVED_ON else "rejected" if rejected else "unavailable"
            detail = str(error.cause or error)
            self._attempts.append(DeliveryAttempt(dealer_id, outcome, detail))
            workflow.logger.warning("dealer %s did not take the lead: %s", dealer_id, detail)
            return None
        self._attempts.append(DeliveryAttempt(dealer_id, "delivered"))
        return result

    @workflow.signal(name=REDRIVE_PARKED_SIGNAL)
    def redrive_parked(self) -> None:
        """Support fixed what Zoho refused (its credentials, say): read the lead again."""
        self._parking.redrive()

    async def _fetch_lead(self, *, park_refused: bool) -> dict[str, Any] | None:
        """The lead from Zoho; None when Zoho does not know it. A read Zoho refuses for good (bad
        credentials, ...) is parked until support redrives it, never taken for "not found"."""
        # Tried locally once: a lead Zoho does not know, or a read it refuses, is then read as an activity,
        # which tells them apart as before (and parks a refusal where the Web UI shows it).
        if self._local_first:
            done, read = await self._tried_locally(LeadActivities.fetch_lead, FetchLeadInput(self._lead_id))
            if done:
                return read.lead  # type: ignore[no-any-return]
        while True:
            try:
                fetched = await workflow.execute_activity_method(
                    LeadActivities.fetch_lead,
                    FetchLeadInput(lead_id=self._lead_id),
                    start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                    retry_policy=RetryPolicy(
                        maximum_interval=timedelta(minutes=5),
                        non_retryable_error_types=[LEAD_NOT_FOUND, PERMANENT_FAILURE],
                    ),
                )
                return fetched.lead
            except ActivityError as error:
                kind = error_type(error)
                if kind == LEAD_NOT_FOUND or (kind == PERMANENT_FAILURE and not park_refused):
                    return None
                if kind != PERMANENT_FAILURE:
                    raise
                await self._parking.hold("zoho", f"Zoho refused the read of the lead: {error.cause}")

    async def _route(self, lead: dict[str, Any]) -> list[str]:
        routed = await workflow.execute_activity_method(
            LeadActivities.route_lead,
            RouteLeadInput(
                lead_id=self._lead_id,
                state=str(lead.get("State") or ""),
                city=str(lead.get("City") or ""),
                model=str(lead.get("Modelo_de_Interesse") or ""),
                record_routed=self._status_with_step,
            ),
            start_to_close_timeout=LOCAL_STEP_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        return routed.dealer_ids

    async def _deliver_to_first_accepting(
        self, dealer_ids: list[str], lead: dict[str, Any], params: LeadDistributionInput, *, routed: bool
    ) -> tuple[str, str] | None:
        """Runs from before the delivery-decision patch: each candidate in turn, the decision in the run.

        ``routed``: the candidates come from routing, which claimed (and recorded) the first.
        """
        for index, dealer_id in enumerate(dealer_ids):
            await self._set_status(
                LeadStatus.ROUTED,
                dealer_id=dealer_id,
                claim_dealer=index > 0,
                recorded=routed and index == 0 and self._status_with_step,
            )
            delivered = await self._deliver(dealer_id, lead, params, record_delivered=self._status_with_step)
            if delivered is not None:
                return dealer_id, delivered.dealer_lead_id
        return None

    async def _wait_for_assignment(self, deadline: datetime) -> str | None:
        remaining = deadline - workflow.now()
        if remaining <= timedelta(0):
            return None
        self._awaiting_assignment = True
        await self._set_status(
            LeadStatus.RECEIVED,
            detail=f"awaiting assign_dealer until {deadline.isoformat()} ({self._attempts_summary()})",
            search_status=AWAITING_ASSIGNMENT,
        )
        try:
            await workflow.wait_condition(lambda: self._assigned is not None, timeout=remaining)
        except TimeoutError:
            self._awaiting_assignment = False
            return None
        dealer_id, self._assigned = self._assigned, None
        return dealer_id

    async def _give_up(self) -> LeadDistributionResult:
        # "failed": a dealer was chosen but could not be reached; "unrouted": nobody would take it.
        unreachable = bool(self._attempts) and self._attempts[-1].outcome == "unavailable"
        status = LeadStatus.FAILED if unreachable else LeadStatus.UNROUTED
        await self._set_status(status, detail=f"assignment deadline passed ({self._attempts_summary()})")
        await self._feed_back_to_zoho({"Status_Distribuicao": status.value})
        return self._result()

    async def _feed_back_to_zoho(
        self, fields: dict[str, Any], *, local: bool = False, report: DealerStatusReport | None = None
    ) -> None:
        """``local``: tried in a local activity first (``_done_locally``). ``report``: the dealer's report
        the fields pass on, left out where a newer one stands in the database."""
        zoho_lead = UpdateZohoLeadInput(lead_id=self._lead_id, fields=fields)
        if report is not None:
            zoho_lead.report_dealer_id, zoho_lead.report_status = report.dealer_id, report.status
            zoho_lead.reported_at = report.at
        if workflow.patched(FEEDBACK_BESIDE_THE_FLOW):
            self._to_zoho.add(lambda: self._write_to_zoho(zoho_lead, local=local))
        else:
            await self._write_to_zoho(zoho_lead, local=local)

    async def _write_to_zoho(self, zoho_lead: UpdateZohoLeadInput, *, local: bool) -> None:
        try:
            failed = f"Zoho lead {self._lead_id} not updated"
            if local and await self._done_locally(LeadActivities.update_zoho_lead, zoho_lead, failed):
                return
            await workflow.execute_activity_method(
                LeadActivities.update_zoho_lead,
                zoho_lead,
                start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                schedule_to_close_timeout=timedelta(hours=6),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(minutes=5), non_retryable_error_types=[PERMANENT_FAILURE]
                ),
            )
        except ActivityError as error:
            # The delivery stands; a Zoho write-back that cannot be made is recorded, not fatal.
            workflow.logger.error("Zoho lead %s not updated: %s", self._lead_id, error.cause or error)

    async def _done_locally(self, step: Any, arg: Any, failed: str, retry: RetryPolicy = LOCAL_TRY) -> bool:
        """Try a step in a local activity: the worker runs it within the workflow task, with no activity
        task through the server. False when it failed: the caller runs it as an activity then, which the
        Web UI shows with its attempts and last failure while a partner is away (a local activity's
        retries show nowhere), and which ``hub leads reassign`` waits for. A permanent failure is logged
        as ``failed`` and ends the step."""
        self._local_tries += 1
        try:
            await workflow.execute_local_activity_method(
                step, arg, start_to_close_timeout=LOCAL_TRY_TIMEOUT, retry_policy=retry
            )
        except FailureError as error:  # a local activity's failure comes as its own error, not wrapped
            cause = failure_cause(error)
            if isinstance(cause, CancelledError):
                return True  # the run is being cancelled: start nothing new
            if error_type(error) == PERMANENT_FAILURE:
                workflow.logger.error("%s: %s", failed, cause)
                return True
            workflow.logger.warning(
                "%s failed in the worker, retried as an activity: %s", step.__name__, cause
            )
            return False
        finally:
            self._local_tries -= 1
        return True

    async def _tried_locally(self, step: Any, arg: Any) -> tuple[bool, Any]:
        """``(True, result)`` from a step run once in a local activity; ``(False, None)`` when it failed
        there, for the caller to run it as an activity, which retries it (honouring a ``Retry-After``) and
        handles its errors as it always did. The try has the activity's own time (its waits for the
        database's pool and Zoho's token fit in it). The steps tried so are the portal's records and reads
        of Zoho: each is idempotent, so a try cut off by a lost worker or a timeout is safe to make again."""
        try:
            result = await workflow.execute_local_activity_method(
                step, arg, start_to_close_timeout=LOCAL_STEP_TIMEOUT, retry_policy=LOCAL_SINGLE_TRY
            )
        except FailureError as error:  # a local activity's failure comes as its own error, not wrapped
            cause = failure_cause(error)
            if isinstance(cause, CancelledError):
                raise  # the run is being cancelled: as an activity's cancellation would
            workflow.logger.warning("%s failed in the worker, run as an activity: %s", step.__name__, cause)
            return False, None
        return True, result

    def _delivery_named(self, dealer_id: str) -> str:
        """What an event's id adds for the delivery it is about: its key where the run follows a delivery
        to ``dealer_id`` the lead was sent back to (a first delivery's ids stay as they always were)."""
        first = lead_delivery_key(self._lead_id, dealer_id)
        again = dealer_id == self._dealer_id and self._delivery_key not in ("", first)
        if again and workflow.patched(EVENT_ID_PER_DELIVERY):  # (marked where it acts)
            return f":{self._delivery_key}"
        return ""

    async def _publish_distributed(
        self, dealer_id: str, dealer_lead_id: str, *, stable_id: bool = False, local: bool = False
    ) -> None:
        # Runs before the delivery-decision patch drew a random id; later ones derive it (EVENT_ID_NAMESPACE).
        name = f"{LEAD_EVENT_DISTRIBUTED}:{self._lead_id}:{dealer_id}" if stable_id else None
        if name:
            name += self._delivery_named(dealer_id)
        data = {"lead_id": self._lead_id, "dealer_id": dealer_id, "dealer_lead_id": dealer_lead_id}
        await self._publish(LEAD_EVENT_DISTRIBUTED, name, data, local=local)

    async def _publish(
        self, event_type: str, stable_name: str | None, data: dict[str, Any], *, local: bool = False
    ) -> None:
        """Publish a signed event about the lead; ``stable_name`` gives it the same id in every run.
        ``local``: tried in a local activity first, which keeps no heartbeat of the subscribers already
        served: the activity after a failed try sends to every one again (they drop a copy by its id)."""
        event_id = uuid.uuid5(EVENT_ID_NAMESPACE, stable_name) if stable_name else workflow.uuid4()
        event = cloud_event(
            event_id=str(event_id),
            event_type=event_type,
            source=EVENT_SOURCE,
            subject=self._lead_id,
            time=workflow.now(),
            data=data,
        )
        published = PublishEventInput(event=event)
        if workflow.patched(FEEDBACK_BESIDE_THE_FLOW):
            self._to_subscribers.add(lambda: self._send_event(published, local=local))
        else:
            await self._send_event(published, local=local)

    async def _send_event(self, published: PublishEventInput, *, local: bool) -> None:
        event = published.event
        try:
            failed = f"event {event['id']} not published"
            step = LeadActivities.publish_event
            if local and await self._done_locally(step, published, failed, LOCAL_SINGLE_TRY):
                return
            await workflow.execute_activity_method(
                LeadActivities.publish_event,
                published,
                start_to_close_timeout=LOCAL_STEP_TIMEOUT,
                schedule_to_close_timeout=timedelta(hours=24),
                heartbeat_timeout=LOCAL_STEP_TIMEOUT,
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(minutes=10), non_retryable_error_types=[PERMANENT_FAILURE]
                ),
            )
        except ActivityError as error:
            workflow.logger.error("event %s not published: %s", event["id"], error.cause or error)

    async def _set_status(
        self,
        status: LeadStatus,
        *,
        dealer_id: str | None = None,
        dealer_lead_id: str | None = None,
        detail: str | None = None,
        claim_dealer: bool = False,
        search_status: str | None = None,
        recorded: bool = False,
        local: bool = False,
    ) -> None:
        """Show the status in the Web UI and record it in the portal (unless an activity ``recorded`` it);
        ``local``: the record tried in a local activity first (``_tried_locally``)."""
        self._status = search_status or status.value
        if dealer_id is not None:
            self._dealer_id = dealer_id
        pairs: list[SearchAttributeUpdate[Any]] = [LEAD_STATUS.value_set(self._status)]
        if self._dealer_id:
            pairs.append(DEALER_ID.value_set(self._dealer_id))
        workflow.upsert_search_attributes(pairs)
        if recorded:
            return
        record = RecordStatusInput(
            lead_id=self._lead_id,
            workflow_id=workflow.info().workflow_id,
            status=status,
            dealer_id=dealer_id,
            dealer_lead_id=dealer_lead_id,
            detail=detail,
            claim_dealer=claim_dealer,
        )
        if local and (await self._tried_locally(LeadActivities.record_lead_status, record))[0]:
            return
        await workflow.execute_activity_method(
            LeadActivities.record_lead_status,
            record,
            start_to_close_timeout=LOCAL_STEP_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )

    async def _not_reassigned(self, dealer_id: str) -> LeadDistributionResult:
        """Support's move of a lead Zoho no longer has: nothing moved (the memo says why). A dealer's
        status handed to this run meanwhile (the lead's workflow while it ran) still goes on."""
        workflow.logger.warning("lead not reassigned to %s: Zoho no longer has it", dealer_id)
        workflow.upsert_memo({"not_reassigned": f"to {dealer_id}: Zoho no longer has the lead"})
        if self._reports:  # to the subscribers: Zoho would refuse a write to a lead it has not
            await self._pass_on_reports(self._reports[0].dealer_id, write_zoho=False)
        self._set_search_status(NOT_REASSIGNED)  # the run's outcome, whatever status went on
        return self._result()

    def _set_search_status(self, status: str) -> None:
        """Show a step in the Web UI without a portal record (the activity that made it wrote one)."""
        self._status = status
        workflow.upsert_search_attributes([LEAD_STATUS.value_set(status)])

    def _attempts_summary(self) -> str:
        return ", ".join(f"{a.dealer_id}: {a.outcome}" for a in self._attempts) or "no dealer matched"

    def _result(self, dealer_lead_id: str | None = None) -> LeadDistributionResult:
        return LeadDistributionResult(
            lead_id=self._lead_id,
            status=self._status,
            dealer_id=self._dealer_id,
            dealer_lead_id=dealer_lead_id,
            attempts=list(self._attempts),
        )


def _sla_wait_until(plan: FollowPlan) -> datetime | None:
    """Until when the run waits for the dealer to accept, on Temporal's clock; None: no SLA."""
    if not plan.sla_deadline:
        return None
    if plan.sla_wait_until and workflow.patched(SLA_DEADLINE_ON_TEMPORAL_CLOCK):  # marked where it acts
        return datetime.fromisoformat(plan.sla_wait_until)
    return workflow.now() + timedelta(seconds=plan.sla_remaining_seconds)


def _after_earlier_attempts(error: ActivityError) -> bool:
    """Whether a delivery that found its dealer inactive had attempts before (which may have reached its
    CRM). Failures from before the activity said so (no details) count as such."""
    cause = failure_cause(error)
    details = cause.details if isinstance(cause, ApplicationError) else ()
    return NO_EARLIER_ATTEMPT not in details

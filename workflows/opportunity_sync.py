"""OpportunitySyncWorkflow: one long-lived workflow per Zoho deal applies its updates one at a time."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from contracts.opportunities import (
    DEAL_CHANGED,
    OPPORTUNITY_SYNC_WORKFLOW,
    DealChange,
    OpportunitySyncInput,
    OpportunitySyncResult,
)
from workflows.gathering import Inbox, handle_batches
from workflows.parking import Parking
from workflows.policies import DATABASE_RETRY, error_type

with workflow.unsafe.imports_passed_through():
    from activities.opportunities import (
        DEAL_NOT_FOUND,
        ApplyDealInput,
        FetchDealInput,
        OpportunityActivities,
    )
    from core.constants import DEAL_ID, DEAL_STAGE, REDRIVE_PARKED_SIGNAL
    from core.deals import DealState


STEP_TIMEOUT = timedelta(seconds=30)
DROP_REASONS = {
    "stale": "older than the current state: recorded in the stage history only",
    "repeated": "repeated: this change was stored before",
    "current": "repeated: this change was stored before",
}
# What storing a change may answer that leaves it the deal's current state: "current" when an attempt
# committed it and was retried (a worker killed, a reset), or a new run got the webhook again.
STORED = ("applied", "current")
# Patch: a change Zoho refuses for good (credentials, a record the hub cannot read) is parked until
# support redrives it; runs started before it dropped the change with a memo note.
PARK_REFUSED = "park-refused-deal-changes"
# Patch: a webhook handled after Zoho's record changed again (an edit that moves no stage fires no
# webhook) leaves that newer record as the current state, its own stage joining the history at its
# time; runs started before it laid the webhook's stage, time and amount over the newer record.
NEWER_RECORD_WINS = "newer-zoho-record-stays-current"
# Patch: Zoho stamps two changes made within one second with the same Modified_Time. A change at the last
# applied time with another stage is a second move, not the first sent again: Zoho's record says which
# came last, and both stages join the history. Runs started before dropped it as stored before, and laid
# a webhook's stage over a record of the same second.
SAME_SECOND = "same-second-deal-changes"
ZOHO_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5), non_retryable_error_types=[DEAL_NOT_FOUND])


@workflow.defn(name=OPPORTUNITY_SYNC_WORKFLOW)
class OpportunitySyncWorkflow:
    def __init__(self) -> None:
        self._inbox: Inbox[DealChange] = Inbox()
        self._applied = 0
        self._dropped = 0
        self._last_applied: datetime | None = None
        self._last_stage: str | None = None
        self._parking = Parking()

    @workflow.signal(name=DEAL_CHANGED)
    def deal_changed(self, change: DealChange) -> None:
        self._inbox.put(change)

    @workflow.signal(name=REDRIVE_PARKED_SIGNAL)
    def redrive_parked(self) -> None:
        """Support fixed what Zoho refused: try the parked change again."""
        self._parking.redrive()

    @workflow.run
    async def run(self, params: OpportunitySyncInput) -> OpportunitySyncResult:
        self._inbox.items[:0] = params.pending
        self._last_applied = params.last_applied
        self._last_stage = params.last_stage
        workflow.upsert_search_attributes([DEAL_ID.value_set(params.deal_id)])
        more = await handle_batches(
            self._inbox,
            self._apply_batch,
            idle=lambda: timedelta(seconds=params.idle_close_seconds),
            window_seconds=params.batch_window_seconds,
            per_run=params.changes_per_run,
        )
        if more:
            workflow.continue_as_new(
                replace(
                    params,
                    last_applied=self._last_applied,
                    last_stage=self._last_stage,
                    pending=list(self._inbox.items),
                )
            )
        return OpportunitySyncResult(params.deal_id, self._applied, self._dropped, self._last_applied)

    async def _apply_batch(self, batch: list[DealChange]) -> None:
        # Changes without a time (partial webhooks) fetch the current state; apply them last.
        for change in sorted(batch, key=lambda c: (c.modified_time is None, c.modified_time or _EPOCH)):
            await self._apply(change)

    async def _apply(self, change: DealChange) -> None:
        if change.modified_time and self._is_stale(change):
            # Too late for the current state, but the stage it reports still belongs in the history.
            outcome = await self._store(_stage_of(change)) if change.stage else "stale"
            self._drop(change, DROP_REASONS.get(outcome, outcome))
            return
        current = await self._current_deal(change)
        if isinstance(current, str):
            self._drop(change, current)
            return
        deal, record_read = current
        outcome = await self._store(deal, record_read=record_read)
        if outcome not in STORED:
            self._drop(change, DROP_REASONS[outcome])
            return
        self._applied += 1
        self._last_applied = deal.modified_time
        self._last_stage = deal.stage
        if deal.stage:
            workflow.upsert_search_attributes([DEAL_STAGE.value_set(deal.stage)])
        if _moved_apart(change, deal):
            # Zoho's record (newer, or a later move within the same second) is the state now; the stage
            # move this webhook reports joins the history at its own time (after the record, so the
            # database never shows the older state between).
            await self._store(_stage_of(change))

    async def _store(self, deal: DealState, *, record_read: bool = False) -> str:
        result = await workflow.execute_activity_method(
            OpportunityActivities.apply_deal_change,
            ApplyDealInput(deal=deal, record_read=record_read),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        return result.outcome

    async def _current_deal(self, change: DealChange) -> tuple[DealState, bool] | str:
        """The full deal from Zoho, with the webhook's own stage, time and author laid over it, or Zoho's
        record as it is where it changed since the webhook's change or within its second; and whether it
        is that record as read.
        Returns why not, when Zoho has no such deal. A read Zoho refuses for good parks the change until
        support redrives it (runs started before that patch returned why, and dropped the change).
        """
        while True:
            try:
                fetched = await workflow.execute_activity_method(
                    OpportunityActivities.fetch_deal,
                    FetchDealInput(deal_id=change.deal_id),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=ZOHO_RETRY,
                )
                break
            except ActivityError as error:
                if error_type(error) == DEAL_NOT_FOUND:
                    return "deal not found in Zoho"
                if not workflow.patched(PARK_REFUSED):
                    return f"deal unreadable from Zoho: {error.cause or error}"
                when = change.modified_time.isoformat() if change.modified_time else "unknown time"
                refused = f"change of {when}: Zoho refused the read: {error.cause or error}"
                await self._parking.hold("zoho", refused)
        if not (change.stage and change.modified_time):
            return fetched, True  # a partial webhook: Zoho's current state is the change
        if fetched.modified_time > change.modified_time and workflow.patched(NEWER_RECORD_WINS):
            return fetched, True  # Zoho's record changed since (an amount, a date): it is the current state
        if fetched.modified_time == change.modified_time and workflow.patched(SAME_SECOND):
            return fetched, True  # the record of that second: the later of two moves made within it
        deal = replace(
            fetched,
            stage=change.stage,
            modified_time=change.modified_time,
            modified_by=change.modified_by or fetched.modified_by,
            amount=change.amount if change.amount is not None else fetched.amount,
            # Zoho's record older than the change (its read lagging): a field it shows empty may have
            # been set since, so it clears nothing. (An activity's input: replay compares no inputs.)
            complete=False,
        )
        return deal, False

    def _is_stale(self, change: DealChange) -> bool:
        """Whether the change is no newer than the current state (its time is set)."""
        assert change.modified_time is not None
        if self._last_applied is None or change.modified_time > self._last_applied:
            return False
        if change.modified_time == self._last_applied and change.stage not in (None, self._last_stage):
            # Another stage at the last applied second: a second move within it, not the first sent again.
            return not workflow.patched(SAME_SECOND)
        return True

    def _drop(self, change: DealChange, reason: str) -> None:
        # The memo change is an event in the history, so support sees what was dropped and why.
        self._dropped += 1
        when = change.modified_time.isoformat() if change.modified_time else "unknown time"
        note = f"dropped change of {when} ({change.stage or '-'}): {reason}"
        workflow.logger.info("dropped change of %s; the memo says why", when)  # a partner's error: memo only
        workflow.upsert_memo({"last_dropped": note, "dropped": self._dropped})


def _moved_apart(change: DealChange, deal: DealState) -> bool:
    """Whether the stage move the webhook reports is not the stored record's own: the record is newer, or
    shows another stage of the same second."""
    if not (change.stage and change.modified_time):
        return False
    if deal.modified_time == change.modified_time:
        return deal.stage != change.stage
    return deal.modified_time > change.modified_time


def _stage_of(change: DealChange) -> DealState:
    """The stage move a webhook reports, alone: for the stage history."""
    return DealState(
        deal_id=change.deal_id,
        modified_time=change.modified_time or _EPOCH,
        stage=change.stage,
        modified_by=change.modified_by,
    )


_EPOCH = datetime.fromisoformat("0001-01-01T00:00:00+00:00")

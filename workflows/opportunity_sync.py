"""OpportunitySyncWorkflow: one long-lived workflow per Zoho deal applies its updates one at a time."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.gathering import until_quiet

with workflow.unsafe.imports_passed_through():
    from activities.opportunities import (
        DEAL_NOT_FOUND,
        ApplyDealInput,
        DealFields,
        FetchDealInput,
        OpportunityActivities,
    )
    from core.constants import DEAL_ID, DEAL_STAGE

DEAL_CHANGED = "deal_changed"
STEP_TIMEOUT = timedelta(seconds=30)
MAX_GATHER_WINDOWS = 10
DROP_REASONS = {
    "stale": "older than the current state: recorded in the stage history only",
    "repeated": "repeated: this change was stored before",
}
# The central database may be down for a while: keep trying, never lose an acknowledged update.
DATABASE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
ZOHO_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5), non_retryable_error_types=[DEAL_NOT_FOUND])


@dataclass
class DealChange:
    """One webhook: the merge fields Zoho sent (at least the deal id)."""

    deal_id: str
    stage: str | None = None
    modified_time: str | None = None  # ISO 8601 with offset
    modified_by: str | None = None
    amount: str | None = None
    received_at: str = ""


@dataclass
class OpportunitySyncInput:
    deal_id: str
    idle_close_seconds: int = 3600
    batch_window_seconds: float = 2.0
    changes_per_run: int = 500
    # Carried over continue-as-new:
    last_applied: str | None = None
    pending: list[DealChange] = field(default_factory=list)


@dataclass
class OpportunitySyncResult:
    deal_id: str
    applied: int
    dropped: int
    last_applied: str | None


@workflow.defn
class OpportunitySyncWorkflow:
    def __init__(self) -> None:
        self._pending: list[DealChange] = []
        self._applied = 0
        self._dropped = 0
        self._last_applied: str | None = None

    @workflow.signal(name=DEAL_CHANGED)
    def deal_changed(self, change: DealChange) -> None:
        self._pending.append(change)

    @workflow.run
    async def run(self, params: OpportunitySyncInput) -> OpportunitySyncResult:
        self._pending = list(params.pending) + self._pending
        self._last_applied = params.last_applied
        workflow.upsert_search_attributes([DEAL_ID.value_set(params.deal_id)])
        handled = 0
        while True:
            try:
                await workflow.wait_condition(
                    lambda: bool(self._pending), timeout=timedelta(seconds=params.idle_close_seconds)
                )
            except TimeoutError:
                return OpportunitySyncResult(params.deal_id, self._applied, self._dropped, self._last_applied)
            # Updates fired together arrive in any order; gathered, they are applied oldest first.
            await until_quiet(lambda: len(self._pending), params.batch_window_seconds, MAX_GATHER_WINDOWS)
            batch, self._pending = _oldest_first(self._pending), []
            for change in batch:
                await self._apply(change)
            handled += len(batch)
            if handled >= params.changes_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    replace(params, last_applied=self._last_applied, pending=list(self._pending))
                )

    async def _apply(self, change: DealChange) -> None:
        if change.modified_time and self._is_stale(change.modified_time):
            # Too late for the current state, but the stage it reports still belongs in the history.
            outcome = "stale"
            if change.stage:
                outcome = await self._store(
                    DealFields(
                        deal_id=change.deal_id,
                        modified_time=change.modified_time,
                        stage=change.stage,
                        modified_by=change.modified_by,
                    )
                )
            self._drop(change, DROP_REASONS.get(outcome, outcome))
            return
        deal = await self._current_deal(change)
        if deal is None:
            self._drop(change, "deal not found in Zoho")
            return
        outcome = await self._store(deal)
        if outcome != "applied":
            self._drop(change, DROP_REASONS[outcome])
            return
        self._applied += 1
        self._last_applied = deal.modified_time
        if deal.stage:
            workflow.upsert_search_attributes([DEAL_STAGE.value_set(deal.stage)])

    async def _store(self, deal: DealFields) -> str:
        result = await workflow.execute_activity_method(
            OpportunityActivities.apply_deal_change,
            ApplyDealInput(deal=deal),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        return result.outcome

    async def _current_deal(self, change: DealChange) -> DealFields | None:
        """The full deal from Zoho, with the webhook's own stage, time and author laid over it.

        The webhook's values describe this very change; the fetched record may already be newer.
        """
        try:
            fetched = await workflow.execute_activity_method(
                OpportunityActivities.fetch_deal,
                FetchDealInput(deal_id=change.deal_id),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=ZOHO_RETRY,
            )
        except ActivityError:
            return None
        if not (change.stage and change.modified_time):
            return fetched  # a partial webhook: Zoho's current state is the change
        return replace(
            fetched,
            stage=change.stage,
            modified_time=change.modified_time,
            modified_by=change.modified_by or fetched.modified_by,
            amount=change.amount if change.amount is not None else fetched.amount,
        )

    def _is_stale(self, modified_time: str) -> bool:
        return self._last_applied is not None and _parse(modified_time) <= _parse(self._last_applied)

    def _drop(self, change: DealChange, reason: str) -> None:
        # The memo change is an event in the history, so support sees what was dropped and why.
        self._dropped += 1
        note = f"dropped change of {change.modified_time or 'unknown time'} ({change.stage or '-'}): {reason}"
        workflow.logger.info(note)
        workflow.upsert_memo({"last_dropped": note, "dropped": self._dropped})


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _oldest_first(changes: list[DealChange]) -> list[DealChange]:
    # Changes without a time (partial webhooks) fetch the current state; apply them last.
    return sorted(
        changes,
        key=lambda c: (c.modified_time is None, _parse(c.modified_time or "0001-01-01T00:00:00+00:00")),
    )

"""VtexOrderWorkflow: one workflow per VTEX order follows its state changes and lands each in bronze."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from contracts.orders import (
    ORDER_CHANGED,
    STATUS_QUERY,
    VTEX_ORDER_WORKFLOW,
    VtexOrderInput,
    VtexOrderStatus,
)
from workflows.gathering import Inbox, handle_batches
from workflows.parking import Parking
from workflows.policies import error_type

with workflow.unsafe.imports_passed_through():
    from activities.errors import PERMANENT_FAILURE
    from activities.vtex import (
        ORDER_NOT_FOUND,
        WAREHOUSE_REFUSED,
        LandEventsInput,
        LandOrderInput,
        LandOrderResult,
        VtexOrderActivities,
    )
    from core.constants import (
        ORDER_ID,
        ORDER_STATE,
        REDRIVE_PARKED_SIGNAL,
    )
    from core.vtex import FINAL_ORDER_STATES, OrderEvent


# Runs started before this patch land a batch's events, then read its version; later ones do both at once.
EVENTS_WITH_VERSION = "events-and-version-together"
# Patch: an order the OMS refuses to serve for good (a revoked app token, say) is parked until support
# redrives it; runs started before it noted it unreadable and waited for the order's next event.
PARK_REFUSED = "park-refused-order-reads"
# Patch: state changes BigQuery refuses to append for good (a permission taken away, a row it will not
# take) are parked until support redrives them; runs started before it failed, with their events.
PARK_REFUSED_LANDING = "park-refused-event-landings"
# Patch: an order version BigQuery refuses for good is parked as BigQuery's refusal (Parked = bigquery,
# the memo naming bronze), where ``hub parked redrive --partner bigquery`` finds it with the events.
# Runs started before it parked it as the OMS's ("vtex").
PARK_VERSION_AS_BIGQUERY = "park-refused-version-landings-as-bigquery"
# Patch: an order the OMS does not know (404) when its hook says it changed is read again after these
# waits, then parked as "vtex" (wrong account, or an order gone): its version was landed by no read.
# Runs started before it noted it unreadable and waited for the order's next event, which for a final
# state (invoiced) never comes.
RETRY_ORDER_NOT_FOUND = "read-an-order-not-found-again-then-park"
# Patch: a hook without CurrentChange (keyed by LastChange, the previous state's time) always reads the
# order; runs started before it skipped it as older when a later state had been read.
READ_UNTIMED_CHANGES = "read-changes-without-current-change"
# Patch: a read that serves an order version older than the change a hook announced (another state, an
# earlier lastChange: the OMS behind its own hooks) is read again after the same waits, then parked as
# "vtex". Runs started before it took that older version as the hook's and waited for the next change,
# which a final state (invoiced) never has: the invoiced version never landed.
READ_A_LAGGING_OMS_AGAIN = "read-an-order-served-behind-its-hook-again"
# The same for a hook without CurrentChange, whose change is LastChange (when the state before began): a
# version of another state changed no later than that is the state before, or older. Runs started before
# it took that version for current, and a final state's version never landed.
READ_BEHIND_AN_UNTIMED_HOOK = "read-an-order-served-behind-an-untimed-hook-again"
NOT_FOUND_WAITS = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=5), timedelta(minutes=10))
STEP_TIMEOUT = timedelta(seconds=30)
SEEN_KEYS_KEPT = 1000  # event keys carried over continue-as-new, to recognise repeats
# The warehouse may be down for a while: keep trying, never lose an acknowledged event.
WAREHOUSE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[PERMANENT_FAILURE],
)
# VTEX rate limits: the activity's ApplicationError carries Retry-After as next_retry_delay.
VTEX_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[ORDER_NOT_FOUND, PERMANENT_FAILURE],  # (and WAREHOUSE_REFUSED's own flag)
)


@workflow.defn(name=VTEX_ORDER_WORKFLOW)
class VtexOrderWorkflow:
    def __init__(self) -> None:
        self._inbox: Inbox[OrderEvent] = Inbox()
        self._seen: list[str] = []
        self._status = VtexOrderStatus(order_id="", state=None, last_applied=None)
        self._parking = Parking()

    @workflow.signal(name=ORDER_CHANGED)
    def order_changed(self, event: OrderEvent) -> None:
        self._inbox.put(event)

    @workflow.signal(name=REDRIVE_PARKED_SIGNAL)
    def redrive_parked(self) -> None:
        """Support fixed what the OMS refused: read the order again."""
        self._parking.redrive()

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> VtexOrderStatus:
        return self._status

    @workflow.run
    async def run(self, params: VtexOrderInput) -> VtexOrderStatus:
        self._inbox.items[:0] = params.pending
        self._seen = list(params.seen)
        self._status = VtexOrderStatus(params.order_id, params.state, params.last_applied)
        workflow.upsert_search_attributes([ORDER_ID.value_set(params.order_id)])
        # Hooks of one order arrive in any order: those that come while a batch lands are taken together
        # (one OMS read), and a change older than the state already read costs no read at all.
        more = await handle_batches(
            self._inbox,
            lambda batch: self._handle(params, batch),
            idle=lambda: timedelta(
                seconds=params.final_linger_seconds if self._is_final() else params.idle_close_seconds
            ),
            window_seconds=params.batch_window_seconds,
            per_run=params.events_per_run,
        )
        if more:
            workflow.continue_as_new(
                replace(
                    params,
                    state=self._status.state,
                    last_applied=self._status.last_applied,
                    seen=self._seen[-SEEN_KEYS_KEPT:],
                    pending=list(self._inbox.items),
                )
            )
        return self._status

    async def _handle(self, params: VtexOrderInput, batch: list[OrderEvent]) -> None:
        fresh = self._first_sightings(batch)
        if len(fresh) < len(batch):
            self._note("repeated", len(batch) - len(fresh), "already landed")
        if not fresh:
            return
        last = self._status.last_applied
        newer = [event for event in fresh if last is None or event.change > last or self._untimed(event)]
        if len(newer) < len(fresh):
            # The OMS already served a later state: reading it again would land nothing new.
            self._note("ignored", len(fresh) - len(newer), f"older than the state of {last}")
        if newer and workflow.patched(EVENTS_WITH_VERSION):
            # The two landings do not depend on each other: one workflow task schedules both.
            await asyncio.gather(self._land_events(fresh), self._land_version(params, newest=newer[-1]))
            return
        await self._land_events(fresh)
        if newer:
            await self._land_version(params, newest=newer[-1])

    async def _land_events(self, fresh: list[OrderEvent]) -> None:
        while True:
            try:
                await workflow.execute_activity_method(
                    VtexOrderActivities.land_order_events,
                    LandEventsInput(events=fresh),
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=WAREHOUSE_RETRY,
                )
                break
            except ActivityError as error:
                # Only a refusal for good gets here: the policy retries everything else without end.
                if not workflow.patched(PARK_REFUSED_LANDING):
                    raise
                refused = f"{len(fresh)} state change(s): bronze refused the append: {error.cause}"
                await self._parking.hold("bigquery", refused)
        self._seen += [event.key for event in fresh]
        self._status.events_landed += len(fresh)

    def _untimed(self, event: OrderEvent) -> bool:
        """A change VTEX sent without CurrentChange: its time is the state before's, so it may look older
        than the state last read while it is newer. Runs before this patch took it for older."""
        return not event.timed and workflow.patched(READ_UNTIMED_CHANGES)

    def _first_sightings(self, batch: list[OrderEvent]) -> list[OrderEvent]:
        """The batch oldest first, without events landed before or repeated within it."""
        fresh: dict[str, OrderEvent] = {}
        for event in sorted(batch, key=lambda e: e.change):
            if event.key not in self._seen:
                fresh.setdefault(event.key, event)
        return list(fresh.values())

    async def _land_version(self, params: VtexOrderInput, newest: OrderEvent) -> None:
        misses = 0  # reads the OMS answered 404
        behind = 0  # reads that served a version older than the hook's change
        while True:
            try:
                landed = await workflow.execute_activity_method(
                    VtexOrderActivities.land_order_version,
                    LandOrderInput(order_id=params.order_id),
                    task_queue=params.api_task_queue,
                    start_to_close_timeout=STEP_TIMEOUT,
                    retry_policy=VTEX_RETRY,
                )
            except ActivityError as error:
                if error_type(error) == ORDER_NOT_FOUND and workflow.patched(RETRY_ORDER_NOT_FOUND):
                    missing = f"state {newest.state}: the OMS has no order {params.order_id}"
                    misses = await self._wait_or_park(misses, missing)
                    continue
                if error_type(error) == ORDER_NOT_FOUND or not workflow.patched(PARK_REFUSED):
                    # Not in the OMS (yet): the next event of this order reads it again.
                    self._note("unreadable", 1, str(error.cause or error))
                    return
                if error_type(error) == WAREHOUSE_REFUSED and workflow.patched(PARK_VERSION_AS_BIGQUERY):
                    refused = f"state {newest.state}: bronze refused the order version: {error.cause}"
                    await self._parking.hold("bigquery", refused)
                    continue
                refused = f"state {newest.state}: the OMS refused the read: {error.cause}"
                await self._parking.hold("vtex", refused)
                continue
            if not self._served_behind(newest, landed):
                break
            # The version it served landed (a true version of the order); the hook's one is still due.
            lagging = (
                f"state {newest.state} of {newest.change}: the OMS still serves {landed.status} of"
                f" {landed.last_change}"
            )
            behind = await self._wait_or_park(behind, lagging)
        if landed.quarantined:
            self._status.quarantined += 1
            workflow.upsert_memo({"last_quarantined": f"{landed.event_key}: {landed.quarantined}"})
        else:
            self._status.versions_landed += 1
        self._status.last_applied = max(newest.change, landed.last_change or newest.change)
        self._status.state = landed.status or newest.state
        workflow.upsert_search_attributes([ORDER_STATE.value_set(self._status.state)])

    async def _wait_or_park(self, tries: int, why: str) -> int:
        """Before the order is read again: the next of NOT_FOUND_WAITS after ``tries`` reads, or past
        the last, parked as "vtex" (``why``) until support redrives it. The tries to count from then."""
        if tries < len(NOT_FOUND_WAITS):
            await workflow.sleep(NOT_FOUND_WAITS[tries])
            return tries + 1
        waited = sum(NOT_FOUND_WAITS, timedelta()).total_seconds() / 60
        await self._parking.hold("vtex", f"{why} ({waited:.0f} min)")
        return 0

    def _served_behind(self, newest: OrderEvent, landed: LandOrderResult) -> bool:
        """Whether the OMS served a version older than the change ``newest`` announced: another state,
        changed before it; for a change without its own time (LastChange, when the state before
        began), changed no later than that. (The same state is the hook's, whatever the times'
        precision.)"""
        if landed.status is None or landed.status == newest.state or landed.last_change is None:
            return False
        if newest.timed:
            return landed.last_change < newest.change and workflow.patched(READ_A_LAGGING_OMS_AGAIN)
        return landed.last_change <= newest.change and workflow.patched(READ_BEHIND_AN_UNTIMED_HOOK)

    def _is_final(self) -> bool:
        return self._status.state in FINAL_ORDER_STATES

    def _note(self, kind: str, count: int, reason: str) -> None:
        # Memo changes are events in the history: support reads what was skipped and why.
        if kind == "ignored":
            self._status.ignored += count
        note = f"{kind} {count} event(s): {reason}"
        # The reason may quote a partner's error (pyarrow quotes the value it refused): the memo,
        # encrypted with the history, says it; the log does not.
        workflow.logger.info("%s %d event(s); the memo says why", kind, count)
        workflow.upsert_memo({f"last_{kind}": note})

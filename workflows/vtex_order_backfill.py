"""OrderBackfillWorkflow: lands the orders VTEX holds for a range of creation dates, exactly once.

Hooks and the Feed v3 reconciler only see new changes; a warehouse installed today also needs the
years of orders before it. The workflow cuts the range into windows small enough for the OMS list
(VTEX serves at most 30 pages of 100), lists each window page by page, and lands each order's current
version under the same event key the live flow uses. Everything it needs to resume (windows left, the
page, the stream cursors, the counts) is workflow state: a killed worker resumes where the last page
landed, and long runs continue as new with that state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING

from temporalio import workflow

from workflows.dbt_requests import ask_for_build
from workflows.policies import LONG_JOB_RETRY, seconds_and_rate

with workflow.unsafe.imports_passed_through():
    from activities.vtex_backfill import (
        BackfillCursors,
        CountOrdersInput,
        CreationWindow,
        LandOrdersInput,
        PlanPageInput,
        VtexBackfillActivities,
    )
    from clients.vtex import LIST_MAX_PAGES, LIST_MAX_PER_PAGE
    from core.constants import PROGRESS_QUERY, VTEX_API_TASK_QUEUE

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from core.settings import Settings

# A page of 100 orders at a small budget (1 request/s) takes minutes; heartbeats show it is alive.
LAND_TIMEOUT = timedelta(minutes=30)
MILLISECOND = timedelta(milliseconds=1)


@dataclass
class BackfillProgress:
    """What support reads in the ``progress`` query and the memo."""

    windows_done: int = 0
    windows_left: int = 1
    window: str = ""  # the window being landed and its page, e.g. "2025-01-01..2025-03-31 page 4/30"
    orders_listed: int = 0
    orders_landed: int = 0
    already_landed: int = 0  # listed, but this version was in the warehouse already
    quarantined: int = 0
    missing: int = 0  # listed, but the OMS did not serve them
    vtex_requests: int = 0
    seconds: float = 0.0  # since the backfill started, across continue-as-new
    orders_per_second: float = 0.0
    done: bool = False


@dataclass
class OrderBackfillInput:
    """A range of creation dates (ISO 8601, both inclusive) and the VTEX requests per second it may use."""

    start: str
    end: str
    requests_per_second: float = 20.0
    per_page: int = LIST_MAX_PER_PAGE
    api_task_queue: str = VTEX_API_TASK_QUEUE
    pages_per_run: int = 200  # then continue-as-new
    # How soon a page whose worker died is tried again: a list step's timeout, a read step's heartbeat.
    step_timeout_seconds: float = 30.0
    heartbeat_seconds: float = 20.0
    # Carried over continue-as-new:
    windows: list[CreationWindow] = field(default_factory=list)  # left to do, oldest first
    page: int = 1  # the next page of windows[0]
    pages: int = 0  # pages of windows[0], once counted
    cursors: BackfillCursors = field(default_factory=BackfillCursors)
    progress: BackfillProgress = field(default_factory=BackfillProgress)
    started_at: str = ""

    @classmethod
    def for_range(cls, settings: Settings, start: datetime, end: datetime, rate: float) -> OrderBackfillInput:
        queue = settings.vtex_api_task_queue
        return cls(start=_iso(start), end=_iso(end), requests_per_second=rate, api_task_queue=queue)


def backfill_workflow_id(start: str, end: str) -> str:
    """One backfill per range at a time. A range of whole days (from a day's start to a day's last
    millisecond, as ``hub backfill`` reads dates) reads as its dates; any other bound keeps its time, so
    two ranges within the same days are two backfills, not one taken for the other."""
    return (
        f"vtex-orders-backfill-{_id_bound(start, whole_day_ends=False)}-{_id_bound(end, whole_day_ends=True)}"
    )


def _id_bound(bound: str, *, whole_day_ends: bool) -> str:
    moment = datetime.fromisoformat(bound).astimezone(UTC)
    day_starts = moment + (timedelta(milliseconds=1) if whole_day_ends else timedelta())
    if day_starts == datetime.combine(day_starts.date(), time(), UTC):
        return moment.date().isoformat()
    return f"{moment:%Y-%m-%dT%H%M%S}.{moment.microsecond // 1000:03d}Z"  # milliseconds, as VTEX filters


async def start_order_backfill(
    client: Client, settings: Settings, params: OrderBackfillInput
) -> WorkflowHandle[OrderBackfillWorkflow, BackfillProgress]:
    """Start the backfill of ``params``'s range; a backfill of the same range still running is refused.

    Raises:
        temporalio.exceptions.WorkflowAlreadyStartedError: that range is being backfilled now.
    """
    return await client.start_workflow(
        OrderBackfillWorkflow.run,
        params,
        id=backfill_workflow_id(params.start, params.end),
        task_queue=settings.vtex_orders_task_queue,
    )


@workflow.defn
class OrderBackfillWorkflow:
    def __init__(self) -> None:
        self._progress = BackfillProgress()

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> BackfillProgress:
        return self._progress

    @workflow.run
    async def run(self, params: OrderBackfillInput) -> BackfillProgress:
        if not params.started_at:
            params = replace(
                params,
                windows=[CreationWindow(params.start, params.end)],
                started_at=workflow.now().isoformat(),
            )
        self._progress = params.progress
        state = params
        pages_this_run = 0
        while state.windows:
            if pages_this_run >= state.pages_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(replace(state, progress=self._progress))
            if state.pages == 0:
                state = await self._count(state)
                continue
            state = await self._land_page(state)
            pages_this_run += 1
        self._progress.done = True
        self._publish(state)
        if self._progress.orders_landed:
            await ask_for_build("vtex order backfill", state.api_task_queue)
        return self._progress

    async def _count(self, state: OrderBackfillInput) -> OrderBackfillInput:
        """Count the first window: split it if the list cannot page through it, skip it if empty."""
        window, rest = state.windows[0], state.windows[1:]
        counted = await workflow.execute_activity_method(
            VtexBackfillActivities.count_orders,
            CountOrdersInput(window, state.requests_per_second),
            task_queue=state.api_task_queue,
            start_to_close_timeout=timedelta(seconds=state.step_timeout_seconds),
            retry_policy=LONG_JOB_RETRY,
        )
        self._progress.vtex_requests += 1
        if counted.total > LIST_MAX_PAGES * state.per_page and _splittable(window):
            self._progress.windows_left += 1
            return replace(state, windows=[*_halves(window), *rest])
        if counted.total == 0:
            return self._window_done(replace(state, windows=rest))
        pages = min(LIST_MAX_PAGES, -(-counted.total // state.per_page))
        return replace(state, page=1, pages=pages)

    async def _land_page(self, state: OrderBackfillInput) -> OrderBackfillInput:
        window = state.windows[0]
        self._progress.window = f"{window.start[:10]}..{window.end[:10]} page {state.page}/{state.pages}"
        planned = await workflow.execute_activity_method(
            VtexBackfillActivities.plan_page,
            PlanPageInput(window, state.page, state.per_page, state.requests_per_second),
            task_queue=state.api_task_queue,
            start_to_close_timeout=timedelta(seconds=state.step_timeout_seconds),
            retry_policy=LONG_JOB_RETRY,
        )
        cursors = state.cursors
        if planned.order_ids:
            landed = await workflow.execute_activity_method(
                VtexBackfillActivities.land_orders,
                LandOrdersInput(planned.order_ids, state.cursors, state.requests_per_second),
                task_queue=state.api_task_queue,
                start_to_close_timeout=LAND_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=state.heartbeat_seconds),
                retry_policy=LONG_JOB_RETRY,
            )
            cursors = landed.cursors
            self._progress.orders_landed += landed.landed
            self._progress.quarantined += landed.quarantined
            self._progress.missing += len(landed.missing)
            if landed.missing:
                workflow.logger.warning("the OMS listed but did not serve %d order(s)", len(landed.missing))
        self._progress.vtex_requests += 1 + len(planned.order_ids)
        self._progress.orders_listed += planned.listed
        self._progress.already_landed += planned.listed - len(planned.order_ids)
        state = replace(state, cursors=cursors)
        # The window's count may have changed while it was paged (orders created in it meanwhile).
        last_page = min(LIST_MAX_PAGES, planned.pages)
        if state.page >= last_page or planned.listed == 0:
            state = self._window_done(replace(state, windows=state.windows[1:]))
        else:
            state = replace(state, page=state.page + 1)
        self._publish(state)
        return state

    def _window_done(self, state: OrderBackfillInput) -> OrderBackfillInput:
        self._progress.windows_done += 1
        self._progress.windows_left = len(state.windows)
        return replace(state, page=1, pages=0)

    def _publish(self, state: OrderBackfillInput) -> None:
        """Refresh the rate and put the progress in the memo, where the UI shows it."""
        p = self._progress
        p.seconds, p.orders_per_second = seconds_and_rate(state.started_at, p.orders_landed)
        workflow.upsert_memo(
            {
                "progress": (
                    f"windows {p.windows_done} done, {p.windows_left} left; {p.orders_landed} landed,"
                    f" {p.already_landed} already there, {p.quarantined} quarantined, {p.missing} missing;"
                    f" {p.orders_per_second}/s"
                ),
                "window": p.window,
            }
        )


def _iso(moment: datetime) -> str:
    """UTC with milliseconds: the precision of VTEX's list filter."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _splittable(window: CreationWindow) -> bool:
    start, end = datetime.fromisoformat(window.start), datetime.fromisoformat(window.end)
    return end - start > MILLISECOND


def _halves(window: CreationWindow) -> list[CreationWindow]:
    """Two windows that cover ``window`` and meet at consecutive milliseconds."""
    start, end = datetime.fromisoformat(window.start), datetime.fromisoformat(window.end)
    middle = start + (end - start) / 2
    middle -= timedelta(microseconds=middle.microsecond % 1000)
    first, second = (
        CreationWindow(window.start, _iso(middle)),
        CreationWindow(_iso(middle + MILLISECOND), window.end),
    )
    return [first, second]

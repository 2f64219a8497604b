"""CustomerSyncWorkflow: the customers (Master Data CL) changed since the last run, landed once in bronze.

Started by the Schedule ``vtex-customer-sync`` (daily by default). A run reads the watermark (where the
last complete run landed up to), scrolls the documents updated since then, or never updated and created
since then, less a small overlap, up to the moment the run started, lands their new versions, and only
then moves the watermark to that moment. The scroll token, the stream cursors and the counts are
workflow state; a page whose activity is retried, whose token expired, or whose token was used further
than the run knows (a run reset to an earlier page: ``db.scrolls``), scrolls the window again from its
start, and versions already in bronze are not landed twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.dbt_requests import ask_for_build
from workflows.policies import DATABASE_RETRY, LONG_JOB_RETRY, seconds_and_rate

with workflow.unsafe.imports_passed_through():
    from activities.vtex_customers import (
        CustomerCursors,
        CustomerPageInput,
        CustomerWindow,
        VtexCustomerActivities,
    )
    from activities.watermarks import AdvanceWatermarkInput, WatermarkActivities, WatermarkInput
    from clients.vtex import SCROLL_MAX_SIZE
    from core.constants import PROGRESS_QUERY, VTEX_API_TASK_QUEUE

WATERMARK = "vtex-customers"
PAGE_TIMEOUT = timedelta(minutes=5)
DATABASE_TIMEOUT = timedelta(seconds=30)


@dataclass
class CustomerSyncResult:
    """What the sync did (the result, the ``progress`` query and the memo)."""

    since: str | None = None  # the window read: changes after ``since`` (None: every customer)
    until: str = ""
    read: int = 0
    landed: int = 0
    already_landed: int = 0
    quarantined: int = 0
    checks: dict[str, int] = field(default_factory=dict)  # data-quality code -> documents
    pages: int = 0
    scroll_restarts: int = 0
    watermark: str | None = None  # where it stands after the run
    seconds: float = 0.0
    customers_per_second: float = 0.0
    done: bool = False

    def summary(self) -> str:
        """The counts in one line, for people (the memo, ``hub syncs``)."""
        checks = ", ".join(f"{count} {code}" for code, count in sorted(self.checks.items())) or "none"
        return (
            f"{'done' if self.done else f'page {self.pages}'}: {self.read} read,"
            f" {self.landed} landed, {self.already_landed} already there,"
            f" {self.quarantined} quarantined; checks: {checks}; {self.seconds:.0f} s"
        )


@dataclass
class CustomerSyncInput:
    """How to read, and, carried over continue-as-new, where the sync is."""

    overlap_seconds: float = 600.0
    requests_per_second: float = 5.0  # scroll pages per second (up to 1,000 customers each)
    api_task_queue: str = VTEX_API_TASK_QUEUE
    page_size: int = SCROLL_MAX_SIZE
    pages_per_run: int = 100  # then continue-as-new
    heartbeat_seconds: float = 30.0  # how soon a page whose worker died is tried again
    # Carried over continue-as-new:
    window: CustomerWindow | None = None
    token: str | None = None
    token_calls: int | None = None  # calls made with the token (db.scrolls), as this run knows
    cursors: CustomerCursors = field(default_factory=CustomerCursors)
    result: CustomerSyncResult = field(default_factory=CustomerSyncResult)
    started_at: str = ""


@workflow.defn
class CustomerSyncWorkflow:
    def __init__(self) -> None:
        self._result = CustomerSyncResult()

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> CustomerSyncResult:
        return self._result

    @workflow.run
    async def run(self, params: CustomerSyncInput) -> CustomerSyncResult:
        state = params if params.window is not None else await self._open(params)
        assert state.window is not None
        self._result = state.result
        for _ in range(state.pages_per_run):
            page = await workflow.execute_activity_method(
                VtexCustomerActivities.land_customer_page,
                CustomerPageInput(
                    state.window,
                    state.token,
                    state.cursors,
                    state.requests_per_second,
                    state.page_size,
                    state.token_calls,
                ),
                task_queue=state.api_task_queue,
                start_to_close_timeout=PAGE_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=state.heartbeat_seconds),
                retry_policy=LONG_JOB_RETRY,
            )
            self._count(page.read, page.landed, page.already_landed, page.quarantined, page.checks)
            self._result.scroll_restarts += page.restarted
            state = replace(state, token=page.token, token_calls=page.token_calls, cursors=page.cursors)
            if page.done:
                return await self._close(state)
            self._publish(state)
        workflow.continue_as_new(replace(state, result=self._result))

    async def _open(self, params: CustomerSyncInput) -> CustomerSyncInput:
        """Fix the run's window: from the watermark less the overlap, to now."""
        stored = await workflow.execute_activity_method(
            WatermarkActivities.read_watermark,
            WatermarkInput(WATERMARK),
            task_queue=params.api_task_queue,
            start_to_close_timeout=DATABASE_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        now = workflow.now()
        since = None
        if stored.watermark is not None:
            since = (
                datetime.fromisoformat(stored.watermark) - timedelta(seconds=params.overlap_seconds)
            ).isoformat()
        window = CustomerWindow(since=since, until=now.isoformat())
        result = CustomerSyncResult(since=since, until=window.until, watermark=stored.watermark)
        return replace(params, window=window, result=result, started_at=now.isoformat())

    async def _close(self, state: CustomerSyncInput) -> CustomerSyncResult:
        """Every page is landed: move the watermark to the end of the window."""
        assert state.window is not None
        moved = await workflow.execute_activity_method(
            WatermarkActivities.advance_watermark,
            AdvanceWatermarkInput(WATERMARK, state.window.until),
            task_queue=state.api_task_queue,
            start_to_close_timeout=DATABASE_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        self._result.watermark = moved.watermark
        self._result.done = True
        self._publish(state)
        if self._result.landed:
            await ask_for_build("vtex customer sync", state.api_task_queue)
        return self._result

    def _count(self, read: int, landed: int, already: int, quarantined: int, checks: dict[str, int]) -> None:
        result = self._result
        result.pages += 1
        result.read += read
        result.landed += landed
        result.already_landed += already
        result.quarantined += quarantined
        result.checks = dict(Counter(result.checks) + Counter(checks))

    def _publish(self, state: CustomerSyncInput) -> None:
        result = self._result
        result.seconds, result.customers_per_second = seconds_and_rate(state.started_at, result.read)
        workflow.upsert_memo(
            {"progress": result.summary(), "window": f"{result.since or 'everything'} .. {result.until}"}
        )

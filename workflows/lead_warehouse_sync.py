"""LeadWarehouseSyncWorkflow: the lead flow's changes in the portal database, landed once in bronze.

Started by the Schedule ``lead-warehouse-sync`` (every minute by default), on the warehouse role. It
lands the lead flow's records and the deals that follow them (``db.lead_changes``). Why a
sync of the database rather than rows handed over by the lead flows: the portal database is the system
of record, written in the same transaction as each decision (a claim, a withdrawal, a dealer's report),
so a sync reading committed rows sees every change, including those made by support, by runs that ended
before this existed or by a flow whose hand-over would have failed; and the flows role keeps no
BigQuery client. The price is latency: one interval plus a run, well within five minutes.

A run reads the watermark, takes the window from it less an overlap (a transaction that committed late
still falls in the next window) up to the moment the run started, lands each kind of change a page at a
time in the order of its change time, and only then moves the watermark. Versions already in bronze are
not landed twice, so overlapping windows and retried pages add nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.dbt_requests import ask_for_build
from workflows.policies import DATABASE_RETRY, LONG_JOB_RETRY

with workflow.unsafe.imports_passed_through():
    from activities.lead_warehouse import LeadChangesPageInput, LeadWarehouseActivities
    from activities.watermarks import AdvanceWatermarkInput, WatermarkActivities, WatermarkInput
    from core.constants import DBT_TASK_QUEUE, PROGRESS_QUERY
    from db.lead_changes import DEAL_KINDS, KINDS
    from warehouse.streams import StreamCursor

WATERMARK = "portal-leads"
# Runs from this patch on land the deals too, after the lead flow's kinds; a run begun before it ends
# where it would have.
DEALS_PATCH = "lead-sync-lands-deals"
PAGE_TIMEOUT = timedelta(minutes=5)
DATABASE_TIMEOUT = timedelta(seconds=30)


@dataclass
class LeadSyncResult:
    """What the sync did (the result, the ``progress`` query and the memo)."""

    since: str | None = None
    until: str = ""
    read: dict[str, int] = field(default_factory=dict)  # kind of change -> changes read
    landed: int = 0
    already_landed: int = 0
    pages: int = 0
    watermark: str | None = None
    done: bool = False

    def summary(self) -> str:
        read = ", ".join(f"{count} {kind}" for kind, count in self.read.items()) or "nothing"
        return f"{'done' if self.done else f'page {self.pages}'}: read {read}; {self.landed} landed, " + (
            f"{self.already_landed} already there"
        )


@dataclass
class LeadSyncInput:
    overlap_seconds: float = 600.0
    page_size: int = 2000
    pages_per_run: int = 200  # then continue-as-new
    build_task_queue: str = DBT_TASK_QUEUE  # where a dbt build is asked for once changes landed
    # Carried over continue-as-new:
    since: str | None = None
    until: str | None = None  # None: the window is not open yet
    kind: str | None = KINDS[0]  # the kind of change being landed (db.lead_changes); None: all landed
    after_at: str | None = None
    after_key: str | None = None
    cursors: dict[str, StreamCursor] = field(default_factory=dict)
    result: LeadSyncResult = field(default_factory=LeadSyncResult)


@workflow.defn
class LeadWarehouseSyncWorkflow:
    def __init__(self) -> None:
        self._result = LeadSyncResult()

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> LeadSyncResult:
        return self._result

    @workflow.run
    async def run(self, params: LeadSyncInput) -> LeadSyncResult:
        state = params if params.until is not None else await self._open(params)
        assert state.until is not None
        self._result = state.result
        for _ in range(state.pages_per_run):
            kind = state.kind
            if kind is None:
                return await self._close(state)
            page = await workflow.execute_activity_method(
                LeadWarehouseActivities.land_lead_changes,
                LeadChangesPageInput(
                    kind,
                    state.since,
                    state.until,
                    state.after_at,
                    state.after_key,
                    state.cursors,
                    state.page_size,
                ),
                start_to_close_timeout=PAGE_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=LONG_JOB_RETRY,
            )
            self._count(kind, page.read, page.landed, page.already_landed)
            state = replace(state, after_at=page.after_at, after_key=page.after_key, cursors=page.cursors)
            if page.done:  # the next kind, from the window's start
                state = replace(state, kind=_after(kind), after_at=None, after_key=None)
            workflow.upsert_memo({"progress": self._result.summary()})
        workflow.continue_as_new(replace(state, result=self._result))

    async def _open(self, params: LeadSyncInput) -> LeadSyncInput:
        """Fix the run's window: from the watermark less the overlap, to now."""
        stored = await workflow.execute_activity_method(
            WatermarkActivities.read_watermark,
            WatermarkInput(WATERMARK),
            start_to_close_timeout=DATABASE_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        since = None
        if stored.watermark is not None:
            start = datetime.fromisoformat(stored.watermark) - timedelta(seconds=params.overlap_seconds)
            since = start.isoformat()
        until = workflow.now().isoformat()
        result = LeadSyncResult(since=since, until=until, watermark=stored.watermark)
        return replace(params, since=since, until=until, result=result)

    async def _close(self, state: LeadSyncInput) -> LeadSyncResult:
        """Every kind is landed up to the window's end: move the watermark there."""
        assert state.until is not None
        moved = await workflow.execute_activity_method(
            WatermarkActivities.advance_watermark,
            AdvanceWatermarkInput(WATERMARK, state.until),
            start_to_close_timeout=DATABASE_TIMEOUT,
            retry_policy=DATABASE_RETRY,
        )
        self._result.watermark = moved.watermark
        self._result.done = True
        workflow.upsert_memo({"progress": self._result.summary()})
        if self._result.landed:
            await ask_for_build("lead warehouse sync", state.build_task_queue)
        return self._result

    def _count(self, kind: str, read: int, landed: int, already: int) -> None:
        result = self._result
        result.pages += 1
        result.read[kind] = result.read.get(kind, 0) + read
        result.landed += landed
        result.already_landed += already


def _after(kind: str) -> str | None:
    """The kind landed after ``kind``; None after the last."""
    kinds = KINDS + DEAL_KINDS if workflow.patched(DEALS_PATCH) else KINDS
    following = kinds[kinds.index(kind) + 1 :]
    return following[0] if following else None

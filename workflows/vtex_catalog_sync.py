"""CatalogSyncWorkflow: every SKU of the VTEX catalog read, and each changed one landed once in bronze.

Started by the Schedule ``vtex-catalog-sync`` (every 6 hours by default). The workflow walks the SKU id
list a page at a time (1,000 ids); one activity per page reads each SKU and its price under the sync's
request budget and lands those whose content changed since the last landed version. A final step lands
the SKUs VTEX no longer lists as removed. The page, the stream cursors and the counts are workflow state:
a killed worker resumes at the page that had not landed, and long runs continue as new with that state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from temporalio import workflow

from workflows.dbt_requests import ask_for_build
from workflows.policies import LONG_JOB_RETRY, seconds_and_rate

with workflow.unsafe.imports_passed_through():
    from activities.vtex_catalog import (
        CatalogCounts,
        CatalogCursors,
        CatalogPageInput,
        RemovedSkusInput,
        VtexCatalogActivities,
    )
    from clients.vtex import SKU_IDS_MAX_PAGE_SIZE
    from core.constants import PROGRESS_QUERY, VTEX_API_TASK_QUEUE

# A page of 1,000 SKUs at a small budget takes minutes; heartbeats show the worker is alive.
PAGE_TIMEOUT = timedelta(minutes=30)


@dataclass
class CatalogSyncResult:
    """What the sync found (the result, the ``progress`` query and the memo)."""

    counts: CatalogCounts = field(default_factory=CatalogCounts)
    pages: int = 0
    seconds: float = 0.0  # since the sync started, across continue-as-new
    skus_per_second: float = 0.0
    done: bool = False

    def summary(self) -> str:
        """The counts in one line, for people (the memo, ``hub syncs``)."""
        c = self.counts
        return (
            f"{'done' if self.done else f'page {self.pages + 1}'}: {c.read} SKUs read, {c.changed} changed,"
            f" {c.unchanged} unchanged, {c.quarantined} quarantined, {c.removed} removed;"
            f" {self.seconds:.0f} s, {self.skus_per_second}/s"
        )


@dataclass
class CatalogSyncInput:
    """The budget (catalog requests per second) and, carried over continue-as-new, where the sync is."""

    requests_per_second: float = 100.0
    api_task_queue: str = VTEX_API_TASK_QUEUE
    page_size: int = SKU_IDS_MAX_PAGE_SIZE
    pages_per_run: int = 10  # then continue-as-new
    heartbeat_seconds: float = 30.0  # how soon a page whose worker died is tried again
    # Carried over continue-as-new:
    page: int = 1
    cursors: CatalogCursors = field(default_factory=CatalogCursors)
    result: CatalogSyncResult = field(default_factory=CatalogSyncResult)
    started_at: str = ""


@workflow.defn
class CatalogSyncWorkflow:
    def __init__(self) -> None:
        self._result = CatalogSyncResult()

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> CatalogSyncResult:
        return self._result

    @workflow.run
    async def run(self, params: CatalogSyncInput) -> CatalogSyncResult:
        state = params if params.started_at else replace(params, started_at=workflow.now().isoformat())
        self._result = state.result
        for _ in range(state.pages_per_run):
            page = await workflow.execute_activity_method(
                VtexCatalogActivities.land_catalog_page,
                CatalogPageInput(state.page, state.cursors, state.requests_per_second, state.page_size),
                task_queue=state.api_task_queue,
                start_to_close_timeout=PAGE_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=state.heartbeat_seconds),
                retry_policy=LONG_JOB_RETRY,
            )
            self._result.counts.add(page.counts)
            self._result.pages += 1
            state = replace(state, page=state.page + 1, cursors=page.cursors)
            self._publish(state)
            if page.listed < state.page_size:
                return await self._land_removed(state)
        workflow.continue_as_new(replace(state, result=self._result))

    async def _land_removed(self, state: CatalogSyncInput) -> CatalogSyncResult:
        removed = await workflow.execute_activity_method(
            VtexCatalogActivities.land_removed_skus,
            RemovedSkusInput(state.cursors, state.requests_per_second, state.page_size),
            task_queue=state.api_task_queue,
            start_to_close_timeout=PAGE_TIMEOUT,
            heartbeat_timeout=timedelta(seconds=state.heartbeat_seconds),
            retry_policy=LONG_JOB_RETRY,
        )
        self._result.counts.add(removed.counts)
        self._result.done = True
        self._publish(state)
        if self._result.counts.changed or self._result.counts.removed:
            await ask_for_build("vtex catalog sync", state.api_task_queue)
        return self._result

    def _publish(self, state: CatalogSyncInput) -> None:
        """Refresh the duration and put the counts in the memo, where the UI shows them."""
        result = self._result
        result.seconds, result.skus_per_second = seconds_and_rate(state.started_at, result.counts.read)
        workflow.upsert_memo({"progress": result.summary()})

"""The scheduled flows' Temporal Schedules: their ids, workflow types and intervals, and running one now.

The warehouse worker creates the schedules (``workers.schedules``); ``hub syncs``, the metrics poll and
the demo find them here without loading the workflows.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleDescription,
)

if TYPE_CHECKING:
    from core.settings import Settings

VTEX_FEED_RECONCILE = "vtex-orders-feed-reconcile"
VTEX_HOOK_CONFIG = "vtex-orders-hook-config"
VTEX_CATALOG_SYNC = "vtex-catalog-sync"
VTEX_CUSTOMER_SYNC = "vtex-customer-sync"
LEAD_WAREHOUSE_SYNC = "lead-warehouse-sync"
RETRIGGER_AFTER = 3.0  # seconds a trigger may take to start a run before it is sent again
# Each schedule's workflow type (its class name) and the task queue its runs go to.
WORKFLOW_TYPES = {
    VTEX_FEED_RECONCILE: "VtexFeedReconcileWorkflow",
    VTEX_HOOK_CONFIG: "VtexHookConfigWorkflow",
    VTEX_CATALOG_SYNC: "CatalogSyncWorkflow",
    VTEX_CUSTOMER_SYNC: "CustomerSyncWorkflow",
    LEAD_WAREHOUSE_SYNC: "LeadWarehouseSyncWorkflow",
}


@dataclass(frozen=True)
class Scheduled:
    schedule_id: str
    workflow_type: str
    every: timedelta


def scheduled(settings: Settings) -> list[Scheduled]:
    """Every schedule with its interval under ``settings``."""
    every = {
        VTEX_FEED_RECONCILE: settings.vtex_reconcile_interval_seconds,
        VTEX_HOOK_CONFIG: settings.vtex_hook_reassert_interval_seconds,
        VTEX_CATALOG_SYNC: settings.vtex_catalog_sync_interval_seconds,
        VTEX_CUSTOMER_SYNC: settings.vtex_customer_sync_interval_seconds,
        LEAD_WAREHOUSE_SYNC: settings.lead_warehouse_sync_interval_seconds,
    }
    return [
        Scheduled(schedule_id, workflow_type, timedelta(seconds=every[schedule_id]))
        for schedule_id, workflow_type in WORKFLOW_TYPES.items()
    ]


def _latest(description: ScheduleDescription) -> str | None:
    recent = description.info.recent_actions
    if not recent or not isinstance(recent[-1].action, ScheduleActionExecutionStartWorkflow):
        return None
    return recent[-1].action.workflow_id


async def latest_run_id(client: Client, schedule_id: str) -> str | None:
    """The workflow id of the schedule's most recent run, or None if it has not started one."""
    return _latest(await client.get_schedule_handle(schedule_id).describe())


async def trigger_run(client: Client, schedule_id: str, start_within: float = 30.0) -> tuple[str, bool]:
    """Start a run of the schedule now; the workflow id of that run and True.

    When a run of the schedule is still going, its overlap policy (SKIP) would skip the trigger: the
    workflow id of that run and False instead.
    """
    schedule = client.get_schedule_handle(schedule_id)
    description = await schedule.describe()
    running = description.info.running_actions
    if running and isinstance(running[-1], ScheduleActionExecutionStartWorkflow):
        return running[-1].workflow_id, False
    before = _latest(description)
    deadline = time.monotonic() + start_within
    while True:
        # A run's workflow id carries its start time to the second: a trigger in the second the last
        # run started in collides with that run's id and starts nothing. Nor is a dropped trigger
        # reported, so one that has started nothing after a while is sent again (under SKIP a second
        # trigger never starts a second run beside the first).
        await schedule.trigger()
        retrigger_at = time.monotonic() + RETRIGGER_AFTER
        while (latest := await latest_run_id(client, schedule_id)) in (None, before):
            if time.monotonic() > deadline:
                raise TimeoutError(f"schedule {schedule_id} did not start a run within {start_within:.0f} s")
            if time.monotonic() > retrigger_at:
                break
            await asyncio.sleep(0.25)
        else:
            assert latest is not None
            return latest, True

"""Temporal Schedules of the scheduled flows, created or brought up to date at worker start."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.settings import Settings
from workflows.vtex_catalog_sync import CatalogSyncInput, CatalogSyncWorkflow
from workflows.vtex_customer_sync import CustomerSyncInput, CustomerSyncWorkflow
from workflows.vtex_feed_reconcile import VtexFeedReconcileInput, VtexFeedReconcileWorkflow
from workflows.vtex_hook_config import VtexHookConfigInput, VtexHookConfigWorkflow

log = logging.getLogger("workers.schedules")

VTEX_FEED_RECONCILE = "vtex-orders-feed-reconcile"
VTEX_HOOK_CONFIG = "vtex-orders-hook-config"
VTEX_CATALOG_SYNC = "vtex-catalog-sync"
VTEX_CUSTOMER_SYNC = "vtex-customer-sync"


@dataclass
class ScheduledFlow:
    schedule_id: str
    workflow: Callable[..., Any]
    arg: Any
    every: timedelta
    # A small flow runs at once when its schedule is first created; a sync waits for its first interval
    # (or `temporal schedule trigger`): a new deployment should not start reading the whole catalog.
    trigger_immediately: bool = True
    # A small flow gives up when its next run is due; a sync may outlast its interval (a large catalog)
    # and must finish, or the next run would start over: SKIP keeps the next one waiting meanwhile.
    may_outlast_interval: bool = False


def scheduled_flows(settings: Settings) -> list[ScheduledFlow]:
    return [
        ScheduledFlow(
            VTEX_FEED_RECONCILE,
            VtexFeedReconcileWorkflow.run,
            VtexFeedReconcileInput(api_task_queue=settings.vtex_api_task_queue),
            timedelta(seconds=settings.vtex_reconcile_interval_seconds),
        ),
        ScheduledFlow(
            VTEX_HOOK_CONFIG,
            VtexHookConfigWorkflow.run,
            VtexHookConfigInput(hook_url=settings.vtex_hook_url, api_task_queue=settings.vtex_api_task_queue),
            timedelta(seconds=settings.vtex_hook_reassert_interval_seconds),
        ),
        ScheduledFlow(
            VTEX_CATALOG_SYNC,
            CatalogSyncWorkflow.run,
            CatalogSyncInput(
                requests_per_second=settings.vtex_catalog_requests_per_second,
                api_task_queue=settings.vtex_api_task_queue,
            ),
            timedelta(seconds=settings.vtex_catalog_sync_interval_seconds),
            trigger_immediately=False,
            may_outlast_interval=True,
        ),
        ScheduledFlow(
            VTEX_CUSTOMER_SYNC,
            CustomerSyncWorkflow.run,
            CustomerSyncInput(
                overlap_seconds=settings.vtex_customer_sync_overlap_seconds,
                api_task_queue=settings.vtex_api_task_queue,
            ),
            timedelta(seconds=settings.vtex_customer_sync_interval_seconds),
            trigger_immediately=False,
            may_outlast_interval=True,
        ),
    ]


def schedule_of(flow: ScheduledFlow, settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            flow.workflow,
            flow.arg,
            id=flow.schedule_id,  # Temporal appends the scheduled time, so each run has its own id
            task_queue=settings.vtex_orders_task_queue,
            execution_timeout=None if flow.may_outlast_interval else flow.every,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=flow.every)]),
        # A run still going when the next is due: skip the next, never run two at once. Runs missed while
        # Temporal was down are made up for one interval back at most (SKIP then keeps it to one run).
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=flow.every),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create each schedule, or update it to the current settings if it exists (any worker may run this)."""
    for flow in scheduled_flows(settings):
        schedule = schedule_of(flow, settings)
        try:
            await client.create_schedule(
                flow.schedule_id, schedule, trigger_immediately=flow.trigger_immediately
            )
            log.info("schedule %s created (every %s)", flow.schedule_id, flow.every)
        except ScheduleAlreadyRunningError:

            def replace(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(flow.schedule_id).update(replace)
            log.info("schedule %s updated (every %s)", flow.schedule_id, flow.every)


async def latest_run_id(client: Client, schedule_id: str) -> str | None:
    """The workflow id of the schedule's most recent run, or None if it has not started one."""
    recent = (await client.get_schedule_handle(schedule_id).describe()).info.recent_actions
    if not recent or not isinstance(recent[-1].action, ScheduleActionExecutionStartWorkflow):
        return None
    return recent[-1].action.workflow_id


async def trigger_run(client: Client, schedule_id: str, start_within: float = 30.0) -> tuple[str, bool]:
    """Start a run of the schedule now; the workflow id of that run and True.

    When a run of the schedule is still going, its overlap policy (SKIP) would skip the trigger: the
    workflow id of that run and False instead.
    """
    schedule = client.get_schedule_handle(schedule_id)
    running = (await schedule.describe()).info.running_actions
    if running and isinstance(running[-1], ScheduleActionExecutionStartWorkflow):
        return running[-1].workflow_id, False
    before = await latest_run_id(client, schedule_id)
    await schedule.trigger()
    deadline = time.monotonic() + start_within
    while (latest := await latest_run_id(client, schedule_id)) in (None, before):
        if time.monotonic() > deadline:
            raise TimeoutError(f"schedule {schedule_id} did not start a run within {start_within:.0f} s")
        await asyncio.sleep(0.5)
    assert latest is not None
    return latest, True

"""Temporal Schedules of the scheduled flows, created or brought up to date at warehouse worker start."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from contracts.schedules import (
    LEAD_WAREHOUSE_SYNC,
    VTEX_CATALOG_SYNC,
    VTEX_CUSTOMER_SYNC,
    VTEX_FEED_RECONCILE,
    VTEX_HOOK_CONFIG,
    Scheduled,
    scheduled,
)
from core.settings import Settings
from workflows.lead_warehouse_sync import LeadSyncInput, LeadWarehouseSyncWorkflow
from workflows.vtex_catalog_sync import CatalogSyncInput, CatalogSyncWorkflow
from workflows.vtex_customer_sync import CustomerSyncInput, CustomerSyncWorkflow
from workflows.vtex_feed_reconcile import VtexFeedReconcileInput, VtexFeedReconcileWorkflow
from workflows.vtex_hook_config import VtexHookConfigInput, VtexHookConfigWorkflow

log = logging.getLogger("workers.schedules")


@dataclass
class Action:
    workflow: Callable[..., Any]
    arg: Any
    # A small flow runs at once when its schedule is first created; a sync waits for its first interval
    # (or `temporal schedule trigger`): a new deployment should not start reading the whole catalog.
    trigger_immediately: bool = True
    # A small flow gives up when its next run is due; a sync may outlast its interval (a large catalog)
    # and must finish, or the next run would start over: SKIP keeps the next one waiting meanwhile.
    may_outlast_interval: bool = False


def actions(settings: Settings) -> dict[str, Action]:
    """What each schedule starts, by schedule id."""
    api_queue = settings.vtex_api_task_queue
    return {
        VTEX_FEED_RECONCILE: Action(
            VtexFeedReconcileWorkflow.run, VtexFeedReconcileInput(api_task_queue=api_queue)
        ),
        VTEX_HOOK_CONFIG: Action(
            VtexHookConfigWorkflow.run,
            VtexHookConfigInput(hook_url=settings.vtex_hook_url, api_task_queue=api_queue),
        ),
        VTEX_CATALOG_SYNC: Action(
            CatalogSyncWorkflow.run,
            CatalogSyncInput(
                requests_per_second=settings.vtex_catalog_requests_per_second, api_task_queue=api_queue
            ),
            trigger_immediately=False,
            may_outlast_interval=True,
        ),
        VTEX_CUSTOMER_SYNC: Action(
            CustomerSyncWorkflow.run,
            CustomerSyncInput(
                overlap_seconds=settings.vtex_customer_sync_overlap_seconds, api_task_queue=api_queue
            ),
            trigger_immediately=False,
            may_outlast_interval=True,
        ),
        # The first run lands the portal's history so far; later ones what changed in about a minute.
        LEAD_WAREHOUSE_SYNC: Action(
            LeadWarehouseSyncWorkflow.run,
            LeadSyncInput(
                overlap_seconds=settings.lead_warehouse_sync_overlap_seconds,
                build_task_queue=settings.dbt_task_queue,
            ),
            may_outlast_interval=True,
        ),
    }


def schedule_of(flow: Scheduled, action: Action, settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            action.workflow,
            action.arg,
            id=flow.schedule_id,  # Temporal appends the scheduled time, so each run has its own id
            task_queue=settings.vtex_orders_task_queue,
            execution_timeout=None if action.may_outlast_interval else flow.every,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=flow.every)]),
        # A run still going when the next is due: skip the next, never run two at once. Runs missed while
        # Temporal was down are made up for one interval back at most (SKIP then keeps it to one run).
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=flow.every),
    )


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create each schedule, or update it to the current settings if it exists (any worker may run this)."""
    starts = actions(settings)
    for flow in scheduled(settings):
        action = starts[flow.schedule_id]
        schedule = schedule_of(flow, action, settings)
        try:
            await client.create_schedule(
                flow.schedule_id, schedule, trigger_immediately=action.trigger_immediately
            )
            log.info("schedule %s created (every %s)", flow.schedule_id, flow.every)
        except ScheduleAlreadyRunningError:

            def replace(current: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                # Settings own the action, spec and policy; support owns the state: a schedule paused
                # (with its note) stays paused through every worker start and rollout.
                return ScheduleUpdate(
                    schedule=dataclasses.replace(new, state=current.description.schedule.state)
                )

            await client.get_schedule_handle(flow.schedule_id).update(replace)
            log.info("schedule %s updated (every %s)", flow.schedule_id, flow.every)

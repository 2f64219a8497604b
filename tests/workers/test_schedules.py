"""The scheduled flows are registered as Temporal Schedules (overlap SKIP), idempotently."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from workers.schedules import (
    VTEX_CATALOG_SYNC,
    VTEX_CUSTOMER_SYNC,
    VTEX_FEED_RECONCILE,
    VTEX_HOOK_CONFIG,
    ensure_schedules,
)


async def test_schedules_are_created_then_updated(temporal_env: WorkflowEnvironment, task_queue: str) -> None:
    client = temporal_env.client
    settings = Settings(
        environment="test", vtex_orders_task_queue=task_queue, vtex_reconcile_interval_seconds=120
    )
    try:
        await ensure_schedules(client, settings)
        changed = settings.model_copy(update={"vtex_reconcile_interval_seconds": 60})
        await ensure_schedules(client, changed)  # a second worker, or a new deploy

        reconcile = await client.get_schedule_handle(VTEX_FEED_RECONCILE).describe()
        assert reconcile.schedule.spec.intervals[0].every == timedelta(seconds=60)
        assert reconcile.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        action = reconcile.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "VtexFeedReconcileWorkflow"
        assert action.task_queue == task_queue

        hook = await client.get_schedule_handle(VTEX_HOOK_CONFIG).describe()
        assert hook.schedule.spec.intervals[0].every == timedelta(
            seconds=settings.vtex_hook_reassert_interval_seconds
        )
    finally:
        for schedule_id in (VTEX_FEED_RECONCILE, VTEX_HOOK_CONFIG, VTEX_CATALOG_SYNC, VTEX_CUSTOMER_SYNC):
            await client.get_schedule_handle(schedule_id).delete()

"""The scheduled flows are registered as Temporal Schedules (overlap SKIP), idempotently."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment

from contracts.schedules import (
    VTEX_CATALOG_SYNC,
    VTEX_CUSTOMER_SYNC,
    VTEX_FEED_RECONCILE,
    VTEX_HOOK_CONFIG,
    latest_run_id,
)
from core.settings import Settings
from tests.conftest import binary
from tests.hub import running_hub
from tests.support import eventually
from warehouse.tables import VTEX_CUSTOMERS, VTEX_SKUS
from workers.schedules import ensure_schedules
from workflows.vtex_catalog_sync import CatalogSyncResult
from workflows.vtex_customer_sync import CustomerSyncResult

T = TypeVar("T")


async def test_schedules_are_created_then_updated(temporal_env: WorkflowEnvironment, task_queue: str) -> None:
    client = temporal_env.client
    settings = Settings(
        environment="test", vtex_orders_task_queue=task_queue, vtex_reconcile_interval_seconds=120
    )
    try:
        await ensure_schedules(client, settings)
        # Support paused the customer sync during a VTEX incident.
        await client.get_schedule_handle(VTEX_CUSTOMER_SYNC).pause(note="VTEX incident 4711")
        changed = settings.model_copy(update={"vtex_reconcile_interval_seconds": 60})
        await ensure_schedules(client, changed)  # a second worker, or a new deploy

        paused = await client.get_schedule_handle(VTEX_CUSTOMER_SYNC).describe()
        assert (paused.schedule.state.paused, paused.schedule.state.note) == (True, "VTEX incident 4711")

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


async def test_sync_schedules_run_when_triggered_from_the_temporal_cli(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    client = temporal_env.client
    simulator = {"vtex_catalog_skus": 300, "vtex_customers": 150}
    async with running_hub(
        client, sqlite_url, task_queue, simulator=simulator, vtex_catalog_requests_per_second=400,
        **warehouse_settings,
    ) as hub:  # fmt: skip
        try:
            await ensure_schedules(client, hub.settings)
            catalog = await client.get_schedule_handle(VTEX_CATALOG_SYNC).describe()
            customers = await client.get_schedule_handle(VTEX_CUSTOMER_SYNC).describe()
            assert catalog.schedule.spec.intervals[0].every == timedelta(hours=6)
            assert customers.schedule.spec.intervals[0].every == timedelta(days=1)
            for described in (catalog, customers):
                assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
                assert described.schedule.policy.catchup_window == described.schedule.spec.intervals[0].every
                assert described.info.num_actions == 0  # a sync does not start when its schedule is made
                action = described.schedule.action
                assert isinstance(action, ScheduleActionStartWorkflow)
                assert action.task_queue == hub.settings.vtex_orders_task_queue
                assert action.execution_timeout is None  # a long sync finishes rather than start over
            catalog_action = catalog.schedule.action
            assert isinstance(catalog_action, ScheduleActionStartWorkflow)
            assert catalog_action.workflow == "CatalogSyncWorkflow"

            address = client.service_client.config.target_host
            for schedule_id in (VTEX_CATALOG_SYNC, VTEX_CUSTOMER_SYNC):
                trigger = [binary("temporal"), "schedule", "trigger", "--schedule-id", schedule_id]
                subprocess.run([*trigger, "--address", address], check=True, capture_output=True, timeout=30)

            catalog_result = await finished_run(client, VTEX_CATALOG_SYNC, CatalogSyncResult)
            customer_result = await finished_run(client, VTEX_CUSTOMER_SYNC, CustomerSyncResult)
            assert catalog_result.counts.changed == 300
            assert await hub.bronze_counts(VTEX_SKUS) == (300, 300)
            assert customer_result.read == 150
            assert (await hub.bronze_counts(VTEX_CUSTOMERS))[0] == customer_result.landed > 0
        finally:
            for schedule_id in (VTEX_FEED_RECONCILE, VTEX_HOOK_CONFIG, VTEX_CATALOG_SYNC, VTEX_CUSTOMER_SYNC):
                await client.get_schedule_handle(schedule_id).delete()


async def finished_run(client: Client, schedule_id: str, result_type: type[T]) -> T:
    """The result of the run the schedule started (once it has started one)."""

    workflow_id = await eventually(lambda: latest_run_id(client, schedule_id), timeout=30)
    return await client.get_workflow_handle(workflow_id, result_type=result_type).result()

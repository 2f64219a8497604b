"""VtexFeedReconcileWorkflow: on a Schedule, hands order changes the hook missed to their workflows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.errors import PERMANENT_FAILURE
    from activities.vtex_feed import CommitFeedInput, DeliverFeedInput, ReadFeedInput, VtexFeedActivities
    from core.constants import VTEX_API_TASK_QUEUE

STEP_TIMEOUT = timedelta(seconds=60)
# A scheduled run may give up: the next one reads the same uncommitted items again.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    non_retryable_error_types=[PERMANENT_FAILURE],
)


@dataclass
class VtexFeedReconcileInput:
    api_task_queue: str = VTEX_API_TASK_QUEUE
    max_lots: int = 100  # 10 items each; the rest waits for the next scheduled run


@dataclass
class VtexFeedReconcileResult:
    lots: int = 0
    delivered: int = 0
    quarantined: int = 0


@workflow.defn
class VtexFeedReconcileWorkflow:
    @workflow.run
    async def run(self, params: VtexFeedReconcileInput) -> VtexFeedReconcileResult:
        result = VtexFeedReconcileResult()
        while result.lots < params.max_lots:
            lot = await workflow.execute_activity_method(
                VtexFeedActivities.read_order_feed,
                ReadFeedInput(),
                task_queue=params.api_task_queue,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY,
            )
            if not lot.items:
                break
            delivered = await workflow.execute_activity_method(
                VtexFeedActivities.deliver_feed_items,
                DeliverFeedInput(items=lot.items),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY,
            )
            # Commit only what is now durable in an order's workflow (or in quarantine).
            await workflow.execute_activity_method(
                VtexFeedActivities.commit_order_feed,
                CommitFeedInput(handles=delivered.handles),
                task_queue=params.api_task_queue,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY,
            )
            result.lots += 1
            result.delivered += delivered.delivered
            result.quarantined += delivered.quarantined
        return result

"""VtexHookConfigWorkflow: a Schedule re-saves the Orders hook, which VTEX deletes after 3 idle days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.errors import PERMANENT_FAILURE
    from activities.vtex_feed import HookConfig, VtexFeedActivities
    from core.constants import VTEX_API_TASK_QUEUE

RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=20,
    non_retryable_error_types=[PERMANENT_FAILURE],
)


@dataclass
class VtexHookConfigInput:
    hook_url: str
    api_task_queue: str = VTEX_API_TASK_QUEUE


@dataclass
class VtexHookConfigResult:
    hook_url: str


@workflow.defn
class VtexHookConfigWorkflow:
    @workflow.run
    async def run(self, params: VtexHookConfigInput) -> VtexHookConfigResult:
        saved = await workflow.execute_activity_method(
            VtexFeedActivities.save_hook_config,
            HookConfig(url=params.hook_url),
            task_queue=params.api_task_queue,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
        return VtexHookConfigResult(hook_url=saved.url)

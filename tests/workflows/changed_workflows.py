"""Workflow definitions changed the way a careless edit would change them, to prove the replay check fails.

Each has the name of a real workflow and takes another path through it than its recorded histories.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.vtex_feed import HookConfig, VtexFeedActivities
    from workflows.vtex_hook_config import VtexHookConfigInput, VtexHookConfigResult


@workflow.defn(name="VtexHookConfigWorkflow")
class HookConfigWithAPauseFirst:
    """VtexHookConfigWorkflow with a timer added before its one activity."""

    @workflow.run
    async def run(self, params: VtexHookConfigInput) -> VtexHookConfigResult:
        await workflow.sleep(timedelta(milliseconds=10))
        saved = await workflow.execute_activity_method(
            VtexFeedActivities.save_hook_config,
            HookConfig(url=params.hook_url),
            task_queue=params.api_task_queue,
            start_to_close_timeout=timedelta(seconds=30),
        )
        return VtexHookConfigResult(hook_url=saved.url)

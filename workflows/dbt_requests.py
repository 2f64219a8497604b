"""Asking for a dbt build from a workflow that landed something (the syncs and the backfill)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.dbt import BuildRequestActivities
    from contracts.dbt_build import BuildRequest

# Added after these workflows first ran: runs recorded before it never asked, and replay the same.
PATCH = "request-dbt-build"
REQUEST_TIMEOUT = timedelta(seconds=30)
# Temporal is there (this workflow runs on it); a few tries cover a restart.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10
)


async def ask_for_build(reason: str, task_queue: str) -> None:
    """Ask the warehouse's build workflow for a build of silver and gold (coalesced with others)."""
    if not workflow.patched(PATCH):
        return
    await workflow.execute_activity_method(
        BuildRequestActivities.request_dbt_build,
        BuildRequest(reason),
        task_queue=task_queue,
        start_to_close_timeout=REQUEST_TIMEOUT,
        retry_policy=RETRY,
    )

"""``trigger_run`` (``hub syncs trigger``, the demo) starts a run of a schedule every time it is asked."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from contracts.schedules import trigger_run


@workflow.defn
class InstantWorkflow:
    """A run that ends within the second it started in, as a sync with nothing new to read does."""

    @workflow.run
    async def run(self) -> None:
        return None


async def test_a_trigger_right_after_a_quick_run_starts_a_new_run(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = temporal_env.client
    schedule_id = f"instant-{uuid.uuid4().hex[:8]}"
    await client.create_schedule(
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow(InstantWorkflow.run, id=schedule_id, task_queue=task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
            policy=SchedulePolicy(),  # overlap SKIP, as every hub schedule
        ),
    )
    runner = UnsandboxedWorkflowRunner()
    try:
        async with Worker(client, task_queue=task_queue, workflows=[InstantWorkflow], workflow_runner=runner):
            runs = []
            for _ in range(3):
                # The next trigger comes within the second the last run started in: its workflow id
                # (the schedule's id and that second) is taken.
                workflow_id, started = await trigger_run(client, schedule_id, start_within=20)
                assert started
                await client.get_workflow_handle(workflow_id).result()
                runs.append(workflow_id)
            assert len(set(runs)) == 3
    finally:
        await client.get_schedule_handle(schedule_id).delete()

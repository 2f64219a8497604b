"""A workflow with as many no-op activities as a lead distribution: the engine's own cost, for comparison."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

# Activities a delivered lead runs: status x3 (received, routed, delivered), fetch, route, deliver,
# Zoho update, event.
ACTIVITIES_PER_LEAD = 8


@dataclass
class NoOpInput:
    step: int


@activity.defn
async def no_op(params: NoOpInput) -> None:
    return None


@dataclass
class SkeletonInput:
    activities: int = ACTIVITIES_PER_LEAD


@workflow.defn
class SkeletonWorkflow:
    @workflow.run
    async def run(self, params: SkeletonInput) -> None:
        for step in range(params.activities):
            await workflow.execute_activity(
                no_op, NoOpInput(step), start_to_close_timeout=timedelta(seconds=30)
            )

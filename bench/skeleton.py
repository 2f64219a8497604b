"""A workflow with as many no-op activities as a lead distribution: the engine's own cost, for comparison.

The number is not typed here: ``bench/leads.py`` counts the activities a delivered lead's history
scheduled and runs the skeleton with that many.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow


@dataclass
class NoOpInput:
    step: int


@activity.defn
async def no_op(params: NoOpInput) -> None:
    return None


@dataclass
class SkeletonInput:
    activities: int


@workflow.defn
class SkeletonWorkflow:
    @workflow.run
    async def run(self, params: SkeletonInput) -> None:
        for step in range(params.activities):
            await workflow.execute_activity(
                no_op, NoOpInput(step), start_to_close_timeout=timedelta(seconds=30)
            )

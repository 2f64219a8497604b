"""A workflow with as many no-op activities as a lead distribution: the engine's own cost, for comparison.

The numbers are not typed here: ``bench/leads.py`` counts the activities and the local activities a
delivered lead's history recorded and runs the skeleton with that many: the activities one after the
other, then the local ones together (as a lead tells Zoho and the subscribers at once).
"""

from __future__ import annotations

import asyncio
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
    local_activities: int = 0


@workflow.defn
class SkeletonWorkflow:
    @workflow.run
    async def run(self, params: SkeletonInput) -> None:
        for step in range(params.activities):
            await workflow.execute_activity(
                no_op, NoOpInput(step), start_to_close_timeout=timedelta(seconds=30)
            )
        await asyncio.gather(
            *(
                workflow.execute_local_activity(
                    no_op, NoOpInput(step), start_to_close_timeout=timedelta(seconds=30)
                )
                for step in range(params.local_activities)
            )
        )

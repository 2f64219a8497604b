"""Keep the warehouse's scheduled work out of a benchmark's measured window.

The local stack runs everything on the same cores: the lead warehouse sync every minute, the dbt build
it asks for (a child process and the BigQuery emulator busy for tens of seconds), the VTEX syncs. Left
running, they land in one measured phase and not in the other (the lead flow's, the skeleton's), by
chance. So a phase measured under ``warehouse_paused`` starts once no dbt build runs or waits, with the
Temporal Schedules paused; it resumes those it paused when it ends. In production the `warehouse` role
runs on workers of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from temporalio.client import Client, ScheduleHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.dbt_build import STATUS_QUERY, DbtBuildStatus, dbt_build_workflow_id
from contracts.schedules import WORKFLOW_TYPES
from core.settings import Settings

NOTE = "paused by a benchmark while it measures"


@asynccontextmanager
async def warehouse_paused(client: Client, settings: Settings, wait: float = 300) -> AsyncIterator[None]:
    """Pause the Schedules, wait up to ``wait`` seconds for their runs under way and the dbt build to
    end, then measure; resume what this paused (one another pause meanwhile leaves paused)."""
    paused = []
    try:
        for schedule_id in WORKFLOW_TYPES:
            handle = client.get_schedule_handle(schedule_id)
            try:
                state = (await handle.describe()).schedule.state
                if state.paused and state.note != NOTE:
                    continue  # someone else's pause: left as it is
                await handle.pause(note=NOTE)  # (again, where a run of this that crashed left its own)
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue
            paused.append(handle)
        deadline = time.monotonic() + wait
        await scheduled_runs_ended(client, deadline)
        await dbt_build_idle(client, settings, deadline)
        yield
    finally:
        await resume(paused)


async def resume(paused: list[ScheduleHandle]) -> None:
    """Unpause each Schedule this paused that is still paused by it; say which could not be."""
    for handle in paused:
        try:
            state = (await handle.describe()).schedule.state
            if state.paused and state.note == NOTE:
                await handle.unpause(note="the benchmark's measurement ended")
        except Exception as error:  # the others still get resumed
            print(f"schedule {handle.id} left paused ({error}): hub syncs status shows it", flush=True)


async def scheduled_runs_ended(client: Client, deadline: float) -> None:
    """Until no run a Schedule started is under way: a sync started before the pause asks for a build."""
    types = ", ".join(f"'{name}'" for name in WORKFLOW_TYPES.values())
    query = f"WorkflowType IN ({types}) AND ExecutionStatus = 'Running'"

    async def running() -> bool:
        return bool((await client.count_workflows(query)).count)

    await wait_while(running, "the scheduled runs under way", deadline)


async def dbt_build_idle(client: Client, settings: Settings, deadline: float) -> None:
    """Until the dbt build workflow neither builds nor holds a request (it builds those it holds)."""
    handle = client.get_workflow_handle(dbt_build_workflow_id(settings))

    async def busy() -> bool:
        try:
            status = await handle.query(STATUS_QUERY, result_type=DbtBuildStatus)
        except (RPCError, WorkflowQueryFailedError):
            return False  # no build workflow (none asked for yet), or it ended: nothing to wait for
        return status.building or bool(status.pending)

    await wait_while(busy, "the dbt build", deadline)


async def wait_while(busy: Callable[[], Awaitable[bool]], what: str, deadline: float) -> None:
    """Poll ``busy`` until it is False, saying once that it waits; past ``deadline``, measure anyway."""
    said = False
    while await busy():
        if time.monotonic() > deadline:
            print(f"{what} still busy: measuring beside it", flush=True)
            return
        if not said:
            print(f"waiting for {what} to end before measuring ...", flush=True)
            said = True
        await asyncio.sleep(2)

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.dbt_build import STATUS_QUERY, DbtBuildStatus, dbt_build_workflow_id
from contracts.schedules import WORKFLOW_TYPES
from core.settings import Settings

NOTE = "paused by a benchmark while it measures"


@asynccontextmanager
async def warehouse_paused(client: Client, settings: Settings, wait: float = 300) -> AsyncIterator[None]:
    """Pause the Schedules, wait up to ``wait`` seconds for the dbt build to be idle, then measure."""
    paused = []
    try:
        for schedule_id in WORKFLOW_TYPES:
            handle = client.get_schedule_handle(schedule_id)
            try:
                if (await handle.describe()).schedule.state.paused:
                    continue  # someone else's pause: left as it is
                await handle.pause(note=NOTE)
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue
            paused.append(handle)
        await dbt_build_idle(client, settings, wait)
        yield
    finally:
        for handle in paused:
            await handle.unpause(note="the benchmark's measurement ended")


async def dbt_build_idle(client: Client, settings: Settings, wait: float) -> None:
    """Until the dbt build workflow neither builds nor holds a request (it builds those it holds)."""
    handle = client.get_workflow_handle(dbt_build_workflow_id(settings))
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            status = await handle.query(STATUS_QUERY, result_type=DbtBuildStatus)
        except (RPCError, WorkflowQueryFailedError):
            return  # no build workflow (none asked for yet), or it ended: nothing to wait for
        if not status.building and not status.pending:
            return
        if time.monotonic() > deadline:
            print(f"the dbt build is still busy after {wait:.0f} s: measuring beside it", flush=True)
            return
        if not said:
            print("waiting for the running dbt build to end before measuring ...", flush=True)
            said = True
        await asyncio.sleep(2)

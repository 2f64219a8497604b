"""Heartbeats for activities that run long: a dealer call, a sync page, a dbt build."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

from core.background import in_background

HEARTBEAT_EVERY_SECONDS = 2.0


@contextlib.asynccontextmanager
async def heartbeating(every: float = HEARTBEAT_EVERY_SECONDS) -> AsyncIterator[None]:
    """Heartbeat every ``every`` seconds while the block runs, slow queries and appends included.

    A page's activity must not look dead while it is alive: Temporal would start a second attempt beside
    it, and the two could land the same rows in different streams. The first beat comes after ``every``
    seconds: a block done sooner (most dealer calls) costs Temporal no heartbeat at all.
    """

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat()

    async with in_background(beat()):
        yield

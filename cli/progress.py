"""Following long work (a backfill, a sync) in Temporal: its progress every few seconds until it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

T = TypeVar("T")

PROGRESS_EVERY_SECONDS = 2.0
QUERY_TIMEOUT = timedelta(seconds=5)


async def follow(
    handle: WorkflowHandle[Any, T],
    query: str,
    result_type: type[T],
    show: Callable[[T], None],
    every: float = PROGRESS_EVERY_SECONDS,
) -> T:
    """Show the progress query's answer every ``every`` seconds, then the result; return the result.

    Raises what ``handle.result()`` raises when the work fails. Ctrl-C stops following, not the work.
    """
    result = asyncio.ensure_future(handle.result())
    try:
        while not result.done():
            # No worker answered in time, or the run is continuing as new: the next tick shows it.
            with contextlib.suppress(RPCError, WorkflowQueryFailedError):
                show(await handle.query(query, result_type=result_type, rpc_timeout=QUERY_TIMEOUT))
            await asyncio.wait([result], timeout=every)
    finally:
        result.cancel()  # stopped watching (Ctrl-C): the work goes on in Temporal
    final = result.result()
    show(final)
    return final

"""Deterministic helpers shared by workflows that gather signals before acting on them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow


async def until_quiet(count: Callable[[], int], window_seconds: float, max_windows: int) -> None:
    """Wait until ``count()`` did not grow for one window (at most ``max_windows`` of them).

    Signals fired together reach a workflow in any order; gathered, they are handled together.
    """
    for _ in range(max_windows):
        seen = count()
        await workflow.sleep(timedelta(seconds=window_seconds))
        if count() == seen:
            return

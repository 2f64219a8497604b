"""Deterministic helpers for workflows that gather signals and handle them in batches.

Signals fired together (a deal's stage changes, an order's hooks) reach a workflow in any order;
gathered, they are handled together, oldest first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Generic, TypeVar

from temporalio import workflow

T = TypeVar("T")

MAX_GATHER_WINDOWS = 10  # a steady trickle of signals cannot postpone handling forever


async def until_quiet(count: Callable[[], int], window_seconds: float, max_windows: int) -> None:
    """Wait until ``count()`` did not grow for one window (at most ``max_windows`` of them)."""
    for _ in range(max_windows):
        seen = count()
        await workflow.sleep(timedelta(seconds=window_seconds))
        if count() == seen:
            return


class Inbox(Generic[T]):
    """Signals received and not handled yet; carried over continue-as-new by the workflow."""

    def __init__(self) -> None:
        self.items: list[T] = []

    def put(self, item: T) -> None:
        self.items.append(item)

    async def next_batch(self, idle: timedelta, window_seconds: float) -> list[T] | None:
        """The next gathered batch, or None when nothing arrived for ``idle``.

        With a window of 0 the batch is what arrived so far (no timer): what comes while it is handled
        makes the next batch.

        No patch marker guards that branch: runs of the code before it with a window of 0 slept a
        zero-length timer, runs of the code since sleep none, and neither recorded a marker, so
        ``workflow.patched`` cannot tell them apart. Runs since (a window of 0 is the default) replay as
        recorded (saved history ``vtex_order_hooks_as_they_come``); a run from before with a window set
        to 0, if one is still open, needs ``temporal workflow reset``.
        """
        try:
            await workflow.wait_condition(lambda: bool(self.items), timeout=idle)
        except TimeoutError:
            return None
        if window_seconds > 0:
            await until_quiet(lambda: len(self.items), window_seconds, MAX_GATHER_WINDOWS)
        batch, self.items = self.items, []
        return batch


async def handle_batches(
    inbox: Inbox[T],
    handle: Callable[[list[T]], Awaitable[None]],
    *,
    idle: Callable[[], timedelta],
    window_seconds: float,
    per_run: int,
) -> bool:
    """Handle gathered batches until the inbox stays empty for ``idle()``.

    Returns True instead once this run handled ``per_run`` items or Temporal suggests continuing as new
    (the caller then continues as new, carrying ``inbox.items`` over), False when it went idle.
    """
    handled = 0
    while (batch := await inbox.next_batch(idle(), window_seconds)) is not None:
        await handle(batch)
        handled += len(batch)
        if handled >= per_run or workflow.info().is_continue_as_new_suggested():
            return True
    return False

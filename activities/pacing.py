"""Pacing and retries of the long VTEX jobs (backfill, catalog and customer syncs) inside their activities.

A long job makes thousands of requests from a few activities, so the task queue's rate limit (which
counts activities, not requests) cannot pace it. Each job names a budget in requests per second; the
budgets live here, one per rate, shared by that worker's activities. A request VTEX answers with 429 or
5xx waits (its ``Retry-After`` when given) and is tried again a few times inside the activity, heartbeating
meanwhile, before the activity fails and Temporal retries it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiolimiter import AsyncLimiter
from temporalio import activity

from activities.heartbeats import HEARTBEAT_EVERY_SECONDS
from clients.errors import TransientError

T = TypeVar("T")

ATTEMPTS = 5
BACKOFF_SECONDS = 1.0


class RequestBudgets:
    """One limiter per rate, built once per worker: the jobs there that run at one rate share its budget.

    Jobs at different rates (a backfill at 20/s, the catalog at 100/s) each keep their own; their sum is
    what the worker may send VTEX, so set the rates with the account's limit in mind.
    """

    def __init__(self) -> None:
        self._limiters: dict[float, AsyncLimiter] = {}

    def at(self, requests_per_second: float) -> AsyncLimiter:
        limiter = self._limiters.get(requests_per_second)
        if limiter is None:
            limiter = self._limiters[requests_per_second] = _limiter(requests_per_second)
        return limiter


def _limiter(requests_per_second: float) -> AsyncLimiter:
    """A budget of ``requests_per_second``. Below one a second, one request per period: a limiter's
    capacity under one request refuses every request (aiolimiter raises ValueError on each)."""
    if requests_per_second < 1:
        return AsyncLimiter(1, 1 / requests_per_second)
    return AsyncLimiter(requests_per_second, 1.0)


async def paced(limiter: AsyncLimiter, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` within the budget, tried again after VTEX's 429/5xx answers (up to ``ATTEMPTS`` times).

    Raises:
        TransientError: still refused after the last attempt.
        PermanentError: at once.
    """
    for attempt in range(1, ATTEMPTS + 1):
        async with limiter:
            try:
                return await call()
            except TransientError as error:
                if attempt == ATTEMPTS:
                    raise
                delay = error.retry_after or BACKOFF_SECONDS * 2 ** (attempt - 1)
        await wait_alive(delay, f"VTEX asked to wait {delay:.0f} s")
    raise AssertionError("unreachable")


async def wait_alive(seconds: float, note: str) -> None:
    """Sleep, heartbeating now and then, so a long Retry-After does not look like a dead worker."""
    while seconds > 0:
        activity.heartbeat(note)
        step = min(seconds, HEARTBEAT_EVERY_SECONDS)
        await asyncio.sleep(step)
        seconds -= step


def first_attempt() -> bool:
    """Whether this is the activity's first attempt; a retried sync page lands in new streams.

    A sync page chooses its rows by what bronze holds, so its retry lands fewer rows (or none) than an
    earlier attempt may have written at the workflow's offsets; appended there, they could be mistaken
    for that earlier append. In new streams they are simply the rows not landed yet.
    """
    return activity.info().attempt == 1

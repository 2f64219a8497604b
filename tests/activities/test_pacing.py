"""A long job's request budget paces it at the rate support asks for, also under one request a second."""

from __future__ import annotations

import asyncio

import pytest

from activities.pacing import RequestBudgets


@pytest.mark.parametrize("rate", [0.2, 0.5, 1.0, 20.0])
async def test_a_budget_lets_its_rate_through_and_holds_the_next_request(rate: float) -> None:
    """``hub backfill orders --rate 0.5`` (or a sync's rate setting under 1) once failed every request
    with aiolimiter's ValueError, retried by its activity without end."""
    limiter = RequestBudgets().at(rate)
    burst = max(1, int(rate))
    for _ in range(burst):
        await asyncio.wait_for(limiter.acquire(), 1)
    assert not limiter.has_capacity()  # the next request waits for the budget
    assert limiter.max_rate / limiter.time_period == pytest.approx(rate)

"""The lanes a lead's run sends Zoho's writes and the subscribers' events in, beside its flow."""

from __future__ import annotations

import asyncio

import pytest

from workflows.lead_distribution import Lane


async def test_a_lane_runs_its_steps_in_order_while_its_caller_goes_on() -> None:
    lane, done, release = Lane(), [], asyncio.Event()

    async def step(name: str) -> None:
        await release.wait()
        done.append(name)

    lane.add(lambda: step("first"))
    lane.add(lambda: step("second"))
    await asyncio.sleep(0)
    assert not lane.idle and done == []  # the caller went on
    release.set()
    while not lane.idle:
        await asyncio.sleep(0)
    assert done == ["first", "second"]
    lane.add(lambda: step("third"))  # a lane that went idle starts again
    while not lane.idle:
        await asyncio.sleep(0)
    assert done == ["first", "second", "third"]


async def test_a_step_that_raises_keeps_the_steps_after_it_and_is_raised_by_the_run() -> None:
    """Steps handle their partner's failures; one that raises is a bug. It is not dropped with the steps
    after it: the lane stays busy (no hand-on, no end) and ``check`` raises it in the flow."""
    lane, done = Lane(), []

    async def broken() -> None:
        raise KeyError("a bug")

    async def later() -> None:
        done.append("later")

    lane.add(broken)
    lane.add(later)
    for _ in range(3):
        await asyncio.sleep(0)
    assert isinstance(lane.failed, KeyError) and not lane.idle and done == []
    with pytest.raises(KeyError):
        lane.check()

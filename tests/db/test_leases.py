"""Leases in the portal database, on SQLite and PostgreSQL: one holder at a time, until it lets go or
its lease expires unrenewed."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import db.leases
from core.timeutil import utcnow
from db.engine import create_engine, lock_for_writing, session_factory
from db.leases import expire, held, release, renew, take
from db.models import Lease

LONG = timedelta(minutes=5)


async def expire_long_ago(sessions: async_sessionmaker[AsyncSession], name: str) -> None:
    """As if its holder stopped renewing it long ago (a worker that died)."""
    async with sessions.begin() as session:
        await session.execute(update(Lease).where(Lease.name == name).values(expires_at=utcnow() - LONG))


async def test_one_holder_at_a_time_until_it_lets_go_or_its_lease_expires(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = await take(sessions, "build", "worker-a", LONG)
    assert first.holder == "worker-a"
    assert (await take(sessions, "build", "worker-b", LONG)).holder == "worker-a"
    assert (await take(sessions, "other", "worker-b", LONG)).holder == "worker-b"  # leases are by name
    again = await take(sessions, "build", "worker-a", LONG)  # its holder takes it again: renewed
    assert again.holder == "worker-a" and again.expires_at >= first.expires_at

    await release(sessions, "build", "worker-b")  # not its lease: nothing
    assert (await take(sessions, "build", "worker-b", LONG)).holder == "worker-a"
    await release(sessions, "build", "worker-a")
    assert (await take(sessions, "build", "worker-b", LONG)).holder == "worker-b"

    await expire_long_ago(sessions, "build")
    assert await renew(sessions, "build", "worker-b", LONG)  # expired, but no one took it: still its own
    await expire_long_ago(sessions, "build")
    assert (await take(sessions, "build", "worker-c", LONG)).holder == "worker-c"
    assert not await renew(sessions, "build", "worker-b", LONG)  # the old holder learns it lost it


async def test_concurrent_takers_get_one_holder(database_url: str) -> None:
    """Six workers (an engine each, as processes have) take the free lease at once: one gets it."""
    engines = [create_engine(database_url) for _ in range(6)]
    try:
        holdings = await asyncio.gather(
            *(take(session_factory(engine), "build", f"worker-{n}", LONG) for n, engine in enumerate(engines))
        )
    finally:
        for engine in engines:
            await engine.dispose()
    assert len({holding.holder for holding in holdings}) == 1


async def test_a_second_holder_waits_until_the_first_lets_go(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order: list[str] = []

    async def work(holder: str, seconds: float) -> None:
        async with held(sessions, "build", holder, LONG, poll_seconds=0.05):  # released after the block
            order.append(f"{holder} starts")
            await asyncio.sleep(seconds)
            order.append(f"{holder} ends")

    first = asyncio.create_task(work("worker-a", 0.5))
    await asyncio.sleep(0.1)
    await work("worker-b", 0.0)
    await first
    assert order == ["worker-a starts", "worker-a ends", "worker-b starts", "worker-b ends"]
    assert (await take(sessions, "build", "worker-c", LONG)).holder == "worker-c"  # released after it


async def test_a_holder_whose_expired_lease_another_took_is_told_it_lost_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The worker that lost the database (or was paused) for longer than its lease: another took the
    lease meanwhile, so the first must stop its work as soon as it can tell."""
    length = timedelta(seconds=1)
    async with held(sessions, "build", "worker-a", length) as lease:
        await expire_long_ago(sessions, "build")
        assert (await take(sessions, "build", "worker-b", LONG)).holder == "worker-b"
        await asyncio.wait_for(lease.lost.wait(), timeout=5)  # at its next renewal, a quarter of the lease on
    # Its release leaves the other's lease alone.
    assert (await take(sessions, "build", "worker-c", LONG)).holder == "worker-b"


async def test_a_held_lease_is_renewed_and_not_lost(sessions: async_sessionmaker[AsyncSession]) -> None:
    length = timedelta(seconds=1)
    async with held(sessions, "build", "worker-a", length) as lease:
        await asyncio.sleep(2.5)  # two and a half lease lengths: renewed every quarter
        assert not lease.lost.is_set()
        assert (await take(sessions, "build", "worker-b", length)).holder == "worker-a"


async def test_a_holder_that_cannot_renew_in_time_is_told_to_stop(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """A database that answers nothing (locked, slow, away): past three quarters of the lease without a
    renewal, the holder must stop before another may take the lease."""
    length = timedelta(seconds=1)
    other = create_engine(database_url)
    try:
        async with (
            held(sessions, "build", "worker-a", length) as lease,
            session_factory(other).begin() as session,
        ):
            await lock_for_writing(session)  # SQLite: the write lock; PostgreSQL: the row's, below
            await session.execute(update(Lease).where(Lease.name == "build").values(taken_at=utcnow()))
            started = time.monotonic()
            await asyncio.wait_for(lease.lost.wait(), timeout=10)
            assert time.monotonic() - started <= length.total_seconds() * 0.75 + 0.1
            await session.rollback()
    finally:
        await other.dispose()


async def test_a_lease_whose_work_was_stopped_by_force_is_taken_only_after_the_drain(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Work killed outright may linger (a dbt's BigQuery jobs): the next holder waits the drain past the
    lease's end, whether its holder said so (``lingers_for``) or died and left it to expire."""
    drain = timedelta(seconds=1)
    async with held(sessions, "build", "worker-a", LONG, drain=drain) as lease:
        lease.lingers_for = drain
    assert (await take(sessions, "build", "worker-b", LONG, drain)).holder == "worker-a"
    await asyncio.sleep(1.1)
    assert (await take(sessions, "build", "worker-b", LONG, drain)).holder == "worker-b"

    await expire_long_ago(sessions, "build")  # worker-b died: expired long ago, its drain passed too
    assert (await take(sessions, "build", "worker-c", LONG, drain)).holder == "worker-c"
    await expire(sessions, "build", "worker-c")  # expired just now
    assert (await take(sessions, "build", "worker-d", LONG, drain)).holder == "worker-c"
    assert (await take(sessions, "build", "worker-d", LONG)).holder == "worker-d"  # no drain: at once


async def test_a_holder_whose_renewals_fail_stops_within_three_quarters_of_its_lease(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renewals that fail slowly (a reconnect that times out) must not eat the holder's margin: it stops
    by three quarters of the lease, a quarter before another may take it."""
    length = timedelta(seconds=2)

    async def failing(*_: object) -> bool:
        await asyncio.sleep(0.3)
        raise OperationalError("update leases", {}, Exception("connection refused"))

    async with held(sessions, "build", "worker-a", length) as lease:
        started = time.monotonic()
        monkeypatch.setattr(db.leases, "renew", failing)
        await asyncio.wait_for(lease.lost.wait(), timeout=5)
        assert time.monotonic() - started <= length.total_seconds() * 0.75 + 0.1


@pytest.mark.postgres
async def test_a_worker_whose_clock_runs_ahead_still_waits_for_the_lease(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expiry is read on the database's clock: a worker whose own clock is two hours ahead neither takes
    a lease its holder keeps renewing, nor makes its own lease last two hours longer, nor polls without
    pause for one it waits for."""
    engine = create_engine(postgres_url)
    sessions = session_factory(engine)
    try:
        assert (await take(sessions, "build", "worker-a", LONG)).holder == "worker-a"
        ahead = utcnow() + timedelta(hours=2)
        monkeypatch.setattr(db.leases, "utcnow", lambda: ahead)
        assert (await take(sessions, "build", "worker-b", LONG)).holder == "worker-a"
        await release(sessions, "build", "worker-a")
        taken = await take(sessions, "build", "worker-b", LONG)
        assert taken.holder == "worker-b" and taken.expires_at < utcnow() + LONG + timedelta(minutes=1)
        assert await renew(sessions, "build", "worker-b", LONG)

        # Waiting for it, the skewed worker polls at its pace: it does not take the lease for free.
        takes = 0
        take_once = db.leases.take

        async def counted(*args: Any, **kwargs: Any) -> db.leases.Holding:
            nonlocal takes
            takes += 1
            return await take_once(*args, **kwargs)

        monkeypatch.setattr(db.leases, "take", counted)
        waiter = asyncio.create_task(held(sessions, "build", "worker-c", LONG, poll_seconds=0.5).__aenter__())
        await asyncio.sleep(1.6)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert 2 <= takes <= 5
        await expire(sessions, "build", "worker-b")
        monkeypatch.undo()
        assert (await take(sessions, "build", "worker-c", LONG)).holder == "worker-c"
    finally:
        await engine.dispose()

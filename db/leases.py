"""Leases: work that must never run twice at once, held in the portal database.

Temporal runs an activity attempt at a time only as far as it can tell: a worker cut off from it beyond
the heartbeat timeout goes on working while the retry starts the same work on another worker. Where two
at once would do harm (two dbt builds writing the same tables), the work holds a lease here: the retry
waits until its holder lets go, or until the lease expired unrenewed (the holder died, or lost the
database and stopped) and a drain passed, the longest that work stopped from outside may linger (a
killed dbt's BigQuery jobs run on until their time-out). Times are the database's (PostgreSQL's clock;
SQLite is a file on the one machine whose clock every process reads): holders on machines whose clocks
disagree still agree on when a lease expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.background import in_background
from core.timeutil import as_utc, utcnow
from db.engine import lock_for_writing, on_sqlite
from db.models import Lease

log = logging.getLogger(__name__)
# The holder renews every quarter of the lease (a sixteenth after a failed renewal), and stops (the lost
# event) once three quarters passed since the start of its last renewal that succeeded: the last quarter
# is its margin to stop the work before the lease expires.
RENEW_EVERY = 0.25
RETRY_EVERY = 0.0625
STOP_AFTER = 0.75


@dataclass(frozen=True)
class Holding:
    holder: str
    expires_at: datetime
    as_of: datetime  # the database's time when it was read: the clock to read expiry on


@dataclass
class Held:
    """A lease while its block runs. ``lost`` is set once it is lost. The block sets ``lingers_for`` to
    how long some of its work may go on after it (stopped by force: the drain; told to stop: what it
    leaves to finish), and the lease ends so that the next holder waits that long."""

    lost: asyncio.Event = field(default_factory=asyncio.Event)
    lingers_for: timedelta = timedelta(0)


async def database_now(session: AsyncSession) -> datetime:
    """The database's clock (the machine's own where the database is a SQLite file on it)."""
    if on_sqlite(session):
        return utcnow()
    return as_utc((await session.execute(select(func.clock_timestamp()))).scalar_one())


async def take(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    length: timedelta,
    drain: timedelta = timedelta(0),
) -> Holding:
    """Take the lease for ``length`` if it is free, already ``holder``'s, or expired at least ``drain``
    ago; return who holds it now (another holder: not taken)."""
    for _ in range(2):  # a concurrent first take: read the row it inserted, once more
        try:
            async with sessions.begin() as session:
                await lock_for_writing(session)
                row = await session.get(Lease, name, with_for_update=True)
                now = await database_now(session)  # after any wait for the row
                if row is None:
                    row = Lease(name=name, holder=holder, taken_at=now, expires_at=now + length)
                    session.add(row)
                elif row.holder == holder or as_utc(row.expires_at) + drain <= now:
                    if row.holder != holder:
                        row.holder, row.taken_at = holder, now
                    row.expires_at = now + length
                return Holding(row.holder, as_utc(row.expires_at), now)
        except IntegrityError:
            continue
    raise RuntimeError(f"could not take the lease {name}")


async def holding(sessions: async_sessionmaker[AsyncSession], name: str) -> Holding | None:
    """Who holds the lease ``name`` and until when (it may have expired since); None when no one."""
    async with sessions() as session:
        row = await session.get(Lease, name)
        return (
            None if row is None else Holding(row.holder, as_utc(row.expires_at), await database_now(session))
        )


async def renew(
    sessions: async_sessionmaker[AsyncSession], name: str, holder: str, length: timedelta
) -> bool:
    """Extend ``holder``'s lease to ``length`` from now; False when another holder has it."""
    async with sessions.begin() as session:
        expires_at = await database_now(session) + length
        done = await session.execute(
            update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=expires_at)
        )
    return bool(getattr(done, "rowcount", 0))


async def release(sessions: async_sessionmaker[AsyncSession], name: str, holder: str) -> None:
    """Let go of ``holder``'s lease: the next may take it at once (nothing when another holds it)."""
    async with sessions.begin() as session:
        await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


async def expire(
    sessions: async_sessionmaker[AsyncSession], name: str, holder: str, after: timedelta = timedelta(0)
) -> None:
    """End ``holder``'s lease ``after`` from now, its work stopped: the next waits the drain past it."""
    async with sessions.begin() as session:
        expires_at = await database_now(session) + after
        await session.execute(
            update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=expires_at)
        )


@asynccontextmanager
async def held(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    length: timedelta,
    *,
    drain: timedelta = timedelta(0),
    poll_seconds: float = 5.0,
    waiting: Callable[[str, datetime], None] | None = None,
) -> AsyncIterator[Held]:
    """Hold the lease ``name`` while the block runs: wait until it is free (see ``take``), take it,
    renew it, and let go of it after the block (released, or ended so that the next holder waits the
    block's ``lingers_for``). ``waiting`` hears of each other holder it waits for, and when the lease is
    free at the latest (the log says so too).

    ``Held.lost`` is set once the lease is lost: another holder took it, or it could not be renewed for
    three quarters of ``length``. The block must then stop its work at once.
    """
    kept_since = await _wait_and_take(sessions, name, holder, length, drain, poll_seconds, waiting)
    lease = Held()
    try:
        async with in_background(_keep(sessions, name, holder, length, kept_since, lease.lost)):
            yield lease
    finally:
        # A failed let-go leaves the lease to expire: the next waits that long, and the drain.
        with suppress(SQLAlchemyError):
            if lease.lingers_for > timedelta(0):
                await expire(sessions, name, holder, lease.lingers_for - drain)
            else:
                await release(sessions, name, holder)


async def _wait_and_take(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    length: timedelta,
    drain: timedelta,
    poll_seconds: float,
    waiting: Callable[[str, datetime], None] | None,
) -> float:
    """Take the lease once it is free; the monotonic time the take that got it started."""
    waiting_for = None
    while True:
        started = time.monotonic()
        try:
            holding = await take(sessions, name, holder, length, drain)
        except BaseException:
            # Cancelled (or failed) as it committed: it may hold the lease, with no work to do.
            with suppress(SQLAlchemyError):
                await release(sessions, name, holder)
            raise
        if holding.holder == holder:
            return started
        if holding.holder != waiting_for:
            log.info("lease %s is held by %s until %s: waiting", name, holding.holder, holding.expires_at)
            waiting_for = holding.holder
            if waiting is not None:
                waiting(holding.holder, holding.expires_at + drain)
        free_in = (holding.expires_at + drain - holding.as_of).total_seconds()
        await asyncio.sleep(min(poll_seconds, max(free_in, 0.0)) + 0.01)  # it may be released sooner


async def _keep(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    length: timedelta,
    kept_since: float,
    lost: asyncio.Event,
) -> None:
    """Renew the lease until it is lost; then set ``lost`` (also when this fails)."""
    try:
        await _renew_until_lost(sessions, name, holder, length, kept_since)
    except asyncio.CancelledError:
        raise
    except BaseException:
        log.exception("lease %s no longer renewed", name)
    lost.set()


async def _renew_until_lost(
    sessions: async_sessionmaker[AsyncSession], name: str, holder: str, length: timedelta, kept_since: float
) -> None:
    seconds = length.total_seconds()
    renew_at = kept_since + seconds * RENEW_EVERY
    while True:
        stop_at = kept_since + seconds * STOP_AFTER
        await asyncio.sleep(max(min(renew_at, stop_at) - time.monotonic(), 0.0))
        started = time.monotonic()
        if started >= stop_at:
            log.error("lease %s not renewed for %.0f s: stopping", name, seconds * STOP_AFTER)
            return
        attempt = asyncio.ensure_future(renew(sessions, name, holder, length))
        try:
            await asyncio.wait({attempt}, timeout=stop_at - started)
        finally:
            if not attempt.done():
                # A driver blocked in its thread (SQLite waiting out a lock) lets go of a cancelled
                # statement only once it returns: the holder does not wait for that.
                attempt.add_done_callback(_ignore_outcome)
                attempt.cancel()
        if not attempt.done():
            log.error("lease %s not renewed for %.0f s: stopping", name, seconds * STOP_AFTER)
            return
        try:
            kept = attempt.result()
        except SQLAlchemyError as error:
            log.warning("lease %s not renewed (tried again soon): %s", name, error)
            renew_at = started + seconds * RETRY_EVERY
            continue
        if not kept:
            log.error("lease %s lost: another holder took it", name)
            return
        kept_since, renew_at = started, started + seconds * RENEW_EVERY


def _ignore_outcome(attempt: asyncio.Future[bool]) -> None:
    if not attempt.cancelled():
        attempt.exception()  # retrieved: an abandoned renewal's error is not worth a warning

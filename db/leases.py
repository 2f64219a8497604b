"""Leases: work that must never run twice at once, held in the portal database.

Temporal runs an activity attempt at a time only as far as it can tell: a worker cut off from it beyond
the heartbeat timeout goes on working while the retry starts the same work on another worker. Where two
at once would do harm (two dbt builds writing the same tables), the work holds a lease here: the retry
waits until its holder lets go, or until the lease expires unrenewed (the holder died, or lost the
database, and stopped). Expiry is read on the workers' clocks, which must agree to well within a lease's
length (NTP does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.background import in_background
from core.timeutil import as_utc, utcnow
from db.engine import lock_for_writing
from db.models import Lease

log = logging.getLogger(__name__)
# The holder renews every quarter of the lease, and stops (the lost event) once three quarters passed
# since the start of its last renewal that succeeded: the last quarter is its margin to stop the work
# before another may take the lease.
RENEW_EVERY = 0.25
STOP_AFTER = 0.75


@dataclass(frozen=True)
class Holding:
    holder: str
    expires_at: datetime


async def take(
    sessions: async_sessionmaker[AsyncSession], name: str, holder: str, length: timedelta
) -> Holding:
    """Take the lease for ``length`` if it is free, expired, or already ``holder``'s; return who holds it
    now (another holder: not taken)."""
    for _ in range(2):  # a concurrent first take: read the row it inserted, once more
        try:
            async with sessions.begin() as session:
                await lock_for_writing(session)
                now = utcnow()
                row = await session.get(Lease, name, with_for_update=True)
                if row is None:
                    row = Lease(name=name, holder=holder, taken_at=now, expires_at=now + length)
                    session.add(row)
                elif row.holder == holder or as_utc(row.expires_at) <= now:
                    if row.holder != holder:
                        row.holder, row.taken_at = holder, now
                    row.expires_at = now + length
                return Holding(row.holder, as_utc(row.expires_at))
        except IntegrityError:
            continue
    raise RuntimeError(f"could not take the lease {name}")


async def renew(
    sessions: async_sessionmaker[AsyncSession], name: str, holder: str, length: timedelta
) -> bool:
    """Extend ``holder``'s lease to ``length`` from now; False when another holder has it."""
    async with sessions.begin() as session:
        done = await session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder)
            .values(expires_at=utcnow() + length)
        )
    return bool(getattr(done, "rowcount", 0))


async def release(sessions: async_sessionmaker[AsyncSession], name: str, holder: str) -> None:
    """Let go of ``holder``'s lease (nothing when another holds it)."""
    async with sessions.begin() as session:
        await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


@asynccontextmanager
async def held(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    length: timedelta,
    *,
    poll_seconds: float = 5.0,
) -> AsyncIterator[asyncio.Event]:
    """Hold the lease ``name`` while the block runs: wait until no one else holds it, take it, renew it,
    and release it after the block.

    The event it yields is set once the lease is lost: another holder took it, or it could not be
    renewed for three quarters of ``length``. The block must then stop its work at once.
    """
    while True:
        started = time.monotonic()
        holding = await take(sessions, name, holder, length)
        if holding.holder == holder:
            break
        until = (holding.expires_at - utcnow()).total_seconds()
        log.info("lease %s is held by %s until %s: waiting", name, holding.holder, holding.expires_at)
        await asyncio.sleep(min(poll_seconds, max(until, 0.0)) + 0.01)  # it may be released sooner
    lost = asyncio.Event()
    try:
        async with in_background(_keep(sessions, name, holder, length, started, lost)):
            yield lost
    finally:
        with suppress(SQLAlchemyError):  # a release that fails lets the lease expire instead
            await release(sessions, name, holder)


async def _keep(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    length: timedelta,
    kept_since: float,
    lost: asyncio.Event,
) -> None:
    """Renew the lease every quarter of its length; set ``lost`` once it is lost, or once this fails."""
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
    while True:
        await asyncio.sleep(seconds * RENEW_EVERY)
        started = time.monotonic()
        stop_at = kept_since + seconds * STOP_AFTER
        attempt = asyncio.ensure_future(renew(sessions, name, holder, length))
        try:
            await asyncio.wait({attempt}, timeout=max(stop_at - started, 0.0))
        finally:
            if not attempt.done():
                # A driver blocked in its thread (SQLite waiting out a lock) lets go of a cancelled
                # statement only once it returns: the holder does not wait for that.
                attempt.add_done_callback(_ignore_outcome)
                attempt.cancel()
        if attempt.cancelled():
            kept = False
        else:
            try:
                kept = attempt.result()
            except SQLAlchemyError as error:
                if time.monotonic() < stop_at:
                    log.warning("lease %s not renewed (tried again soon): %s", name, error)
                    continue
                kept = False
        if not kept:
            log.error("lease %s lost: another holder took it, or it went unrenewed too long", name)
            return
        kept_since = started


def _ignore_outcome(attempt: asyncio.Future[bool]) -> None:
    if not attempt.cancelled():
        attempt.exception()  # retrieved: an abandoned renewal's error is not worth a warning

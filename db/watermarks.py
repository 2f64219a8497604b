"""Watermarks of the incremental syncs: how far each has landed, kept in the central database.

A watermark only moves forward, and only once the rows up to it are landed: a run that fails leaves it
where it was, and the next run reads the same changes again (their event keys make that harmless).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.timeutil import as_utc, utcnow
from db.models import SyncWatermark


async def read_watermark(sessions: async_sessionmaker[AsyncSession], name: str) -> datetime | None:
    """The sync's watermark (UTC), or None before its first complete run."""
    async with sessions() as session:
        row = await session.get(SyncWatermark, name)
    return None if row is None else as_utc(row.watermark)


async def advance_watermark(sessions: async_sessionmaker[AsyncSession], name: str, to: datetime) -> datetime:
    """Move the watermark to ``to`` unless it is already there or later; return where it now is.

    Safe to repeat and to race: a later watermark is never moved back.
    """
    to = as_utc(to)
    for _ in range(2):  # a concurrent first insert: read it back and compare once more
        try:
            async with sessions.begin() as session:
                row = await session.get(SyncWatermark, name, with_for_update=True)
                if row is None:
                    session.add(SyncWatermark(name=name, watermark=to, updated_at=utcnow()))
                    return to
                if as_utc(row.watermark) < to:
                    row.watermark, row.updated_at = to, utcnow()
                return as_utc(row.watermark)
        except IntegrityError:
            continue
    raise RuntimeError(f"could not store the watermark of {name}")

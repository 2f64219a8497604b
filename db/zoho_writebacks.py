"""A lead's fields Zoho refused for good, kept until support redrives them (``hub parked``).

The lead's run cannot wait on Zoho (its dealer's SLA clock runs meanwhile), so a write-back Zoho refuses
for good is parked here instead: one row per lead, holding the newest refused value of each field. A
later write that Zoho takes removes the fields it wrote, so a redrive writes only what Zoho still lacks,
never an older value over a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.timeutil import as_utc
from db.models import ZohoWritebackRefused


@dataclass(frozen=True)
class ParkedWriteback:
    lead_id: str
    fields: dict[str, Any]
    reason: str
    refused_at: datetime
    redrives: int


async def park(
    sessions: async_sessionmaker[AsyncSession],
    lead_id: str,
    fields: dict[str, Any],
    reason: str,
    at: datetime,
) -> None:
    """Keep ``fields`` Zoho refused for the lead, over any older refused values of the same fields."""
    for _ in range(2):  # a concurrent first refusal of the same lead: merge into its row then
        try:
            async with sessions.begin() as session:
                row = await session.get(ZohoWritebackRefused, lead_id, with_for_update=True)
                if row is None:
                    session.add(
                        ZohoWritebackRefused(lead_id=lead_id, fields=fields, reason=reason, refused_at=at)
                    )
                else:
                    row.fields = {**row.fields, **fields}
                    row.reason, row.refused_at = reason, at
            return
        except IntegrityError:
            continue
    raise RuntimeError(f"could not park the refused write-back of lead {lead_id}")


async def written(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, fields: dict[str, Any], *, redrive: bool = False
) -> None:
    """Zoho took ``fields``: none of them is owed any more (a redrive would write an older value). A
    ``redrive`` wrote what it read: a field refused again meanwhile, with a newer value, stays owed."""
    async with sessions.begin() as session:
        row = await session.get(ZohoWritebackRefused, lead_id, with_for_update=True)
        if row is None:
            return
        owed = {
            name: value
            for name, value in row.fields.items()
            if name not in fields or (redrive and fields[name] != value)
        }
        if owed:
            row.fields = owed
        else:
            await session.delete(row)


async def redriven(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, reason: str, at: datetime
) -> None:
    """A redrive was refused again: count it, with the new reason."""
    async with sessions.begin() as session:
        row = await session.get(ZohoWritebackRefused, lead_id, with_for_update=True)
        if row is not None:
            row.reason, row.refused_at, row.redrives = reason, at, row.redrives + 1


async def parked(sessions: async_sessionmaker[AsyncSession], limit: int) -> tuple[list[ParkedWriteback], int]:
    """The parked write-backs, oldest refusal first, at most ``limit``; and how many are parked in all."""
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(ZohoWritebackRefused)) or 0
        rows = await session.scalars(
            select(ZohoWritebackRefused)
            .order_by(ZohoWritebackRefused.refused_at, ZohoWritebackRefused.lead_id)
            .limit(limit)
        )
        return [_view(row) for row in rows], total


async def get(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> ParkedWriteback | None:
    async with sessions() as session:
        row = await session.get(ZohoWritebackRefused, lead_id)
        return None if row is None else _view(row)


def _view(row: ZohoWritebackRefused) -> ParkedWriteback:
    return ParkedWriteback(row.lead_id, dict(row.fields), row.reason, as_utc(row.refused_at), row.redrives)

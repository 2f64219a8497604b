"""A lead's fields Zoho refused for good, kept until support redrives them (``hub parked``).

The lead's run cannot wait on Zoho (its dealer's SLA clock runs meanwhile), so a write-back Zoho refuses
for good is parked here instead: one row per lead, holding the newest refused value of each field. A
later write that Zoho takes removes the fields it wrote, so a redrive writes only what Zoho still lacks,
never an older value over a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.timeutil import as_utc
from db.engine import lock_for_writing
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
    *,
    keep_reason: bool = False,
) -> None:
    """Keep ``fields`` Zoho refused for the lead, over any older refused values of the same fields
    (``keep_reason``: a lead's row already parked keeps its reason and time)."""
    for _ in range(2):  # a concurrent first refusal of the same lead: merge into its row then
        try:
            async with hold(sessions, lead_id) as held:
                held.refused(fields, reason, at, keep_reason=keep_reason)
            return
        except IntegrityError:
            continue
    raise RuntimeError(f"could not park the refused write-back of lead {lead_id}")


class Held:
    """A lead's parked write-back while :func:`hold` holds it: what was owed when it was taken, and
    what the holder learnt of Zoho meanwhile (applied as the hold ends, unless the block raised)."""

    def __init__(self, fields: dict[str, Any] | None) -> None:
        self._fields = fields
        self._took: dict[str, Any] = {}
        self._refused: tuple[dict[str, Any], str, datetime, bool, bool] | None = None

    @property
    def fields(self) -> dict[str, Any] | None:
        """The fields owed to Zoho; None: nothing is parked."""
        return None if self._fields is None else dict(self._fields)

    def took(self, fields: dict[str, Any]) -> None:
        """Zoho took ``fields``: they are owed no more; the row goes once nothing is."""
        self._took.update(fields)

    def refused(
        self,
        fields: dict[str, Any],
        reason: str,
        at: datetime,
        *,
        redrive: bool = False,
        keep_reason: bool = False,
    ) -> None:
        """Zoho refused ``fields`` for ``reason`` (a ``redrive``: the fields parked, counted;
        ``keep_reason``: a row already there keeps its reason and time)."""
        self._refused = (fields, reason, at, redrive, keep_reason)

    async def apply(self, session: AsyncSession, lead_id: str, row: ZohoWritebackRefused | None) -> None:
        if row is not None and self._took:
            owed = {name: value for name, value in row.fields.items() if name not in self._took}
            if owed:
                row.fields = owed
            else:
                await session.delete(row)
                row = None
        if self._refused is None:
            return
        fields, reason, at, redrive, keep_reason = self._refused
        if row is None and not fields:
            return  # a redrive refused again, its row discarded meanwhile: nothing is owed
        if row is None:
            session.add(ZohoWritebackRefused(lead_id=lead_id, fields=fields, reason=reason, refused_at=at))
            return
        row.fields = {**row.fields, **fields}
        if not keep_reason:
            row.reason, row.refused_at = reason, at
        row.redrives += int(redrive)


# One lock per lead in this process, kept while in use.
_in_process: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
# Holds across a Zoho call at once in this process: each keeps a pooled connection for the call's length
# and may need another (Zoho's token is in the database), so they must leave the pool (5 + 10) room.
_across_calls = asyncio.Semaphore(4)


@asynccontextmanager
async def hold(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, *, across_call: bool = False
) -> AsyncIterator[Held]:
    """The lead's parked write-back, held until the block ends; what the block learnt is stored then.

    ``across_call``: the block writes to Zoho. The lead's own run and a redrive then write one at a time,
    so neither puts an older value over the other's newer one. PostgreSQL locks the row across processes
    for the call's length. SQLite (one process, locally) keeps one connection per process, which must not
    wait on Zoho: the lead is held within this process only, and the row read and written around the call.
    """
    async with _in_process.setdefault(lead_id, asyncio.Lock()):
        if across_call and sessions.kw["bind"].dialect.name == "sqlite":
            async with sessions() as session:
                row = await session.get(ZohoWritebackRefused, lead_id)
            held = Held(None if row is None else dict(row.fields))
            yield held
            async with sessions.begin() as session:
                await lock_for_writing(session)
                await held.apply(session, lead_id, await session.get(ZohoWritebackRefused, lead_id))
            return
        async with _across_calls if across_call else contextlib.nullcontext(), sessions.begin() as session:
            await lock_for_writing(session)  # SQLite: writers take turns from the first read
            row = await session.get(ZohoWritebackRefused, lead_id, with_for_update=True)
            held = Held(None if row is None else dict(row.fields))
            yield held
            await held.apply(session, lead_id, row)


async def parked(sessions: async_sessionmaker[AsyncSession], limit: int) -> tuple[list[ParkedWriteback], int]:
    """The parked write-backs, oldest refusal first, at most ``limit``; and how many are parked in all."""
    total = await count(sessions)
    async with sessions() as session:
        rows = await session.scalars(
            select(ZohoWritebackRefused)
            .order_by(ZohoWritebackRefused.refused_at, ZohoWritebackRefused.lead_id)
            .limit(limit)
        )
        return [_view(row) for row in rows], total


async def discard(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> dict[str, Any] | None:
    """Drop the lead's parked write-back (Zoho will never take it: the lead is gone); the fields it held."""
    async with hold(sessions, lead_id) as held:
        fields = held.fields
        if fields is not None:
            held.took(fields)  # owed no more: the row goes
    return fields


async def count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(ZohoWritebackRefused)) or 0


async def get(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> ParkedWriteback | None:
    async with sessions() as session:
        row = await session.get(ZohoWritebackRefused, lead_id)
        return None if row is None else _view(row)


def _view(row: ZohoWritebackRefused) -> ParkedWriteback:
    return ParkedWriteback(row.lead_id, dict(row.fields), row.reason, as_utc(row.refused_at), row.redrives)

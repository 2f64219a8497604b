"""Lead events a subscriber refused for good, kept until support redrives them (``hub parked``).

A lead's run does not wait on its subscribers (its dealer's SLA clock runs meanwhile), so an event one of
them refuses for good, or does not take within the event's retry window, is parked here instead: one
row per event and subscriber. A redrive sends the event again as it was (same id, so a subscriber that
got it meanwhile drops the copy); the row goes once the subscriber takes it.

A subscriber's URL may carry a token, so rows name it by its origin (to read) and a digest of the URL
(to find it among the configured subscribers again), never by the URL itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.outbound import origin
from core.timeutil import as_utc
from db.engine import lock_for_writing
from db.models import EventRefused


@dataclass(frozen=True)
class ParkedEvent:
    event_id: str
    subscriber: str  # the origin
    subscriber_key: str
    event_type: str
    lead_id: str | None
    event: dict[str, Any]
    reason: str
    refused_at: datetime
    redrives: int


def subscriber_key(url: str) -> str:
    """The digest a parked row names its subscriber's configured URL by."""
    return hashlib.sha256(url.encode()).hexdigest()


def configured_url(parked: ParkedEvent, subscribers: list[str]) -> str | None:
    """Where to send ``parked`` now: the configured URL it was parked for, or else the one configured
    URL of the same origin (its path moved, or the token in it was rotated: the usual fixes of what
    the subscriber refused); None: no such subscriber is configured any more."""
    same = next((url for url in subscribers if subscriber_key(url) == parked.subscriber_key), None)
    if same is not None:
        return same
    of_origin = [url for url in subscribers if origin(url) == parked.subscriber]
    return of_origin[0] if len(of_origin) == 1 else None


async def park(
    sessions: async_sessionmaker[AsyncSession],
    event: dict[str, Any],
    url: str,
    reason: str,
    at: datetime,
    *,
    keep_reason: bool = False,
) -> None:
    """Keep ``event`` for the subscriber at ``url``, which refused it for ``reason`` (``keep_reason``: a
    row already parked keeps its reason and time)."""
    key = (str(event["id"]), subscriber_key(url))
    for _ in range(2):  # a concurrent first refusal of the same event: update its row then
        try:
            async with sessions.begin() as session:
                await lock_for_writing(session)
                row = await session.get(EventRefused, key, with_for_update=True)
                if row is None:
                    session.add(_row(event, url, reason, at))
                elif not keep_reason:
                    row.reason, row.refused_at = reason, at
            return
        except IntegrityError:
            continue
    raise RuntimeError(f"could not park event {event['id']}")


def _row(event: dict[str, Any], url: str, reason: str, at: datetime) -> EventRefused:
    subject = event.get("subject")
    return EventRefused(
        event_id=str(event["id"]),
        subscriber_key=subscriber_key(url),
        subscriber=origin(url),
        event_type=str(event.get("type") or "")[:64],
        lead_id=subject[:64] if isinstance(subject, str) else None,
        event=event,
        reason=reason,
        refused_at=at,
        redrives=0,
    )


async def took(sessions: async_sessionmaker[AsyncSession], event_id: str, url: str) -> None:
    """The subscriber at ``url`` took the event: nothing of it stays parked for that subscriber."""
    await _delete(sessions, event_id, subscriber_key(url))


async def _delete(sessions: async_sessionmaker[AsyncSession], event_id: str, key: str) -> None:
    async with sessions.begin() as session:
        await lock_for_writing(session)
        await session.execute(
            delete(EventRefused).where(EventRefused.event_id == event_id, EventRefused.subscriber_key == key)
        )


async def refused_again(
    sessions: async_sessionmaker[AsyncSession], parked: ParkedEvent, reason: str, at: datetime
) -> None:
    """A redrive of ``parked`` was refused again: its row says why and counts the redrive (a row
    discarded meanwhile stays gone)."""
    async with sessions.begin() as session:
        await lock_for_writing(session)
        row = await session.get(EventRefused, (parked.event_id, parked.subscriber_key), with_for_update=True)
        if row is not None:
            row.reason, row.refused_at, row.redrives = reason, at, row.redrives + 1


async def redriven(sessions: async_sessionmaker[AsyncSession], parked: ParkedEvent) -> None:
    """A redrive delivered ``parked``: its row goes."""
    await _delete(sessions, parked.event_id, parked.subscriber_key)


async def parked_keys(sessions: async_sessionmaker[AsyncSession], event_id: str) -> set[str]:
    """The digests of the subscribers the event is parked for (usually none)."""
    async with sessions() as session:
        keys = await session.scalars(
            select(EventRefused.subscriber_key).where(EventRefused.event_id == event_id)
        )
        return set(keys)


async def of_event(sessions: async_sessionmaker[AsyncSession], event_id: str) -> list[ParkedEvent]:
    """The event's parked rows, one per subscriber that has not taken it."""
    async with sessions() as session:
        rows = await session.scalars(
            select(EventRefused).where(EventRefused.event_id == event_id).order_by(EventRefused.subscriber)
        )
        return [_view(row) for row in rows]


async def parked(sessions: async_sessionmaker[AsyncSession], limit: int) -> tuple[list[ParkedEvent], int]:
    """The rows of the parked events, oldest first refusal first, of at most ``limit`` events (every
    subscriber each is parked for); and how many events are parked in all."""
    total = await count(sessions)
    first_refused = func.min(EventRefused.refused_at)
    oldest = (
        select(EventRefused.event_id)
        .group_by(EventRefused.event_id)
        .order_by(first_refused, EventRefused.event_id)
        .limit(limit)
    )
    async with sessions() as session:
        event_ids = list(await session.scalars(oldest))
        rows = await session.scalars(select(EventRefused).where(EventRefused.event_id.in_(event_ids)))
        order = {event_id: position for position, event_id in enumerate(event_ids)}
        views = sorted((_view(row) for row in rows), key=lambda each: (order[each.event_id], each.subscriber))
        return views, total


async def discard(sessions: async_sessionmaker[AsyncSession], event_id: str) -> list[str]:
    """Drop the event's parked rows (no subscriber will take it); the origins they were parked for."""
    async with sessions.begin() as session:
        await lock_for_writing(session)
        rows = list(await session.scalars(select(EventRefused).where(EventRefused.event_id == event_id)))
        for row in rows:
            await session.delete(row)
        return sorted(row.subscriber for row in rows)


async def count(sessions: async_sessionmaker[AsyncSession]) -> int:
    """How many events are parked (for one subscriber or more)."""
    async with sessions() as session:
        return await session.scalar(select(func.count(func.distinct(EventRefused.event_id)))) or 0


def _view(row: EventRefused) -> ParkedEvent:
    return ParkedEvent(
        event_id=row.event_id,
        subscriber=row.subscriber,
        subscriber_key=row.subscriber_key,
        event_type=row.event_type,
        lead_id=row.lead_id,
        event=dict(row.event),
        reason=row.reason,
        refused_at=as_utc(row.refused_at),
        redrives=row.redrives,
    )

"""Routing of a lead to dealers: coverage, capacity, priority and a fair rotation among equals."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.dealers import DealerConfig
from core.timeutil import as_utc
from db.models import Dealer, Delivery

# Claims lost to other worker processes (SQLite) before routing gives up and the activity retries.
MAX_CLAIM_ATTEMPTS = 5


@dataclass(frozen=True)
class LeadProfile:
    """What routing looks at: where the customer is and what they want."""

    state: str
    city: str
    model: str


def normalise(text: str) -> str:
    """Case- and accent-insensitive form, so "SAO PAULO" matches "São Paulo"."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def covers(dealer: Dealer, lead: LeadProfile) -> bool:
    """Whether the dealer serves the lead's state, city and model."""
    if normalise(lead.state) not in {normalise(s) for s in dealer.states}:
        return False
    if dealer.cities and normalise(lead.city) not in {normalise(c) for c in dealer.cities}:
        return False
    return not dealer.models or normalise(lead.model) in {normalise(m) for m in dealer.models}


def _rotation_key(dealer: Dealer) -> tuple[int, int, float, str]:
    # Lower priority number first; among equals, never-assigned dealers, then the one that waited longest.
    last = as_utc(dealer.last_assigned_at).timestamp() if dealer.last_assigned_at else None
    return (dealer.priority, 0 if last is None else 1, last or 0.0, dealer.id)


async def _deliveries_on(session: AsyncSession, day: date) -> dict[str, int]:
    rows = await session.execute(
        select(Delivery.dealer_id, func.count()).where(Delivery.day == day).group_by(Delivery.dealer_id)
    )
    return {str(dealer_id): int(count) for dealer_id, count in rows.all()}


async def active_dealers(session: AsyncSession, *, lock: bool) -> list[Dealer]:
    """Every active dealer; with ``lock``, locked for this transaction (PostgreSQL), always in one order."""
    query = select(Dealer).where(Dealer.active.is_(True)).order_by(Dealer.id)  # one lock order: no deadlock
    return list(await session.scalars(query.with_for_update() if lock else query))


async def rank(session: AsyncSession, dealers: list[Dealer], lead: LeadProfile, day: date) -> list[Dealer]:
    """The dealers that cover the lead and have capacity left on ``day``, best first.

    Capacity counts every delivery decision of the day, claimed or delivered: a claim reserves its place
    in the transaction that takes it.
    """
    used = await _deliveries_on(session, day)
    eligible = [d for d in dealers if covers(d, lead) and used.get(d.id, 0) < d.daily_capacity]
    return sorted(eligible, key=_rotation_key)


async def _ranked(session: AsyncSession, lead: LeadProfile, day: date, *, lock: bool) -> list[Dealer]:
    return await rank(session, await active_dealers(session, lock=lock), lead, day)


ClaimHook = Callable[[AsyncSession, str], Awaitable[None]]


async def route(
    sessions: async_sessionmaker[AsyncSession],
    lead: LeadProfile,
    day: date,
    at: datetime,
    on_claim: ClaimHook | None = None,
) -> list[str]:
    """Ordered dealer ids for the lead; the first one is claimed in the rotation.

    Ranking and claim share one transaction, with the dealers locked on PostgreSQL, so concurrent leads
    take turns instead of racing for the same dealer. ``on_claim(session, dealer_id)`` writes in that
    same transaction (the lead's "routed" status): the claim and its record commit together or not at
    all. The claim also checks that nobody moved the dealer since it was read, and ranks again if
    somebody did: a safety net, should a database not lock as asked.
    """
    for _ in range(MAX_CLAIM_ATTEMPTS):
        async with sessions.begin() as session:
            await lock_for_writing(session)
            ranked = await _ranked(session, lead, day, lock=True)
            if not ranked:
                return []
            if await take_turn(session, ranked[0], ranked, at):
                if on_claim is not None:
                    await on_claim(session, ranked[0].id)
                return [dealer.id for dealer in ranked]
    raise RoutingContention(f"the rotation moved under {MAX_CLAIM_ATTEMPTS} claims in a row")


class RoutingContention(RuntimeError):
    """Other workers kept claiming first; retrying the activity later succeeds."""


async def lock_for_writing(session: AsyncSession) -> None:
    # SQLite starts a transaction only at the first write, so two worker processes would both rank on
    # the same snapshot; taking its write lock first makes them take turns (the busy timeout waits).
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))


def _back_of_rotation(ranked: list[Dealer], at: datetime) -> datetime:
    """A claim time that puts the claimed dealer behind every other, whatever the order of ``at``s.

    Concurrent routes take their time before they wait for the lock, and workers' clocks differ: a
    claim stamped earlier than the last one would put the dealer back at the front.
    """
    stamps = [as_utc(d.last_assigned_at) for d in ranked if d.last_assigned_at is not None]
    newest = max(stamps, default=None)
    return at if newest is None or newest < at else newest + timedelta(microseconds=1)


async def take_turn(session: AsyncSession, dealer: Dealer, ranked: list[Dealer], at: datetime) -> bool:
    """Move ``dealer`` behind every other of ``ranked`` in the rotation, unless somebody moved it since it
    was read (then False: rank again)."""
    return await _claim(session, dealer, _back_of_rotation(ranked, at))


async def _claim(session: AsyncSession, dealer: Dealer, at: datetime) -> bool:
    seen = (
        Dealer.last_assigned_at.is_(None)
        if dealer.last_assigned_at is None
        else (Dealer.last_assigned_at == dealer.last_assigned_at)
    )
    result = await session.execute(
        update(Dealer).where(Dealer.id == dealer.id, seen).values(last_assigned_at=at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_assigned(sessions: async_sessionmaker[AsyncSession], dealer_id: str, at: datetime) -> None:
    """Move a dealer to the back of its rotation (used when a later candidate takes the lead)."""
    async with sessions.begin() as session:
        await session.execute(update(Dealer).where(Dealer.id == dealer_id).values(last_assigned_at=at))


async def dealer_config(sessions: async_sessionmaker[AsyncSession], dealer_id: str) -> DealerConfig | None:
    """How to reach a dealer's CRM, or None when the dealer is unknown or inactive."""
    async with sessions() as session:
        dealer = await session.get(Dealer, dealer_id)
    if dealer is None or not dealer.active:
        return None
    return DealerConfig(
        id=dealer.id,
        name=dealer.name,
        crm_kind=dealer.crm_kind,
        crm_url=dealer.crm_url,
        field_mapping=dict(dealer.field_mapping),
    )

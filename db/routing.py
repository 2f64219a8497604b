"""Routing of a lead to dealers: coverage, capacity, priority and a fair rotation among equals."""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.business_hours import from_config
from core.dealers import DealerConfig
from core.timeutil import as_utc
from db.engine import lock_for_writing
from db.models import Dealer, Delivery, Withdrawal

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


def not_covered(dealer: Dealer, lead: LeadProfile) -> str | None:
    """Why the dealer does not serve the lead's state, city or model; None when it does."""
    if normalise(lead.state) not in {normalise(s) for s in dealer.states}:
        return f"area: does not serve state {lead.state or '(none)'}"
    if dealer.cities and normalise(lead.city) not in {normalise(c) for c in dealer.cities}:
        return f"area: city {lead.city or '(none)'} is not among its cities"
    if dealer.models and normalise(lead.model) not in {normalise(m) for m in dealer.models}:
        return f"model: {lead.model or '(none)'} is not among its models"
    return None


def is_open(dealer: Dealer, at: datetime) -> bool:
    """Whether the dealer is open at ``at`` (a dealer without opening hours always is)."""
    return from_config(dealer.hours).is_open(at)


def accept_by(
    dealer: Dealer | DealerConfig, delivered_at: datetime, given: datetime | None = None
) -> datetime | None:
    """When the dealer's SLA to accept a lead delivered at ``delivered_at`` passes: ``given``, the
    deadline the delivery kept (a rules load since moves nothing), or else its SLA minutes counted in its
    open hours now (a lead delivered at night waits for opening). None: it has no SLA."""
    if given is not None:
        return as_utc(given)
    if not dealer.sla_minutes:
        return None
    return from_config(dealer.hours).add_open_time(
        as_utc(delivered_at), timedelta(minutes=dealer.sla_minutes)
    )


def _rotation_key(dealer: Dealer, at: datetime) -> tuple[int, int, int, float, str]:
    # Dealers open now first (a night lead still goes to the best one), then lower priority numbers;
    # among equals, never-assigned dealers, then the one that waited longest.
    last = as_utc(dealer.last_assigned_at).timestamp() if dealer.last_assigned_at else None
    closed = 0 if is_open(dealer, at) else 1
    return (closed, dealer.priority, 0 if last is None else 1, last or 0.0, dealer.id)


async def _deliveries_on(session: AsyncSession, day: date) -> dict[str, int]:
    """Deliveries counted against each dealer's capacity on ``day``: current ones and those withdrawn."""
    used: dict[str, int] = {}
    for table in (Delivery, Withdrawal):
        rows = await session.execute(
            select(table.dealer_id, func.count()).where(table.day == day).group_by(table.dealer_id)
        )
        for dealer_id, count in rows.all():
            used[str(dealer_id)] = used.get(str(dealer_id), 0) + int(count)
    return used


async def active_dealers(session: AsyncSession, *, lock: bool) -> list[Dealer]:
    """Every active dealer; with ``lock``, locked for this transaction (PostgreSQL), always in one order."""
    query = select(Dealer).where(Dealer.active.is_(True)).order_by(Dealer.id)  # one lock order: no deadlock
    return list(await session.scalars(query.with_for_update() if lock else query))


async def rank(
    session: AsyncSession, dealers: list[Dealer], lead: LeadProfile, day: date, at: datetime
) -> list[Dealer]:
    """The dealers that cover the lead and have capacity left on ``day``, best first at ``at``.

    Capacity counts every delivery decision of the day, claimed, delivered or withdrawn: a claim
    reserves its place in the transaction that takes it.
    """
    used = await _deliveries_on(session, day)
    eligible = [d for d in dealers if unavailable(d, lead, used, day) is None]
    return sorted(eligible, key=lambda dealer: _rotation_key(dealer, at))


def unavailable(dealer: Dealer, lead: LeadProfile, used: dict[str, int], day: date) -> str | None:
    """Why the dealer cannot take the lead on ``day`` (its area, models or capacity); None when it can."""
    if why := not_covered(dealer, lead):
        return why
    if used.get(dealer.id, 0) >= dealer.daily_capacity:
        return f"capacity: {used.get(dealer.id, 0)} of {dealer.daily_capacity} used on {day.isoformat()}"
    return None


async def _ranked(
    session: AsyncSession, lead: LeadProfile, day: date, at: datetime, *, lock: bool
) -> list[Dealer]:
    return await rank(session, await active_dealers(session, lock=lock), lead, day, at)


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
            ranked = await _ranked(session, lead, day, at, lock=True)
            if not ranked:
                return []
            chosen = await take_turn(session, ranked, at)
            if chosen is not None:
                if on_claim is not None:
                    await on_claim(session, chosen.id)
                return [chosen.id] + [dealer.id for dealer in ranked if dealer is not chosen]
    raise RoutingContention(f"the rotation moved under {MAX_CLAIM_ATTEMPTS} claims in a row")


class RoutingContention(RuntimeError):
    """Other workers kept claiming first; retrying the activity later succeeds."""


def _back_of_rotation(ranked: list[Dealer], at: datetime) -> datetime:
    """A claim time that puts the claimed dealer behind every other, whatever the order of ``at``s.

    Concurrent routes take their time before they wait for the lock, and workers' clocks differ: a
    claim stamped earlier than the last one would put the dealer back at the front.
    """
    stamps = [as_utc(d.last_assigned_at) for d in ranked if d.last_assigned_at is not None]
    newest = max(stamps, default=None)
    return at if newest is None or newest < at else newest + timedelta(microseconds=1)


def peers(ranked: list[Dealer], at: datetime) -> list[Dealer]:
    """The dealers that share the lead with the best one: as open as it is, of its priority."""
    best = _rotation_key(ranked[0], at)[:2]
    return [dealer for dealer in ranked if _rotation_key(dealer, at)[:2] == best]


def weighted_choice(group: list[Dealer]) -> tuple[Dealer, dict[str, int]]:
    """The smooth weighted rotation (as nginx balances upstreams): every dealer of the group earns its
    weight in credit, the richest takes the lead and pays the group's total weight. Over any run of
    leads the shares follow the weights (2:1:1 gives A B A C A B A C ...), spread out rather than in
    bursts. Ties go to the dealer first in ``group`` (the longest waiting). Returns the new credits."""
    total = sum(dealer.weight for dealer in group)
    credits = {dealer.id: dealer.rotation_credit + dealer.weight for dealer in group}
    chosen = max(group, key=lambda dealer: credits[dealer.id])  # max keeps the first of equals
    credits[chosen.id] -= total
    return chosen, credits


async def take_turn(session: AsyncSession, ranked: list[Dealer], at: datetime) -> Dealer | None:
    """Choose among ``ranked`` and move the chosen dealer on in the rotation; None when somebody moved
    it since it was read (rank again).

    Dealers of one priority (and the same open state) share leads: by their weights when any differs,
    else the longest-waiting first. The credits are written in the caller's transaction, which holds
    the dealers' locks: concurrent claims in any worker process take turns on them.
    """
    chosen, credits = choose(ranked, at)
    for dealer_id, credit in credits.items():
        await session.execute(update(Dealer).where(Dealer.id == dealer_id).values(rotation_credit=credit))
    return chosen if await _claim(session, chosen, _back_of_rotation(ranked, at)) else None


def choose(ranked: list[Dealer], at: datetime) -> tuple[Dealer, dict[str, int]]:
    """The dealer that takes the lead, and the group's new rotation credits (none when unweighted)."""
    group = peers(ranked, at)
    if all(dealer.weight == 1 for dealer in group):
        return ranked[0], {}
    return weighted_choice(group)


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


async def dealer_known(sessions: async_sessionmaker[AsyncSession], dealer_id: str) -> bool:
    """Whether the routing rules have (or had: inactive ones too) a dealer of this id."""
    async with sessions() as session:
        return await session.get(Dealer, dealer_id) is not None


async def dealer_config(
    sessions: async_sessionmaker[AsyncSession], dealer_id: str, *, inactive_too: bool = False
) -> DealerConfig | None:
    """How to reach a dealer's CRM, or None when the dealer is unknown or inactive. ``inactive_too``:
    for a lead the dealer still holds (its SLA, its status, dropping it), which a dealer taken out of
    the rules since keeps until it is withdrawn."""
    async with sessions() as session:
        dealer = await session.get(Dealer, dealer_id)
    if dealer is None or not (dealer.active or inactive_too):
        return None
    return DealerConfig(
        id=dealer.id,
        name=dealer.name,
        crm_kind=dealer.crm_kind,
        crm_url=dealer.crm_url,
        field_mapping=dict(dealer.field_mapping),
        hours=dict(dealer.hours) if dealer.hours else None,
        sla_minutes=dealer.sla_minutes,
        status_poll_seconds=dealer.status_poll_seconds,
    )


@dataclass(frozen=True)
class Verdict:
    """One dealer as routing saw it for a lead: kept or dropped, and why."""

    dealer_id: str
    kept: bool
    why: str
    priority: int
    weight: int
    open_now: bool
    used_today: int
    daily_capacity: int
    accept_by: datetime | None  # its SLA deadline for a lead delivered at the time routed; None: no SLA


@dataclass(frozen=True)
class Explanation:
    verdicts: list[Verdict]  # kept dealers best first, then the dropped ones
    chosen: str | None  # the dealer routing would claim now; None: support decides


async def explain(
    sessions: async_sessionmaker[AsyncSession],
    lead: LeadProfile,
    day: date,
    at: datetime,
    passed_over: Mapping[str, str] | None = None,
) -> Explanation:
    """What routing would decide for ``lead`` at ``at``, and why, without claiming anything.

    ``passed_over``: dealers routing passes over for this lead, and why (it lost them, or their CRM
    still owes a drop of it).
    """
    passed_over = passed_over or {}
    async with sessions() as session:
        dealers = await active_dealers(session, lock=False)
        used = await _deliveries_on(session, day)
    dropped: list[Verdict] = []
    eligible: list[Dealer] = []
    for dealer in dealers:
        why = unavailable(dealer, lead, used, day)
        if why is None and dealer.id in passed_over:
            why = passed_over[dealer.id]
        if why is None:
            eligible.append(dealer)
        else:
            dropped.append(_verdict(dealer, at, used, kept=False, why=why))
    ranked = sorted(eligible, key=lambda dealer: _rotation_key(dealer, at))
    chosen = choose(ranked, at)[0] if ranked else None  # what take_turn would take, moving nothing
    kept = [
        _verdict(dealer, at, used, kept=True, why=_standing(dealer, index, ranked, at, chosen))
        for index, dealer in enumerate(ranked)
    ]
    return Explanation(kept + dropped, chosen.id if chosen else None)


def _standing(dealer: Dealer, index: int, ranked: list[Dealer], at: datetime, chosen: Dealer | None) -> str:
    hours = "open now" if is_open(dealer, at) else "closed now (its SLA would start at opening)"
    place = f"rank {index + 1}: {hours}, priority {dealer.priority}"
    if dealer not in peers(ranked, at):
        return f"{place}: behind the best ones (fallback if they refuse)"
    if any(d.weight != 1 for d in peers(ranked, at)):
        share = f"weight {dealer.weight}, rotation credit {dealer.rotation_credit}"
    else:
        waited = dealer.last_assigned_at
        share = f"last lead at {as_utc(waited).isoformat()}" if waited else "no lead yet"
    return f"{place}, {share}" + (": chosen" if dealer is chosen else ": shares the lead's turn")


def routing_reason(chosen: Dealer, ranked: list[Dealer], at: datetime) -> str:
    """Why routing chose this dealer, as support reads it in the lead's deliveries."""
    group = peers(ranked, at)
    open_now = "open now" if is_open(chosen, at) else "none open now: best by priority"
    share = (
        f"weight {chosen.weight} of {sum(d.weight for d in group)}"
        if any(d.weight != 1 for d in group)
        else "its turn in the rotation"
    )
    return f"routed: covers the lead, {open_now}, priority {chosen.priority}, {share} among {len(group)}"


def _verdict(dealer: Dealer, at: datetime, used: dict[str, int], *, kept: bool, why: str) -> Verdict:
    return Verdict(
        dealer_id=dealer.id,
        kept=kept,
        why=why,
        priority=dealer.priority,
        weight=dealer.weight,
        open_now=is_open(dealer, at),
        used_today=used.get(dealer.id, 0),
        daily_capacity=dealer.daily_capacity,
        accept_by=accept_by(dealer, at) if kept else None,
    )

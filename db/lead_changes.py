"""What changed in the lead flow's records within a time window, a page at a time, for the warehouse.

Four kinds, each read in the order of when the portal recorded the change (never a dealer's own time,
which may lie in the past when its report arrives) with a unique tie-breaker, so a page ends at a cursor
and the next page starts after it (keyset paging: no row is read twice or skipped in a window):

- ``status``: a status a lead reached (``lead_status_changes``), with what routing looked at (state,
  city, model) from the lead;
- ``feedback``: a status a dealer reported (``dealer_feedback``), by the time the hub received it;
- ``delivery``: the current delivery of a lead, by its latest change (claimed, delivered, reported);
- ``withdrawal``: a delivery the lead lost (withdrawn, then its CRM's answer);
- ``release``: a delivery taken back without an SLA miss (a refused claim, support's (re)assignment);

and two of the deals that follow, from the central database (``DEAL_KINDS``):

- ``deal``: each state of a deal the hub made current (``opportunities``, by when it did), with the lead
  it was converted from;
- ``deal_stage``: each stage a deal went through (``opportunity_stage_changes``, by when the hub
  recorded it: a late change lies in the past), and whether an earlier recorded stage shares its time
  (``shares_time``: two moves Zoho made within one second).

Only ids, places, models, dealers, times, statuses, stages and amounts leave here: no name, e-mail or
phone of a lead, and of a deal neither its name, account nor contact (its owner, a salesperson, stays).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from core.timeutil import as_utc
from db.models import (
    Dealer,
    DealerFeedback,
    Delivery,
    DeliveryRelease,
    Lead,
    LeadStatusChange,
    Opportunity,
    OpportunityStageChange,
    Withdrawal,
)
from db.routing import accept_by

PageQuery = TypeVar("PageQuery", bound=Select[*tuple[Any, ...]])
KINDS = ("status", "feedback", "delivery", "withdrawal", "release")
DEAL_KINDS = ("deal", "deal_stage")  # landed after KINDS, by runs that know them (a patch)


@dataclass(frozen=True)
class Cursor:
    """The last change of a page: the next page starts after (``at``, ``key``)."""

    at: datetime
    key: str


@dataclass(frozen=True)
class Change:
    kind: str
    at: datetime  # the change time the kind is read in order of (UTC)
    key: str  # unique within the kind; with ``at``, the page's cursor
    fields: dict[str, Any]

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.at, self.key)


async def changes(
    sessions: async_sessionmaker[AsyncSession],
    kind: str,
    since: datetime | None,
    until: datetime,
    after: Cursor | None,
    limit: int,
) -> list[Change]:
    """Up to ``limit`` changes of ``kind`` with a change time in (``since``, ``until``], after ``after``."""
    async with sessions() as session:
        if kind == "status":
            return await _statuses(session, since, until, after, limit)
        if kind == "feedback":
            return await _feedback(session, since, until, after, limit)
        if kind == "delivery":
            return await _deliveries(session, since, until, after, limit)
        if kind == "withdrawal":
            return await _withdrawals(session, since, until, after, limit)
        if kind == "release":
            return await _releases(session, since, until, after, limit)
        if kind == "deal":
            return await _deals(session, since, until, after, limit)
        if kind == "deal_stage":
            return await _deal_stages(session, since, until, after, limit)
    raise ValueError(f"unknown kind of lead change: {kind}")


def _window(
    at: Any, key: Any, since: datetime | None, until: datetime, after: Cursor | None, key_of: Any = str
) -> ColumnElement[bool]:
    bounds = [at <= until] + ([at > since] if since is not None else [])
    if after is not None:
        bounds.append(or_(at > after.at, and_(at == after.at, key > key_of(after.key))))
    return and_(*bounds)


def _page(
    query: PageQuery,
    at: Any,
    key: Any,
    since: datetime | None,
    until: datetime,
    after: Cursor | None,
    limit: int,
    key_of: Any = str,
) -> PageQuery:
    """``query`` narrowed to the window's next page, in the order of ``at``, then ``key``."""
    return query.where(_window(at, key, since, until, after, key_of)).order_by(at, key).limit(limit)


async def _statuses(
    session: AsyncSession, since: datetime | None, until: datetime, after: Cursor | None, limit: int
) -> list[Change]:
    change = LeadStatusChange
    joined = select(change, Lead).join(Lead, Lead.lead_id == change.lead_id)
    rows = (
        await session.execute(_page(joined, change.recorded_at, change.id, since, until, after, limit, int))
    ).all()
    firsts = await _first_of_each(session, [row for row, _ in rows if row.delivery_claimed_at is None])
    found = []
    for row, lead in rows:
        where = lead.routing_profile or {}
        fields = {
            "lead_id": row.lead_id,
            "status": row.status,
            "dealer_id": row.dealer_id,
            "changed_at": as_utc(row.at),
            "state": where.get("state"),
            "city": where.get("city"),
            "model": where.get("model"),
            "lead_source": lead.lead_source,
            "delivery_claimed_at": as_utc(row.delivery_claimed_at) if row.delivery_claimed_at else None,
            # The same status about no delivery again (a hand-over to the fallback owner after support
            # moved the lead): a row of its own, which its event key must tell from the first.
            "again": row.delivery_claimed_at is None
            and firsts[(row.lead_id, row.status, row.dealer_id)] != row.id,
        }
        found.append(Change("status", as_utc(row.recorded_at), str(row.id), fields))
    return found


def _status_of(row: LeadStatusChange) -> tuple[str, str, str]:
    return row.lead_id, row.status, row.dealer_id


async def _first_of_each(
    session: AsyncSession, rows: list[LeadStatusChange]
) -> dict[tuple[str, str, str], int]:
    """The first row (its id) of each (lead, status, dealer) of ``rows`` about no delivery."""
    if not rows:
        return {}
    change = LeadStatusChange
    firsts = await session.execute(
        select(change.lead_id, change.status, change.dealer_id, func.min(change.id))
        .where(change.lead_id.in_({row.lead_id for row in rows}), change.delivery_claimed_at.is_(None))
        .group_by(change.lead_id, change.status, change.dealer_id)
    )
    return {(lead, status, dealer): first for lead, status, dealer, first in firsts.all()}


async def _feedback(
    session: AsyncSession, since: datetime | None, until: datetime, after: Cursor | None, limit: int
) -> list[Change]:
    report = DealerFeedback
    page = _page(select(report), report.received_at, report.id, since, until, after, limit, int)
    rows = await session.scalars(page)
    return [
        Change(
            "feedback",
            as_utc(row.received_at),
            str(row.id),
            {
                "lead_id": row.lead_id,
                "dealer_id": row.dealer_id,
                "status": row.status,
                "reported_at": as_utc(row.at),
                "received_at": as_utc(row.received_at),
                "outcome": row.outcome,
                "delivery_claimed_at": as_utc(row.delivery_claimed_at) if row.delivery_claimed_at else None,
            },
        )
        for row in rows
    ]


async def _deliveries(
    session: AsyncSession, since: datetime | None, until: datetime, after: Cursor | None, limit: int
) -> list[Change]:
    delivery = Delivery
    joined = select(delivery, Dealer).join(Dealer, Dealer.id == delivery.dealer_id)
    rows = await session.execute(
        _page(joined, delivery.updated_at, delivery.lead_id, since, until, after, limit)
    )
    found = []
    for row, dealer in rows:
        delivered, deadline = _deadline(dealer, row.delivered_at, row.accept_by)
        fields = {
            "lead_id": row.lead_id,
            "dealer_id": row.dealer_id,
            "status": row.status,
            "routing_reason": landed_reason(row.reason),
            "claimed_at": as_utc(row.claimed_at) if row.claimed_at else None,
            "delivered_at": delivered,
            "accept_by": deadline,
            "dealer_status": row.dealer_status,
            "dealer_status_at": as_utc(row.dealer_status_at) if row.dealer_status_at else None,
        }
        found.append(Change("delivery", as_utc(row.updated_at), row.lead_id, fields))
    return found


# A reason support wrote (``hub leads reassign --reason``): its words may be about the customer ("moved
# to Paulista"), so the warehouse gets who moved the lead, not why; the portal database keeps the words.
SUPPORT_MOVE = "reassigned by "


def landed_reason(reason: str | None) -> str | None:
    """The routing reason as the warehouse lands it: support's own words left out (everything after the
    first ": ", which a login never holds; a colon within one does not keep them in)."""
    if reason and reason.startswith(SUPPORT_MOVE):
        return reason.partition(": ")[0]
    return reason


def _deadline(
    dealer: Dealer, delivered_at: datetime | None, given: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """When the lead reached the dealer (UTC) and its SLA deadline there (``given`` with the delivery;
    rows from before it kept one: computed); None for what is not known."""
    if delivered_at is None:
        return None, None
    delivered = as_utc(delivered_at)
    return delivered, accept_by(dealer, delivered, given)


async def _withdrawals(
    session: AsyncSession, since: datetime | None, until: datetime, after: Cursor | None, limit: int
) -> list[Change]:
    lost = Withdrawal
    pair = lost.lead_id + "/" + lost.dealer_id
    joined = select(lost, Dealer).join(Dealer, Dealer.id == lost.dealer_id)
    rows = await session.execute(_page(joined, lost.updated_at, pair, since, until, after, limit))
    found = []
    for row, dealer in rows:
        delivered, deadline = _deadline(dealer, row.delivered_at, row.accept_by)
        fields = {
            "lead_id": row.lead_id,
            "dealer_id": row.dealer_id,
            "status": "withdrawn",
            "routing_reason": landed_reason(row.routing_reason),
            "claimed_at": as_utc(row.claimed_at) if row.claimed_at else None,  # names the delivery
            "delivered_at": delivered,
            "accept_by": deadline,
            "dealer_status": None,
            "dealer_status_at": None,
            "withdrawn_at": as_utc(row.withdrawn_at),
            "withdrawal_reason": row.reason,
            "withdrawal_at_crm": row.crm_outcome,
        }
        found.append(Change("withdrawal", as_utc(row.updated_at), f"{row.lead_id}/{row.dealer_id}", fields))
    return found


async def _releases(
    session: AsyncSession, since: datetime | None, until: datetime, after: Cursor | None, limit: int
) -> list[Change]:
    released = DeliveryRelease
    page = _page(select(released), released.released_at, released.id, since, until, after, limit, int)
    rows = await session.scalars(page)
    return [
        Change(
            "release",
            as_utc(row.released_at),
            str(row.id),
            {
                "lead_id": row.lead_id,
                "dealer_id": row.dealer_id,
                "status": "released",
                "routing_reason": landed_reason(row.routing_reason),
                "claimed_at": as_utc(row.claimed_at) if row.claimed_at else None,  # names the delivery
                "delivered_at": as_utc(row.delivered_at) if row.delivered_at else None,
                "released_at": as_utc(row.released_at),
            },
        )
        for row in rows
    ]


async def _deals(
    session: AsyncSession, since: datetime | None, until: datetime, after: Cursor | None, limit: int
) -> list[Change]:
    deal = Opportunity
    rows = await session.scalars(
        _page(select(deal), deal.updated_at, deal.deal_id, since, until, after, limit)
    )
    return [
        Change(
            "deal",
            as_utc(row.updated_at),
            row.deal_id,
            {
                "deal_id": row.deal_id,
                "lead_id": row.lead_id,
                "stage": row.stage,
                "amount_cents": None if row.amount is None else int(row.amount * 100),
                "closing_date": _date(row.closing_date),
                "probability": row.probability,
                "owner": row.owner_name,
                "modified_at": as_utc(row.modified_time),
            },
        )
        for row in rows
    ]


async def _deal_stages(
    session: AsyncSession, since: datetime | None, until: datetime, after: Cursor | None, limit: int
) -> list[Change]:
    change, earlier = OpportunityStageChange, aliased(OpportunityStageChange)
    shares_time = exists().where(
        earlier.deal_id == change.deal_id, earlier.changed_at == change.changed_at, earlier.id < change.id
    )
    query = select(change, shares_time)
    rows = await session.execute(_page(query, change.recorded_at, change.id, since, until, after, limit, int))
    return [
        Change(
            "deal_stage",
            as_utc(row.recorded_at),
            str(row.id),
            {
                "deal_id": row.deal_id,
                "stage": row.stage,
                "changed_at": as_utc(row.changed_at),
                "shares_time": bool(shares),
            },
        )
        for row, shares in rows
    ]


def _date(text: str | None) -> date | None:
    """Zoho's ``YYYY-MM-DD``; None for anything else (the warehouse column is a DATE)."""
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None

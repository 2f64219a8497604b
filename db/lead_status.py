"""Portal status of leads and the history of how each got there."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.constants import DEALER_STATUSES, LeadStatus
from core.timeutil import as_utc
from db import routing
from db.engine import snapshot
from db.models import Dealer, Delivery, DeliveryRelease, Lead, LeadStatusChange, Withdrawal

# A zombie activity attempt finishing late must not move a delivered lead back; only support's explicit
# reassignment (``hub leads reassign``) moves a delivered lead on.
# Past delivery, the dealer's reports move the lead on, and so does the SLA (withdrawn, then exhausted).
FINAL_STATUSES = frozenset({LeadStatus.DELIVERED, *DEALER_STATUSES})
# Statuses a run's start ("received" without a reason) leaves as they are.
AT_RUN_START_KEPT = frozenset({LeadStatus.ROUTED, LeadStatus.SLA_EXHAUSTED})
LEAVES_FINAL = frozenset(
    {LeadStatus.REASSIGNED, LeadStatus.WITHDRAWN, LeadStatus.SLA_EXHAUSTED, *DEALER_STATUSES}
)


class StatusChange(BaseModel):
    status: str
    dealer_id: str | None
    detail: str | None
    at: datetime


class DeliveryView(BaseModel):
    """One dealer the lead went to: why, and what became of it."""

    dealer_id: str
    # claimed, delivered, withdrawn, or released (its CRM never answered the create call: the lead went
    # on to the next dealer, and that CRM was asked to drop it: ``withdrawal_at_crm``)
    status: str
    reason: str | None  # why routing (or support) chose this dealer
    dealer_status: str | None  # the newest status the dealer reported
    delivered_at: datetime | None
    withdrawn_at: datetime | None = None
    withdrawal_reason: str | None = None
    withdrawal_at_crm: str | None = None  # withdrawn, recorded (the CRM cannot drop leads) or pending
    # The dealer's SLA deadline while it holds the lead without accepting it: after it, the lead moves on.
    accept_by: datetime | None = None


class LeadView(BaseModel):
    """A lead's portal status, the dealer that took it and every status it went through (the read API)."""

    lead_id: str
    status: str
    dealer_id: str | None
    dealer_lead_id: str | None
    detail: str | None
    workflow_id: str
    created_at: datetime
    updated_at: datetime
    history: list[StatusChange]
    deliveries: list[DeliveryView] = []  # oldest first; the last one holds the lead unless withdrawn


async def record_status(
    sessions: async_sessionmaker[AsyncSession],
    *,
    lead_id: str,
    status: LeadStatus,
    workflow_id: str,
    at: datetime,
    dealer_id: str | None = None,
    dealer_lead_id: str | None = None,
    detail: str | None = None,
) -> bool:
    """Set the lead's current status and append it to its history, in one transaction; whether the lead
    entered that status now (it was in another, or unknown).

    Repeating a call (a retried activity) changes nothing.
    """
    async with sessions.begin() as session:
        return await write_status(
            session,
            lead_id=lead_id,
            status=status,
            workflow_id=workflow_id,
            at=at,
            dealer_id=dealer_id,
            dealer_lead_id=dealer_lead_id,
            detail=detail,
        )


async def write_status(
    session: AsyncSession,
    *,
    lead_id: str,
    status: LeadStatus,
    workflow_id: str,
    at: datetime,
    dealer_id: str | None = None,
    dealer_lead_id: str | None = None,
    detail: str | None = None,
) -> bool:
    """``record_status`` inside a transaction the caller holds (a write that must commit with it)."""
    lead = await session.get(Lead, lead_id, with_for_update=True)
    entered = lead is None or lead.status != status
    if lead is None:
        lead = Lead(lead_id=lead_id, status=status, workflow_id=workflow_id, created_at=at, updated_at=at)
        session.add(lead)
    elif lead.status in FINAL_STATUSES and status != lead.status and status not in LEAVES_FINAL:
        return False
    elif status == LeadStatus.RECEIVED and detail is None and lead.status in AT_RUN_START_KEPT:
        # A run's start recorded again over a lead claimed since: the lead's first workflow task retried
        # after its claim committed (its worker was lost), or a new run that resumes the claim. The lead
        # is still at its dealer's claim. (Waiting for support's assignment records "received" with why.)
        # Or over a lead at its fallback owner: a new run finds it there (deliveries.with_fallback_owner).
        return False
    handed_over = status == LeadStatus.SLA_EXHAUSTED and entered
    lead.status = status
    lead.updated_at = at
    lead.detail = detail
    if status == LeadStatus.REASSIGNED:
        lead.fallback_owner_set_at = None  # support moved it: a later hand-over sets the owner again
    if dealer_id is not None:
        lead.dealer_id = dealer_id
    if dealer_lead_id is not None:
        lead.dealer_lead_id = dealer_lead_id
    if handed_over:  # to the fallback owner anew (after support moved it): a row even where one was
        session.add(LeadStatusChange(lead_id=lead_id, status=status, dealer_id="", detail=detail, at=at))
    else:
        claimed_at = await delivery_at(session, lead_id, dealer_id)
        await add_to_history(session, lead_id, status, dealer_id, at, detail, claimed_at)
    return entered


async def fallback_owner_set(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> bool:
    """Whether Zoho's Owner was set to the lead's fallback owner since support last moved it."""
    async with sessions() as session:
        at = await session.scalar(select(Lead.fallback_owner_set_at).where(Lead.lead_id == lead_id))
    return at is not None


async def note_fallback_owner_set(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, at: datetime
) -> None:
    """Note that Zoho took the fallback owner as the lead's Owner (kept from its first time), while the
    lead is at it: an old parked write redriven after support moved the lead notes nothing."""
    async with sessions.begin() as session:
        await session.execute(
            update(Lead)
            .where(
                Lead.lead_id == lead_id,
                Lead.status == LeadStatus.SLA_EXHAUSTED.value,
                Lead.fallback_owner_set_at.is_(None),
            )
            .values(fallback_owner_set_at=at)
        )


async def add_to_history(
    session: AsyncSession,
    lead_id: str,
    status: str,
    dealer_id: str | None,
    at: datetime,
    detail: str | None,
    claimed_at: datetime | None,
) -> None:
    """Append the status to the lead's history, about the delivery claimed at ``claimed_at``, unless
    the history holds it already (``has_reached``)."""
    if not await has_reached(session, lead_id, status, dealer_id, claimed_at):
        session.add(
            LeadStatusChange(
                lead_id=lead_id,
                status=status,
                dealer_id=dealer_id or "",
                detail=detail,
                at=at,
                delivery_claimed_at=claimed_at,
            )
        )


async def delivery_at(session: AsyncSession, lead_id: str, dealer_id: str | None) -> datetime | None:
    """When the lead's current delivery was claimed, if it is at ``dealer_id``: a status of that dealer
    is about that delivery. None: the status is about no delivery (or one from before claims)."""
    if not dealer_id:
        return None
    await session.flush()  # a claim this transaction made counts
    row = await session.get(Delivery, lead_id)
    return row.claimed_at if row is not None and row.dealer_id == dealer_id else None


async def has_reached(
    session: AsyncSession, lead_id: str, status: str, dealer_id: str | None, claimed_at: datetime | None
) -> bool:
    """Whether the lead's history holds this status with this dealer about the delivery claimed at
    ``claimed_at`` (one row each: retries add none; a lead sent back to a dealer adds its statuses anew).

    A row from before rows named their delivery (migration 0011) is about this delivery if it was
    recorded after the claim: so a write retried across the upgrade still adds nothing.
    """
    change = LeadStatusChange
    about: ColumnElement[bool] = change.delivery_claimed_at.is_(None)
    if claimed_at is not None:
        before_0011 = and_(about, change.recorded_at >= claimed_at)
        about = or_(change.delivery_claimed_at == claimed_at, before_0011)
    recorded = await session.scalar(
        select(change.id)
        .where(
            change.lead_id == lead_id, change.status == status, change.dealer_id == (dealer_id or ""), about
        )
        .limit(1)
    )
    return recorded is not None


async def received_at(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> datetime | None:
    """When the lead's first status (received) was recorded; None when unknown."""
    async with sessions() as session:
        created = await session.scalar(select(Lead.created_at).where(Lead.lead_id == lead_id))
    return None if created is None else as_utc(created)


async def get_lead(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> LeadView | None:
    """The lead's current status and its history, oldest first; None when unknown."""
    async with snapshot(sessions) as session:
        lead = await session.get(Lead, lead_id)
        if lead is None:
            return None
        rows = await session.scalars(
            select(LeadStatusChange)
            .where(LeadStatusChange.lead_id == lead_id)
            .order_by(LeadStatusChange.at, LeadStatusChange.id)
        )
        history = [
            StatusChange(
                status=row.status, dealer_id=row.dealer_id or None, detail=row.detail, at=as_utc(row.at)
            )
            for row in rows
        ]
        deliveries = await _deliveries(session, lead_id)
    return LeadView(
        lead_id=lead.lead_id,
        status=lead.status,
        dealer_id=lead.dealer_id,
        dealer_lead_id=lead.dealer_lead_id,
        detail=lead.detail,
        workflow_id=lead.workflow_id,
        created_at=as_utc(lead.created_at),
        updated_at=as_utc(lead.updated_at),
        history=history,
        deliveries=deliveries,
    )


def _time(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


async def _deliveries(session: AsyncSession, lead_id: str) -> list[DeliveryView]:
    lost = await session.scalars(
        select(Withdrawal).where(Withdrawal.lead_id == lead_id).order_by(Withdrawal.withdrawn_at)
    )
    views = [
        DeliveryView(
            dealer_id=row.dealer_id,
            status="withdrawn",
            reason=row.routing_reason,
            dealer_status=None,
            delivered_at=_time(row.delivered_at),
            withdrawn_at=_time(row.withdrawn_at),
            withdrawal_reason=row.reason,
            withdrawal_at_crm=row.crm_outcome,
        )
        for row in lost
    ]
    unanswered = await session.scalars(
        select(DeliveryRelease)
        .where(DeliveryRelease.lead_id == lead_id, DeliveryRelease.crm_outcome.is_not(None))
        .order_by(DeliveryRelease.released_at)
    )
    views += [
        DeliveryView(
            dealer_id=row.dealer_id,
            status="released",
            reason=row.routing_reason,
            dealer_status=None,
            delivered_at=_time(row.delivered_at),
            withdrawn_at=_time(row.released_at),
            withdrawal_reason=_release_reason(row),
            withdrawal_at_crm=row.crm_outcome,
        )
        for row in unanswered
    ]
    views.sort(key=lambda view: view.withdrawn_at or datetime.min.replace(tzinfo=UTC))
    current = await session.get(Delivery, lead_id)
    if current is not None:
        views.append(
            DeliveryView(
                dealer_id=current.dealer_id,
                status=current.status,
                reason=current.reason,
                dealer_status=current.dealer_status,
                delivered_at=_time(current.delivered_at),
                accept_by=await _accept_by(session, current),
            )
        )
    return views


def _release_reason(row: DeliveryRelease) -> str:
    if row.status_before == LeadStatus.DELIVERED.value:  # only support's move releases a delivered lead
        return "support moved the lead to another dealer: its CRM is asked to drop it"
    return (
        "its CRM never answered the create call, or support moved the lead before it did: it may hold"
        " the lead"
    )


async def _accept_by(session: AsyncSession, delivery: Delivery) -> datetime | None:
    if delivery.delivered_at is None or delivery.dealer_status is not None:
        return None  # not at the dealer yet, or the dealer already acted on it
    if delivery.accept_by is not None:  # as the delivery was given it (a later rules load moves nothing)
        return as_utc(delivery.accept_by)
    dealer = await session.get(Dealer, delivery.dealer_id)
    return routing.accept_by(dealer, delivery.delivered_at) if dealer is not None else None


async def set_routing_profile(session: AsyncSession, lead_id: str, profile: dict[str, str]) -> None:
    """Keep what routing looked at for the lead (state, city, model), in the caller's transaction."""
    lead = await session.get(Lead, lead_id)
    if lead is not None:
        lead.routing_profile = dict(profile)


async def set_lead_source(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, source: str | None
) -> None:
    """Keep the lead's channel (Zoho's Lead_Source) once its record is read; an unknown lead is left be."""
    async with sessions.begin() as session:
        lead = await session.get(Lead, lead_id)
        if lead is not None and lead.lead_source != source:
            lead.lead_source = source


async def routing_profile(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> dict[str, str] | None:
    """What routing looked at for the lead; None for an unknown lead or one routed before it was kept."""
    async with sessions() as session:
        lead = await session.get(Lead, lead_id)
    return dict(lead.routing_profile) if lead is not None and lead.routing_profile else None

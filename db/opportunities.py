"""Opportunities (Zoho deals) in the central database: current state and stage history."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.deals import DealState
from core.timeutil import as_utc
from db.engine import on_sqlite
from db.models import Opportunity, OpportunityStageChange


class StageChangeView(BaseModel):
    from_stage: str | None
    to_stage: str
    changed_by: str | None
    changed_at: datetime


class OpportunityView(BaseModel):
    """A deal's current state in the central database and every stage move, oldest first (the read API)."""

    deal_id: str
    deal_name: str | None
    stage: str | None
    amount: Decimal | None
    closing_date: str | None
    probability: int | None
    account_name: str | None
    contact_name: str | None
    owner_name: str | None
    lead_id: str | None = Field(
        default=None,
        description="the Zoho lead the deal was converted from (its $converted_detail), null when none was",
    )
    modified_time: datetime
    updated_at: datetime
    stage_history: list[StageChangeView]


async def apply_change(
    sessions: async_sessionmaker[AsyncSession], state: DealState, at: datetime, *, record_read: bool = False
) -> Literal["applied", "current", "stale", "repeated"]:
    """Record the change in the stage history and, if it is the newest, make it the current state.

    ``record_read``: ``state`` is Zoho's record as read after the change. Zoho's times have second
    precision, so a record read at the current state's own time is the last word of that second (a
    second move made within it): it replaces the current state where it differs, unless it was read
    before the record stored (a late attempt of an older read). Where it is, or
    becomes, the current state, its stage is marked as the move its second ended on (``settled``); an
    older record read (a late attempt) marks nothing. That relies on Zoho's read after its webhook
    showing the change the webhook reports, or a later one.

    "current": this very change was stored before and is still the current state (an attempt retried
    after its commit, a webhook sent again): the database holds it as "applied" would leave it.
    "stale": an older change arriving late, or a webhook's other stage at the current state's own
    second: its stage joins the history in time order, the current state keeps its values. "repeated":
    such a change was stored before. Check and write share one transaction (the row is locked on
    PostgreSQL), so retried or late activity attempts can neither move a deal backwards nor record a
    change twice.
    """
    # SQLite keeps datetimes without their zone: store UTC, whatever offset Zoho wrote.
    state = replace(state, modified_time=as_utc(state.modified_time))
    async with sessions.begin() as session:
        row = await session.get(Opportunity, state.deal_id, with_for_update=True)
        newest = row is None or as_utc(row.modified_time) < state.modified_time
        if record_read and row is not None and as_utc(row.modified_time) == state.modified_time:
            newest = _differs(state, row, exact=not on_sqlite(session)) and _read_since(state, row)
        if row is None:
            row = Opportunity(deal_id=state.deal_id, modified_time=state.modified_time, updated_at=at)
            session.add(row)
            await session.flush()  # the stage history refers to this row
        settles = record_read and newest  # a record read that becomes the state: its second's last move
        recorded = state.stage is not None and await _record_stage(session, state, at, settled=settles)
        _link_lead(state, row, at)
        if not newest:
            if recorded:
                return "stale"
            held = as_utc(row.modified_time) == state.modified_time and state.stage in (None, row.stage)
            if held and record_read:
                await _settle(session, state)
            return "current" if held else "repeated"
        _copy(state, row, at)
        if record_read:
            row.record_read_at = as_utc(state.read_at) if state.read_at else None
        if settles:
            await _settle(session, state)
    return "applied"


def _read_since(state: DealState, row: Opportunity) -> bool:
    """Whether Zoho's record ``state`` was read after the one ``row`` holds of the same second: an
    attempt of an older read arriving late (a frozen worker, a run reset to after its read) is not the
    second's last word. Either time unknown (a state from before reads were timed): taken, as before."""
    if state.read_at is None or row.record_read_at is None:
        return True
    return as_utc(state.read_at) > as_utc(row.record_read_at)


def _link_lead(state: DealState, row: Opportunity, at: datetime) -> None:
    """The converted lead belongs to the deal, not to a change: whichever change looked it up (a late
    or repeated one too) stores what it found. A link once found stays."""
    if state.lead_id is not None:
        if row.lead_id != state.lead_id:
            row.updated_at = at  # the lead warehouse sync pages deals by it: the link must reach it
        row.lead_id = state.lead_id
        row.lead_lookup_missed = False
    elif state.lead_lookup_missed is not None and row.lead_id is None:
        row.lead_lookup_missed = state.lead_lookup_missed


async def _record_stage(session: AsyncSession, state: DealState, at: datetime, *, settled: bool) -> bool:
    known = await session.scalar(
        select(OpportunityStageChange.id).where(
            OpportunityStageChange.deal_id == state.deal_id,
            OpportunityStageChange.changed_at == state.modified_time,
            OpportunityStageChange.stage == state.stage,
        )
    )
    if known is not None or state.stage is None:
        return False
    session.add(
        OpportunityStageChange(
            deal_id=state.deal_id,
            stage=state.stage,
            changed_by=state.modified_by,
            changed_at=state.modified_time,
            recorded_at=at,
            settled=settled,
        )
    )
    return True


# The deal's fields a change may set; a partial state (a webhook with a few merge fields) keeps what it
# does not mention.
FIELDS = (
    "stage",
    "deal_name",
    "amount",
    "closing_date",
    "probability",
    "account_name",
    "contact_name",
    "owner_name",
)


async def _settle(session: AsyncSession, state: DealState) -> None:
    """Mark ``state``'s stage as the one its second ended on: the last of the moves made within it.

    The record is read a batch window (``HUB_OPPORTUNITY_BATCH_WINDOW_SECONDS``, 2 s by default) after a
    webhook came, so after the second of the move it reports had ended. A record whose own time is a
    later move, made as Zoho was read, may have a third move follow within that second: that move's
    webhook then brings a read of its own, which marks it. Nothing is written where the marks are right
    already (a record's move that becomes the state is recorded marked).
    """
    if state.stage is None:
        return
    await session.flush()  # the move just recorded is marked too
    change = OpportunityStageChange
    of_that_second = (change.deal_id == state.deal_id, change.changed_at == state.modified_time)
    marked = change.stage == state.stage
    if not await session.scalar(select(func.count()).where(*of_that_second, change.settled != marked)):
        return
    await session.execute(
        update(change)
        .where(*of_that_second)
        .values(settled=marked)
        .execution_options(synchronize_session=False)
    )


def _copy(state: DealState, row: Opportunity, at: datetime) -> None:
    row.modified_time = state.modified_time
    row.updated_at = at
    for name in FIELDS:
        value = getattr(state, name)
        if value is not None or state.complete:  # Zoho's whole record: an empty field was cleared there
            setattr(row, name, value)


def _differs(state: DealState, row: Opportunity, *, exact: bool) -> bool:
    """Whether storing ``state`` would change a field of ``row`` (amounts ``exact`` or as floats: SQLite
    keeps NUMERIC as a float, so an amount beyond its 15 digits comes back rounded)."""
    return any(
        not _same(getattr(state, name), getattr(row, name), name == "amount" and not exact, state.complete)
        for name in FIELDS
    )


def _same(given: object, stored: object, as_floats: bool, complete: bool) -> bool:
    if given is None:
        return stored is None or not complete  # a partial state keeps what it does not mention
    if as_floats and stored is not None:
        return float(str(given)) == float(str(stored))
    return given == stored


@dataclass(frozen=True)
class KnownLead:
    replicated: bool  # the deal is in the database
    lead_id: str | None  # the lead it was converted from (None: none found, or the lookup was missed)
    lookup_missed: bool  # Zoho did not answer the lookup in time: look again


async def known_lead(sessions: async_sessionmaker[AsyncSession], deal_id: str) -> KnownLead:
    """What the database knows of the lead the deal was converted from."""
    async with sessions() as session:
        row = await session.get(Opportunity, deal_id)
        if row is None:
            return KnownLead(replicated=False, lead_id=None, lookup_missed=False)
        return KnownLead(replicated=True, lead_id=row.lead_id, lookup_missed=row.lead_lookup_missed)


def _transitions(changes: Iterable[OpportunityStageChange]) -> list[StageChangeView]:
    """Stage moves from changes in time order; updates that kept the stage are not moves."""
    moves: list[StageChangeView] = []
    previous: str | None = None
    for change in changes:
        if change.stage != previous:
            moves.append(
                StageChangeView(
                    from_stage=previous,
                    to_stage=change.stage,
                    changed_by=change.changed_by,
                    changed_at=as_utc(change.changed_at),
                )
            )
            previous = change.stage
    return moves


async def get_opportunity(sessions: async_sessionmaker[AsyncSession], deal_id: str) -> OpportunityView | None:
    """The deal's current state and its stage changes, oldest first; None when unknown."""
    async with sessions() as session:
        # One statement: the state and its history as of one moment. Two reads, each seeing what was
        # committed before it, could show a move stored between them without the state it made.
        rows = (
            await session.execute(
                select(Opportunity, OpportunityStageChange)
                .outerjoin(OpportunityStageChange, OpportunityStageChange.deal_id == Opportunity.deal_id)
                .where(Opportunity.deal_id == deal_id)
                # Moves of one second share their time: the one its second ended on comes last.
                .order_by(
                    OpportunityStageChange.changed_at,
                    OpportunityStageChange.settled,
                    OpportunityStageChange.id,
                )
            )
        ).all()
        if not rows:
            return None
        row = rows[0][0]
        history = _transitions(change for _, change in rows if change is not None)
    return OpportunityView(
        deal_id=row.deal_id,
        deal_name=row.deal_name,
        stage=row.stage,
        amount=row.amount,
        closing_date=row.closing_date,
        probability=row.probability,
        account_name=row.account_name,
        contact_name=row.contact_name,
        owner_name=row.owner_name,
        lead_id=row.lead_id,
        modified_time=as_utc(row.modified_time),
        updated_at=as_utc(row.updated_at),
        stage_history=history,
    )

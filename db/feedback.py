"""What dealers report doing with a lead (accepted, contacted, ...), kept against its delivery record.

A report counts only from the dealer that holds the lead: it is checked and written in one transaction
with the lead's delivery row locked, the same lock the SLA's withdrawal takes, so an acceptance and a
withdrawal racing each other are decided once, in the database. A report from a dealer that already lost
the lead is recorded as ``late`` and never taken. Repeats (of a report about the same delivery) change
nothing; an older report (by the time the dealer gives) joins the history without moving the lead's
current status back.

A webhook's report that becomes its delivery's newest is also due to reach the lead's run: it carries
``signal_due`` until the run has it (``handed_on``), and a sweep takes what is due (``due_reports``,
``claim``), so a report answered to the dealer is never left unheard when its first hand-over failed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.constants import DEALER_STATUSES, LeadStatus, lead_workflow_id
from core.timeutil import CLOCK_SKEW, as_utc
from db import lead_status
from db.engine import lock_for_writing
from db.models import DealerFeedback, Delivery, DeliveryRelease, ReportGuard, Withdrawal

# How long the API's own hand-over of a report has before a sweep may take it over.
HAND_OVER_GRACE = timedelta(seconds=30)


@dataclass(frozen=True)
class DueReport:
    """A recorded report the lead's run has yet to hear of, as recorded."""

    report_id: int
    lead_id: str
    dealer_id: str
    status: str
    at: datetime
    signal_due: datetime

    @classmethod
    def of(cls, row: DealerFeedback) -> DueReport | None:
        if row.signal_due is None:
            return None
        return cls(row.id, row.lead_id, row.dealer_id, row.status, as_utc(row.at), as_utc(row.signal_due))


@dataclass(frozen=True)
class Recorded:
    """What a report changed, and whether its status is the lead's newest (the one to pass on).
    ``due``: the report, still to reach the lead's run."""

    outcome: Outcome
    current: bool
    due: DueReport | None = None
    # A repeat of the current status: the time it is kept with (its first report's), not the repeat's.
    kept_at: datetime | None = None


class Outcome(StrEnum):
    APPLIED = "applied"  # the lead's newest status now
    OLDER = "older"  # in the history; a newer report stands
    REPEATED = "repeated"  # already recorded
    LATE = "late"  # the dealer had lost the lead: recorded, not taken
    UNKNOWN = "unknown"  # the lead was never delivered to this dealer


def funnel_rank(status: str | None) -> int:
    """Where a status stands in the dealer's funnel; -1 for none."""
    return DEALER_STATUSES.index(LeadStatus(status)) if status in DEALER_STATUSES else -1


def is_newer(status: str, at: datetime, current: str | None, current_at: datetime | None) -> bool:
    """Whether a report supersedes the current one: later by the dealer's clock, or as late and further on."""
    if current is None or current_at is None:
        return True
    return (as_utc(at), funnel_rank(status)) > (as_utc(current_at), funnel_rank(current))


def kept_time(at: datetime, received_at: datetime) -> datetime:
    """A report's time as it is kept: in UTC, and no later than a clock's skew past its arrival (a
    dealer's clock ahead of ours)."""
    return min(as_utc(at), as_utc(received_at) + CLOCK_SKEW)


async def record(
    sessions: async_sessionmaker[AsyncSession],
    *,
    lead_id: str,
    dealer_id: str,
    status: LeadStatus,
    at: datetime,
    received_at: datetime,
    to_signal: bool = False,
) -> Recorded:
    """Record a dealer's report about a lead; the outcome says what it changed. ``to_signal``: the
    report came from outside the lead's run (the dealer's webhook), which must hear of it if it is the
    newest."""
    # In UTC before it is stored: SQLite keeps no offset, and a dealer reports in its own zone. A dealer's
    # clock ahead of ours (its webhook's "at", or its CRM's answer to a poll) must not make every later
    # real status look older than it: a time past the report's arrival counts as its arrival.
    at, received_at = kept_time(at, received_at), as_utc(received_at)
    async with sessions.begin() as session:
        await lock_for_writing(session)
        delivery = await session.get(Delivery, lead_id, populate_existing=True, with_for_update=True)
        # A claimed row counts too: a CRM that accepts at once may report before the hub recorded the
        # delivery its create call made; the report is kept on the row the delivery then completes.
        holds = delivery is not None and delivery.dealer_id == dealer_id
        if not holds:
            lost = await _lost_delivery(session, lead_id, dealer_id)
            if lost is None:
                return Recorded(Outcome.UNKNOWN, current=False)
            claimed_at = lost.claimed_at
            if await _recorded(session, lead_id, dealer_id, status, claimed_at) is None:
                await _add_report(
                    session, lead_id, dealer_id, status, at, received_at, Outcome.LATE, claimed_at
                )
            return Recorded(Outcome.LATE, current=False)
        assert delivery is not None
        # Repeats are of this delivery's reports: a dealer support sent the lead back to reports anew.
        seen = await _recorded(session, lead_id, dealer_id, status, delivery.claimed_at)
        if seen is not None:
            current = delivery.dealer_status == status.value
            kept_at = as_utc(delivery.dealer_status_at) if current and delivery.dealer_status_at else None
            return Recorded(Outcome.REPEATED, current, DueReport.of(seen) if current else None, kept_at)
        newer = is_newer(status, at, delivery.dealer_status, delivery.dealer_status_at)
        outcome = Outcome.APPLIED if newer else Outcome.OLDER
        due = None
        if newer:
            # Only the newest report of this delivery is ever due: an older one must not reach a run
            # after it. A report of an earlier delivery (a dealer support moved the lead away from)
            # stays due: its run passes it on to the subscribers, who would otherwise never hear of it.
            await session.execute(
                update(DealerFeedback)
                .where(
                    DealerFeedback.lead_id == lead_id,
                    DealerFeedback.dealer_id == dealer_id,
                    _about(delivery.claimed_at),
                    DealerFeedback.signal_due.is_not(None),
                )
                .values(signal_due=None)
            )
            due = received_at + HAND_OVER_GRACE if to_signal else None
        row = await _add_report(
            session, lead_id, dealer_id, status, at, received_at, outcome, delivery.claimed_at, due
        )
        if newer:
            delivery.dealer_status, delivery.dealer_status_at = status.value, at
            await lead_status.write_status(
                session,
                lead_id=lead_id,
                status=status,
                workflow_id=lead_workflow_id(lead_id),
                at=at,
                dealer_id=dealer_id,
                detail=f"reported by {dealer_id}",
            )
        else:
            detail = f"reported by {dealer_id} after a newer {delivery.dealer_status}"
            await lead_status.add_to_history(
                session, lead_id, status, dealer_id, at, detail, delivery.claimed_at
            )
        return Recorded(outcome, current=newer, due=DueReport.of(row))


def may_hold_the_lead() -> ColumnElement[bool]:
    """Releases whose dealer's CRM may hold the lead: delivered there before support moved it away, or a
    claim whose create call its CRM never answered (``crm_outcome`` set)."""
    return or_(DeliveryRelease.crm_outcome.is_not(None), DeliveryRelease.status_before == "delivered")


async def _lost_delivery(
    session: AsyncSession, lead_id: str, dealer_id: str
) -> Withdrawal | DeliveryRelease | None:
    """The delivery the dealer lost: withdrawn after its SLA, released when its CRM never answered the
    create call (it may have stored the lead, and report about it), or moved away from it by support
    once delivered. None: the dealer never had it.

    Its row is locked, as the delivery row is for a lead the dealer holds: the same report sent twice at
    once (a dealer resending while its first request is under way) is then recorded once, the second
    finding the first's row (on SQLite the write lock taken first serialises them already)."""
    lost = await session.get(Withdrawal, (lead_id, dealer_id), with_for_update=True)
    if lost is not None:
        return lost
    found: DeliveryRelease | None = await session.scalar(
        select(DeliveryRelease)
        .where(
            DeliveryRelease.lead_id == lead_id,
            DeliveryRelease.dealer_id == dealer_id,
            may_hold_the_lead(),
        )
        .order_by(DeliveryRelease.released_at.desc(), DeliveryRelease.id.desc())
        .limit(1)
        .with_for_update()
    )
    return found


async def unanswered_release(session: AsyncSession, lead_id: str, dealer_id: str) -> DeliveryRelease | None:
    """The dealer's latest claim of the lead released because its CRM never answered, if any."""
    found: DeliveryRelease | None = await session.scalar(
        select(DeliveryRelease)
        .where(
            DeliveryRelease.lead_id == lead_id,
            DeliveryRelease.dealer_id == dealer_id,
            DeliveryRelease.crm_outcome.is_not(None),
        )
        .order_by(DeliveryRelease.released_at.desc(), DeliveryRelease.id.desc())
        .limit(1)
    )
    return found


async def _recorded(
    session: AsyncSession, lead_id: str, dealer_id: str, status: LeadStatus, claimed_at: datetime | None
) -> DealerFeedback | None:
    """The report of this (lead, dealer, status) about the delivery claimed at ``claimed_at`` recorded
    before, if any (``_about``: so a report resent across migration 0010 is a repeat)."""
    report = DealerFeedback
    found: DealerFeedback | None = await session.scalar(
        select(report)
        .where(
            report.lead_id == lead_id,
            report.dealer_id == dealer_id,
            report.status == status.value,
            _about(claimed_at),
        )
        .limit(1)
    )
    return found


def _about(claimed_at: datetime | None) -> ColumnElement[bool]:
    """Reports about the delivery claimed at ``claimed_at`` (None: a delivery from before claims were
    timed, as its reports were). A report recorded before reports named their delivery (migration 0010)
    is about this delivery if it arrived after the claim and was taken (not late)."""
    report = DealerFeedback
    about: ColumnElement[bool] = report.delivery_claimed_at.is_(None)
    if claimed_at is not None:
        before_0010 = and_(about, report.received_at >= claimed_at, report.outcome != Outcome.LATE.value)
        about = or_(report.delivery_claimed_at == claimed_at, before_0010)
    return about


async def _add_report(
    session: AsyncSession,
    lead_id: str,
    dealer_id: str,
    status: LeadStatus,
    at: datetime,
    received_at: datetime,
    outcome: Outcome,
    claimed_at: datetime | None,
    signal_due: datetime | None = None,
) -> DealerFeedback:
    row = DealerFeedback(
        lead_id=lead_id,
        dealer_id=dealer_id,
        status=status.value,
        at=at,
        received_at=received_at,
        outcome=outcome.value,
        signal_due=signal_due,
        delivery_claimed_at=claimed_at,
    )
    session.add(row)
    await session.flush()  # its id
    return row


async def due_reports(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int
) -> list[DueReport]:
    """Reports due to be handed to their lead's run, the oldest first."""
    async with sessions() as session:
        rows = await session.scalars(
            select(DealerFeedback)
            .where(DealerFeedback.signal_due <= as_utc(now))
            .order_by(DealerFeedback.id)
            .limit(limit)
        )
        return [due for row in rows if (due := DueReport.of(row)) is not None]


async def claim(
    sessions: async_sessionmaker[AsyncSession], report: DueReport, until: datetime
) -> DueReport | None:
    """Take a due report for one hand-over until ``until`` (the report as taken); None when another
    process took it first."""
    taken_until = as_utc(until)
    async with sessions.begin() as session:
        taken = await session.execute(
            update(DealerFeedback)
            .where(DealerFeedback.id == report.report_id, DealerFeedback.signal_due == report.signal_due)
            .values(signal_due=taken_until)
        )
    return dataclasses.replace(report, signal_due=taken_until) if taken.rowcount else None  # type: ignore[attr-defined]


async def handed_on(sessions: async_sessionmaker[AsyncSession], report: DueReport) -> None:
    """The lead's run has the report: nothing is due any more, unless it was made due again meanwhile
    (``unguard``), which a hand-over that took it before must not undo."""
    async with sessions.begin() as session:
        await session.execute(
            update(DealerFeedback)
            .where(DealerFeedback.id == report.report_id, DealerFeedback.signal_due == report.signal_due)
            .values(signal_due=None)
        )


async def guard(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, dealer_id: str, at: datetime
) -> None:
    """Hand the dealer's newest taken report of the lead on again at ``at`` unless ``unguard`` comes
    first (``ReportGuard``): written before ``hub leads reassign`` ends the run reading the lead."""
    async with sessions.begin() as session:
        await session.merge(ReportGuard(lead_id=lead_id, dealer_id=dealer_id, due_at=as_utc(at)))


async def unguard(
    sessions: async_sessionmaker[AsyncSession],
    lead_id: str,
    dealer_id: str,
    *,
    rehand_at: datetime | None,
    passed_by: datetime | None = None,
) -> bool:
    """Clear the guard; ``rehand_at``: make the dealer's newest report due then (one died with the run).
    Whether a guard was cleared.

    The command that wrote it calls it with no ``passed_by``: the report is made due whether or not a
    sweep cleared the guard first. A sweep passes ``passed_by``: only a guard due by then is cleared (the
    command's next try may have written it again since), and the report is made due only where one was."""
    async with sessions.begin() as session:
        await lock_for_writing(session)  # in turn with a report being recorded (only the newest is due)
        await session.get(Delivery, lead_id, with_for_update=True)
        cleared = delete(ReportGuard).where(
            ReportGuard.lead_id == lead_id, ReportGuard.dealer_id == dealer_id
        )
        if passed_by is not None:
            cleared = cleared.where(ReportGuard.due_at <= as_utc(passed_by))
        found = bool((await session.execute(cleared)).rowcount)  # type: ignore[attr-defined]
        if passed_by is not None and not found:
            return False  # another sweep acted on it, or the command wrote it again
        if rehand_at is not None and (newest := await _newest_taken(session, lead_id, dealer_id)) is not None:
            newest.signal_due = as_utc(rehand_at)
        return found


async def guards_passed(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Make the newest report of each guard past its time due now (its command died before it looked at
    the run it ended), and clear those guards; how many."""
    async with sessions() as session:
        passed = (
            await session.execute(
                select(ReportGuard.lead_id, ReportGuard.dealer_id).where(ReportGuard.due_at <= as_utc(now))
            )
        ).all()
    acted = [await unguard(sessions, lead, dealer, rehand_at=now, passed_by=now) for lead, dealer in passed]
    return sum(acted)


async def _newest_taken(session: AsyncSession, lead_id: str, dealer_id: str) -> DealerFeedback | None:
    """The dealer's newest report of the lead that moved it on (taken), locked for writing."""
    return await session.scalar(
        select(DealerFeedback)
        .where(
            DealerFeedback.lead_id == lead_id,
            DealerFeedback.dealer_id == dealer_id,
            DealerFeedback.outcome == Outcome.APPLIED.value,
        )
        .order_by(DealerFeedback.id.desc())
        .limit(1)
        .with_for_update()
    )

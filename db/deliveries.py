"""Each lead's delivery decision, kept in the portal database so that it outlives any workflow run.

A lead goes to one dealer at a time. Routing claims the dealer and reserves its capacity for the day in
one transaction; the claim names the idempotency key every call to that dealer carries; it becomes
``delivered`` once the dealer's CRM confirmed. A later run of the same lead (a resent webhook after a
terminate, ``hub leads redrive``, a reset) finds the claim and resumes it: same dealer, same key. A
dealer that refuses the lead releases its claim, and the next is claimed in the same transaction. Only
support moves a lead that reached a dealer (``reassign``), and the move is in the lead's history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.constants import LeadStatus, lead_delivery_key, lead_workflow_id
from core.timeutil import CLOCK_SKEW, as_utc
from db import lead_status
from db.engine import lock_for_writing
from db.feedback import funnel_rank, is_newer, may_hold_the_lead, unanswered_release
from db.models import Dealer, Delivery, DeliveryRelease, Lead, Withdrawal
from db.routing import (
    MAX_CLAIM_ATTEMPTS,
    LeadProfile,
    RoutingContention,
    active_dealers,
    rank,
    routing_reason,
    take_turn,
)

CLAIMED = "claimed"
DELIVERED = "delivered"
PENDING = "pending"  # a CRM not yet asked (or not yet answering) to drop a lead its dealer lost

ClaimHook = Callable[[AsyncSession, str], Awaitable[None]]


@dataclass(frozen=True)
class Claim:
    """Where a lead goes and how it is sent there."""

    lead_id: str
    dealer_id: str
    idempotency_key: str
    delivered: bool
    dealer_lead_id: str | None = None
    resumed: bool = False  # taken by an earlier run (or attempt), not by this call


class DropOwed(RuntimeError):
    """Support's move names a dealer whose CRM still owes a drop of the lead (it may hold a copy)."""


def _as_claim(row: Delivery, *, resumed: bool) -> Claim:
    return Claim(
        lead_id=row.lead_id,
        dealer_id=row.dealer_id,
        idempotency_key=row.idempotency_key or lead_delivery_key(row.lead_id, row.dealer_id),
        delivered=row.status == DELIVERED,
        dealer_lead_id=row.dealer_lead_id,
        resumed=resumed,
    )


async def _locked_decision(session: AsyncSession, lead_id: str) -> tuple[list[Dealer], Delivery | None]:
    """Take the locks every decision takes, then read the lead's row: the active dealers and the row.

    Dealers first, then the lead's row: concurrent decisions about one lead (a zombie attempt beside its
    retry) queue on the dealer locks, and the second then reads what the first committed.
    """
    await lock_for_writing(session)
    dealers = await active_dealers(session, lock=True)
    row = await session.get(Delivery, lead_id, populate_existing=True, with_for_update=True)
    return dealers, row


async def _drop(
    session: AsyncSession, row: Delivery | None, *, released: bool = True, drop_owed: bool = False
) -> None:
    """Remove the lead's decision now (one row per lead): it no longer holds the dealer's capacity. A
    release row keeps that the delivery ended, for the warehouse (a withdrawal keeps its own row).
    ``drop_owed``: its CRM may hold the lead (it never answered the create call, or support moved the
    lead away): the release waits for the CRM to be asked to drop it (``pending``)."""
    if row is not None:
        if released:
            session.add(
                DeliveryRelease(
                    lead_id=row.lead_id,
                    dealer_id=row.dealer_id,
                    status_before=row.status,
                    routing_reason=row.reason,
                    delivered_at=row.delivered_at,
                    claimed_at=row.claimed_at,
                    idempotency_key=row.idempotency_key,
                    crm_outcome=PENDING if drop_owed else None,
                    dealer_lead_id=row.dealer_lead_id,  # the drop owed names the lead by it
                )
            )
        await session.delete(row)
        await session.flush()


async def claim_next(
    sessions: async_sessionmaker[AsyncSession],
    lead_id: str,
    lead: LeadProfile,
    day: date,
    at: datetime,
    *,
    release: str | None = None,
    exclude: Sequence[str] = (),
    on_claim: ClaimHook | None = None,
    max_withdrawals: int | None = None,
    release_unanswered: bool = False,
) -> Claim | None:
    """The lead's claim: the one already taken, or the best dealer with capacity left, claimed now.

    ``release`` names a dealer that did not take the lead: its claim (never a delivered one) is dropped
    first, in the same transaction; a claim its dealer reported about is delivered instead (its CRM has
    the lead, whatever the create call answered). ``release_unanswered``: its CRM never answered the
    create call, so the release waits for the CRM to be asked to drop the lead (``pending``). Dealers
    in ``exclude`` are passed over, as are those the lead was withdrawn from and those whose CRM still owes
    a drop of it (``owing_drop``). ``on_claim(session, dealer_id)`` writes with a new claim (the lead's
    "routed" status): both commit together or not at all. Returns None when no dealer covers the lead
    with capacity left, or when the lead was withdrawn more than ``max_withdrawals`` times (its
    re-routing cap: whichever run asks, after a terminate too) or went to its fallback owner already
    (``with_fallback_owner``; both only where ``max_withdrawals`` is given).
    """
    for _ in range(MAX_CLAIM_ATTEMPTS):
        async with sessions.begin() as session:
            dealers, row = await _locked_decision(session, lead_id)
            if row is not None and row.dealer_id == release and _reported(row):
                await _delivered_as_reported(session, row, at)
                return _as_claim(row, resumed=True)
            if row is not None and not (row.dealer_id == release and row.status == CLAIMED):
                return _as_claim(row, resumed=True)
            # Released (or none): ranking then counts its capacity free.
            await _drop(session, row, drop_owed=release_unanswered and row is not None)
            lost = await lost_by(session, lead_id)
            if max_withdrawals is not None and (
                len(lost) > max_withdrawals or await with_fallback_owner(session, lead_id)
            ):
                return None
            passed_over = set(exclude) | lost | await owing_drop(session, lead_id)
            ranked = [d for d in await rank(session, dealers, lead, day, at) if d.id not in passed_over]
            if not ranked:
                return None
            chosen = await take_turn(session, ranked, at)
            if chosen is not None:
                key = await _key_for_return(session, lead_id, chosen.id, at)  # (routing may pick it again)
                reason = routing_reason(chosen, ranked, at)
                claimed = _claim_row(lead_id, chosen.id, day, at, reason=reason, key=key)
                session.add(claimed)
                if on_claim is not None:
                    await on_claim(session, claimed.dealer_id)
                return _as_claim(claimed, resumed=False)
    raise RoutingContention(f"the rotation moved under {MAX_CLAIM_ATTEMPTS} claims in a row")


async def with_fallback_owner(session: AsyncSession, lead_id: str) -> bool:
    """Whether the lead is at its fallback owner (``sla_exhausted``; a new run's start leaves that status
    as it is) and support has not moved it since (``hub leads reassign``): a decision that outlives the
    run that took it. A later run of the lead (a resent webhook after a terminate, a redrive) must not
    give it to a dealer that has room again, or one that refused it, while Zoho hands it to the fallback
    owner."""
    lead = await session.get(Lead, lead_id)
    return lead is not None and lead.status == LeadStatus.SLA_EXHAUSTED.value


def _reported(row: Delivery) -> bool:
    """Whether the dealer reported about the lead while its delivery was still a claim."""
    return row.status == CLAIMED and funnel_rank(row.dealer_status) >= 0


async def _delivered_as_reported(session: AsyncSession, row: Delivery, at: datetime) -> None:
    """A claim whose create call never got an answer the hub could take (timeouts for the whole retry
    window, or a refusal of what was in fact a repeat), while the dealer's own report says its CRM has
    the lead: the lead stays there, delivered. Releasing it would put it at a second dealer."""
    row.status, row.delivered_at = DELIVERED, at
    detail = f"{row.dealer_id} reported {row.dealer_status}; its CRM never answered the create call"
    await lead_status.write_status(
        session,
        lead_id=row.lead_id,
        status=LeadStatus.DELIVERED,
        workflow_id=lead_workflow_id(row.lead_id),
        at=at,
        dealer_id=row.dealer_id,
        detail=detail,
    )
    # The dealer's report is the lead's status already, and stays so; the history still shows the step.
    await lead_status.add_to_history(
        session, row.lead_id, LeadStatus.DELIVERED, row.dealer_id, at, detail, row.claimed_at
    )


async def lost_by(session: AsyncSession, lead_id: str) -> set[str]:
    """The dealers the lead was withdrawn from: it never goes back to them."""
    rows = await session.scalars(select(Withdrawal.dealer_id).where(Withdrawal.lead_id == lead_id))
    return set(rows)


async def owing_drop(session: AsyncSession, lead_id: str) -> set[str]:
    """The dealers whose claim was released unanswered, or whose delivery support moved away, and whose
    CRM has not yet answered a drop of the lead (``pending``): routing passes them over. Their CRM may
    hold the lead; a delivery there now would be a second copy, and the drop still owed could no longer
    be made (asking by the lead's external id would find the new delivery too). A run of the lead makes
    that drop (a new one after its own claim, which passes the dealer over; support's move right after
    it); once the CRM answered, later claims may choose the dealer again."""
    return {row.dealer_id for row in await _pending_releases(session, lead_id)}


async def _pending_releases(
    session: AsyncSession, lead_id: str, dealer_id: str | None = None
) -> list[DeliveryRelease]:
    """The lead's releases owing a drop (claims released unanswered, deliveries support moved away) whose
    CRM was not yet asked, with an answer, to drop it."""
    query = select(DeliveryRelease).where(
        DeliveryRelease.lead_id == lead_id, DeliveryRelease.crm_outcome == PENDING
    )
    if dealer_id is not None:
        query = query.where(DeliveryRelease.dealer_id == dealer_id)
    return list(await session.scalars(query))


LOST = "lost this lead before (withdrawn after its SLA): never chosen again"
OWES_A_DROP = (
    "its CRM may hold this lead (a create never answered, or support moved it away) and has not yet"
    " answered a drop of it: passed over until it has"
)


async def passed_over(session: AsyncSession, lead_id: str) -> dict[str, str]:
    """The dealers routing passes over for the lead whatever the run (``claim_next``), and why."""
    reasons = dict.fromkeys(await owing_drop(session, lead_id), OWES_A_DROP)
    return reasons | dict.fromkeys(await lost_by(session, lead_id), LOST)


@dataclass(frozen=True)
class ToDrop:
    """A dealer's CRM to ask to drop the lead: the delivery's key and the CRM's id of the lead."""

    dealer_id: str
    idempotency_key: str
    dealer_lead_id: str | None


@dataclass(frozen=True)
class Losses:
    """The lead's withdrawals so far, and the CRM calls still to make (``pending``: the run that decided
    them ended before the CRM answered, terminated say; or a release owing a drop)."""

    count: int
    pending: list[ToDrop]


async def losses(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> Losses:
    """The lead's losses; no CRM call is named for the dealer that holds the lead now (it went back
    there), where asking its CRM to drop "the lead" could drop the delivery it holds."""
    async with sessions() as session:
        current = await session.get(Delivery, lead_id)
        holder = current.dealer_id if current is not None else None
        lost = list(await session.scalars(select(Withdrawal).where(Withdrawal.lead_id == lead_id)))
        unanswered = await _pending_releases(session, lead_id)
        pending = [
            ToDrop(
                row.dealer_id,
                row.idempotency_key or lead_delivery_key(lead_id, row.dealer_id),
                row.dealer_lead_id,
            )
            for row in lost
            if row.crm_outcome == PENDING and row.dealer_id != holder
        ]
        pending += [
            ToDrop(
                row.dealer_id,
                row.idempotency_key or lead_delivery_key(lead_id, row.dealer_id),
                row.dealer_lead_id,
            )
            for row in unanswered
            if row.dealer_id != holder
        ]
    return Losses(len(lost), pending)


async def assign(
    sessions: async_sessionmaker[AsyncSession],
    lead_id: str,
    dealer_id: str,
    day: date,
    at: datetime,
    *,
    assigned_by: str,
    on_claim: ClaimHook | None = None,
) -> Claim:
    """Support's choice for a lead no dealer took: claim ``dealer_id``, whatever its capacity.

    A lead that was delivered meanwhile (by an earlier run) keeps its dealer: that claim is returned.
    """
    async with sessions.begin() as session:
        _, row = await _locked_decision(session, lead_id)
        if row is not None and (row.status == DELIVERED or row.dealer_id == dealer_id):
            return _as_claim(row, resumed=True)
        key = await _key_for_return(session, lead_id, dealer_id, at)
        claimed = _claim_row(
            lead_id, dealer_id, day, at, reason=f"assigned by {assigned_by or 'support'}", key=key
        )
        await _drop(session, row)
        session.add(claimed)
        if on_claim is not None:
            await on_claim(session, dealer_id)
        return _as_claim(claimed, resumed=False)


async def reassign(
    sessions: async_sessionmaker[AsyncSession],
    lead_id: str,
    dealer_id: str,
    day: date,
    at: datetime,
    *,
    reason: str,
    reassigned_by: str,
) -> Claim:
    """Support moves the lead to ``dealer_id``, delivered or not; recorded in the lead's history.

    The dealer that had it may hold it (delivered, or its create call sent): its release owes a drop of
    the lead at its CRM (``pending``, in ``losses``), which the move's run then asks for; until its CRM
    answered, routing passes that dealer over for this lead. Repeating it (a retried activity, a
    redriven run) changes nothing once the lead is at that dealer.
    """
    async with sessions.begin() as session:
        _, row = await _locked_decision(session, lead_id)
        if row is not None and row.dealer_id == dealer_id:
            return _as_claim(row, resumed=True)
        if dealer_id in await owing_drop(session, lead_id):
            # Its CRM may hold a copy of the lead it was asked to drop: neither key is safe (the old one
            # could replay a dropped lead, a new one make a second copy). `hub leads reassign` refuses it
            # first; this is the move that raced that check.
            raise DropOwed(f"{dealer_id}'s CRM has not yet answered a drop of lead {lead_id}")
        previous = row.dealer_id if row is not None else "no dealer"
        key = await _key_for_return(session, lead_id, dealer_id, at)
        claimed = _claim_row(
            lead_id, dealer_id, day, at, reason=f"reassigned by {reassigned_by}: {reason}", key=key
        )
        await _drop(session, row, drop_owed=True)
        session.add(claimed)
        await lead_status.write_status(
            session,
            lead_id=lead_id,
            status=LeadStatus.REASSIGNED,
            workflow_id=lead_workflow_id(lead_id),
            at=at,
            dealer_id=dealer_id,
            detail=f"from {previous} to {dealer_id} by {reassigned_by}: {reason}",
        )
        return _as_claim(claimed, resumed=False)


@dataclass(frozen=True)
class Delivered:
    """A delivery as recorded: when the dealer's CRM took the lead, and the SLA deadline it was given."""

    at: datetime
    accept_by: datetime | None


async def mark_delivered(
    session: AsyncSession,
    *,
    lead_id: str,
    dealer_id: str,
    dealer_lead_id: str,
    day: date,
    at: datetime,
    accept_by: datetime | None = None,
) -> Delivered | None:
    """Record that the dealer's CRM has the lead, in the caller's transaction, with its SLA deadline
    (``accept_by``, for a delivery at ``at``): the delivery as recorded (a retried attempt recording the
    same delivery again keeps the first time and deadline); None when the lead's claim names another
    dealer (support moved it while this delivery was under way).

    A lead without a claim (a run started before claims existed) gets its delivered row here.
    """
    row = await session.get(Delivery, lead_id, populate_existing=True, with_for_update=True)
    if row is None:
        row = _claim_row(lead_id, dealer_id, day, at, reason="routed")
        session.add(row)
    elif row.dealer_id != dealer_id:
        return None
    # An attempt whose answer was lost after its commit is retried: the dealer's SLA runs from the
    # first record, not from the retry's.
    if row.status != DELIVERED or row.delivered_at is None:
        row.delivered_at, row.accept_by = at, accept_by
    row.status = DELIVERED
    row.dealer_lead_id = dealer_lead_id
    return Delivered(as_utc(row.delivered_at), as_utc(row.accept_by) if row.accept_by else None)


@dataclass(frozen=True)
class DeliveryCheck:
    """What the lead's delivery record says of a delivery about to be made."""

    moved_on: str | None  # why it must not be made; None: it may
    # When this dealer was first chosen for the lead under this key (a lead sent back to a dealer may
    # take up the key of its earlier delivery there): no create under the key is older.
    key_first_claimed_at: datetime | None = None
    # The dealer's id of the lead ("" where its CRM named none) where this delivery is recorded already:
    # an attempt whose answer was lost after its commit, retried. None: not recorded yet.
    recorded_as: str | None = None
    # Whether a create under ``key`` may have gone out before: an earlier attempt or run of the lead sent
    # one (``note_sent``), or an earlier delivery at this dealer used the key. The next is a re-send.
    sent_before: bool = False


async def check_delivery(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, dealer_id: str, key: str
) -> DeliveryCheck:
    """Whether a delivery to ``dealer_id`` under ``key`` may be made, and since when it was decided.

    A run reset to before its delivery step (or a zombie attempt) asks again for a delivery the lead has
    left since: it is now at another dealer, or was withdrawn from this one, or support sent it back here
    as a new delivery with a key of its own. A lead without a decision (runs from before claims) may go.
    """
    async with sessions() as session:
        row = await session.get(Delivery, lead_id)
        if row is None:
            if await session.get(Withdrawal, (lead_id, dealer_id)) is not None:
                return DeliveryCheck(f"the lead was withdrawn from {dealer_id}")
            released = await unanswered_release(session, lead_id, dealer_id)
            if released is not None and released.crm_outcome in (PENDING, "withdrawn"):
                return DeliveryCheck(f"the lead was released from {dealer_id}, whose CRM never answered")
            return DeliveryCheck(None)
        if row.dealer_id != dealer_id:
            return DeliveryCheck(f"the lead is at {row.dealer_id} now")
        if row.idempotency_key and row.idempotency_key != key:
            return DeliveryCheck(f"the lead went back to {dealer_id} as a new delivery")
        first_claimed = await _key_first_claimed(session, lead_id, dealer_id, key, row.claimed_at)
        recorded_as = (row.dealer_lead_id or "") if row.status == DELIVERED else None
        claimed = as_utc(row.claimed_at) if row.claimed_at else None
        key_used_before = first_claimed is not None and claimed is not None and first_claimed < claimed
        return DeliveryCheck(None, first_claimed, recorded_as, row.sent_at is not None or key_used_before)


async def note_sent(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, dealer_id: str, at: datetime
) -> bool:
    """Note, before the first create of the lead's delivery goes out, that it did: every later attempt,
    of this run or of any later one (a resent webhook, a redrive, a reset), is then a re-send. False
    where another attempt noted it first (a zombie beside its retry): this one is a re-send too."""
    async with sessions.begin() as session:
        this_delivery = (Delivery.lead_id == lead_id, Delivery.dealer_id == dealer_id)
        noted = await session.execute(
            update(Delivery).where(*this_delivery, Delivery.sent_at.is_(None)).values(sent_at=at)
        )
        if noted.rowcount:  # type: ignore[attr-defined]
            return True
        # A lead without a claim (runs from before claims) has no row to note it in: a first send.
        return await session.scalar(select(Delivery.lead_id).where(*this_delivery)) is None


async def _key_first_claimed(
    session: AsyncSession, lead_id: str, dealer_id: str, key: str, claimed_at: datetime | None
) -> datetime | None:
    """The earliest claim of the lead at this dealer under ``key``: this one, or an earlier delivery's
    whose key a return took up (``_key_for_return``). None where no claim was timed."""
    base = lead_delivery_key(lead_id, dealer_id)
    claims = [claimed_at]
    lost = await session.get(Withdrawal, (lead_id, dealer_id))
    if lost is not None and (lost.idempotency_key or base) == key:
        claims.append(lost.claimed_at)
    released = await session.execute(
        select(DeliveryRelease.idempotency_key, DeliveryRelease.claimed_at).where(
            DeliveryRelease.lead_id == lead_id, DeliveryRelease.dealer_id == dealer_id
        )
    )
    claims += [at for used, at in released if (used or base) == key]
    return min((as_utc(at) for at in claims if at is not None), default=None)


def _claim_row(
    lead_id: str, dealer_id: str, day: date, at: datetime, *, reason: str, key: str | None = None
) -> Delivery:
    return Delivery(
        lead_id=lead_id,
        dealer_id=dealer_id,
        day=day,
        status=CLAIMED,
        idempotency_key=key or lead_delivery_key(lead_id, dealer_id),
        reason=reason,
        claimed_at=at,
    )


async def _key_for_return(session: AsyncSession, lead_id: str, dealer_id: str, at: datetime) -> str:
    """The key of a delivery to a dealer that had the lead before: sent back by support after it lost
    the lead, or claimed again after its claim was released unanswered.

    Where its CRM withdrew the lead (or may have: the call is pending, perhaps asked and not answered),
    the old key would replay the withdrawn lead: this delivery is a new one, with a key of its own (kept
    in the claim, so its retries share it). Where the CRM could only record the withdrawal, or never
    named the lead, the dealer holds what it holds: the old key finds it.
    """
    lost = await session.get(Withdrawal, (lead_id, dealer_id))
    base = lead_delivery_key(lead_id, dealer_id)
    new_key = f"{base}-{as_utc(at):%Y%m%dT%H%M%S%f}"
    if lost is not None:
        if lost.crm_outcome == "recorded":
            return lost.idempotency_key or base  # the key of the delivery the dealer still holds
        return new_key
    released = await unanswered_release(session, lead_id, dealer_id)
    if released is None:
        return base
    if released.crm_outcome in ("withdrawn", PENDING):
        return new_key
    return released.idempotency_key or base


@dataclass(frozen=True)
class Holding:
    """Where the lead's delivery at one dealer stands, for following it against the dealer's SLA."""

    holds: bool  # the dealer has the lead now (delivered, not withdrawn)
    delivered_at: datetime | None
    dealer_status: str | None  # the newest status the dealer reported
    withdrawals: int  # how often the lead moved on already
    dealer_status_at: datetime | None = None  # the dealer's time of that status
    accept_by: datetime | None = None  # the SLA deadline the delivery was given (None: compute it)


async def holding(sessions: async_sessionmaker[AsyncSession], lead_id: str, dealer_id: str) -> Holding:
    async with sessions() as session:
        row = await session.get(Delivery, lead_id)
        withdrawals = len(await lost_by(session, lead_id))
    holds = row is not None and row.dealer_id == dealer_id and row.status == DELIVERED
    return Holding(
        holds=holds,
        delivered_at=as_utc(row.delivered_at) if holds and row and row.delivered_at else None,
        dealer_status=row.dealer_status if holds and row else None,
        withdrawals=withdrawals,
        dealer_status_at=as_utc(row.dealer_status_at) if holds and row and row.dealer_status_at else None,
        accept_by=as_utc(row.accept_by) if holds and row and row.accept_by else None,
    )


@dataclass(frozen=True)
class ReadBasis:
    """What a read of the dealer's CRM needs to take only this delivery's record of the lead: the
    delivery's times, and whether the lead was at this dealer before (withdrawn, released, moved away by
    support and sent back), whose CRM may still hold those deliveries' records, with their ids where
    the hub learnt them."""

    claimed_at: datetime | None = None
    delivered_at: datetime | None = None
    earlier_ids: frozenset[str] = frozenset()
    here_before: bool = False

    @property
    def lookup_since(self) -> datetime | None:
        """Where the lead is looked up by its external id, the records created since then are this
        delivery's. Only where the lead was at this dealer before: a time filter depends on the CRM's
        clock, which may run behind ours, and an earlier delivery's id may be unknown or overwritten
        (one withdrawal row per dealer), so the ids alone cannot tell its records apart."""
        if not self.here_before or self.delivered_at is None:
            return None
        return self.delivered_at - CLOCK_SKEW

    def earlier_status(self, dealer_lead_id: str, at: datetime | None) -> bool:
        """Whether a status the CRM gives for record ``dealer_lead_id`` is an earlier delivery's: the
        record is one an earlier delivery made (a CRM that keeps one record per lead answers a lead
        sent back with it), and the status is timed before this delivery was claimed."""
        if dealer_lead_id not in self.earlier_ids or at is None or self.claimed_at is None:
            return False
        return as_utc(at) < self.claimed_at - CLOCK_SKEW


async def read_basis(sessions: async_sessionmaker[AsyncSession], lead_id: str, dealer_id: str) -> ReadBasis:
    """What a status read of the lead at ``dealer_id`` needs (``ReadBasis``)."""
    async with sessions() as session:
        row = await session.get(Delivery, lead_id)
        if row is None or row.dealer_id != dealer_id:
            return ReadBasis()
        lost = await session.get(Withdrawal, (lead_id, dealer_id))
        # Each earlier delivery whose CRM may hold a record: delivered, or a create it never answered.
        released = await session.scalars(
            select(DeliveryRelease).where(
                DeliveryRelease.lead_id == lead_id,
                DeliveryRelease.dealer_id == dealer_id,
                may_hold_the_lead(),
            )
        )
        earlier: list[Withdrawal | DeliveryRelease] = [*released, *([lost] if lost is not None else [])]
    return ReadBasis(
        claimed_at=as_utc(row.claimed_at) if row.claimed_at else None,
        delivered_at=as_utc(row.delivered_at) if row.delivered_at else None,
        earlier_ids=frozenset(each.dealer_lead_id for each in earlier if each.dealer_lead_id),
        here_before=bool(earlier),
    )


async def superseded(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, dealer_id: str, status: str, at: datetime
) -> bool:
    """Whether the lead's status, and Zoho's, must keep another than this report of the dealer's: a newer
    report of its delivery (by the dealer's time, then the funnel), or the lead is at another dealer now
    (support moved it after the report: the status is the holder's)."""
    async with sessions() as session:
        row = await session.get(Delivery, lead_id)
    if row is None:
        return False
    if row.dealer_id != dealer_id:
        return True
    if row.dealer_status is None or row.dealer_status_at is None:
        return False
    return is_newer(row.dealer_status, row.dealer_status_at, status, at)


@dataclass(frozen=True)
class WithdrawDecision:
    withdrawn: bool  # False: the dealer accepted first, it keeps the lead
    dealer_status: str | None
    withdrawals: int  # withdrawals of the lead so far, this one included
    taken_now: bool = False  # this call withdrew it (not an earlier attempt)
    idempotency_key: str = ""
    dealer_lead_id: str | None = None


async def withdraw(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, dealer_id: str, at: datetime, *, reason: str
) -> WithdrawDecision:
    """Take the lead from a dealer that has not accepted it: its delivery row becomes a withdrawal, in one
    transaction with the "withdrawn" status. A dealer whose acceptance committed first keeps the lead.

    Repeating it (a retried activity, a later run) finds the withdrawal and changes nothing.
    """
    async with sessions.begin() as session:
        _, row = await _locked_decision(session, lead_id)
        taken_now = False
        if row is not None and row.dealer_id == dealer_id:
            if funnel_rank(row.dealer_status) >= 0:
                return WithdrawDecision(False, row.dealer_status, len(await lost_by(session, lead_id)))
            # One row per (lead, dealer): support may have sent the lead back to a dealer that lost it.
            lost = await session.get(Withdrawal, (lead_id, dealer_id)) or Withdrawal(
                lead_id=lead_id, dealer_id=dealer_id
            )
            lost.day, lost.routing_reason, lost.idempotency_key = row.day, row.reason, row.idempotency_key
            lost.dealer_lead_id, lost.delivered_at = row.dealer_lead_id, row.delivered_at
            lost.accept_by = row.accept_by
            lost.claimed_at = row.claimed_at  # a late report names the delivery it is about
            lost.withdrawn_at, lost.reason, lost.crm_outcome = at, reason, PENDING
            session.add(lost)
            # Written while the delivery row still names the delivery it ends.
            await lead_status.write_status(
                session,
                lead_id=lead_id,
                status=LeadStatus.WITHDRAWN,
                workflow_id=lead_workflow_id(lead_id),
                at=at,
                dealer_id=dealer_id,
                detail=reason,
            )
            await _drop(session, row, released=False)
            taken_now = True
        found = await session.get(Withdrawal, (lead_id, dealer_id))
        if found is None:  # the lead is elsewhere and never was withdrawn here: nothing to take
            return WithdrawDecision(False, None, len(await lost_by(session, lead_id)))
        return WithdrawDecision(
            True,
            None,
            len(await lost_by(session, lead_id)),
            taken_now=taken_now,
            idempotency_key=found.idempotency_key or lead_delivery_key(lead_id, dealer_id),
            dealer_lead_id=found.dealer_lead_id,
        )


async def record_withdrawal(
    sessions: async_sessionmaker[AsyncSession], lead_id: str, dealer_id: str, crm_outcome: str
) -> None:
    """What the dealer's CRM answered to the withdrawal: ``withdrawn``, or ``recorded`` where it cannot."""
    async with sessions.begin() as session:
        lost = await session.get(Withdrawal, (lead_id, dealer_id), with_for_update=True)
        if lost is not None:
            lost.crm_outcome = crm_outcome
        # A release owing a drop (a claim released unanswered, a delivery support moved away): its CRM
        # was asked to drop the lead.
        for unanswered in await _pending_releases(session, lead_id, dealer_id):
            unanswered.crm_outcome = crm_outcome

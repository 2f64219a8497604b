"""Activities of lead distribution: every read and write to the database, Zoho, dealer CRMs, subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import external_call
from activities.heartbeats import heartbeating
from clients.dealer_crm import RECORDED, DealerCrm, RestDealerCrm, keepable_lead_id, map_fields
from clients.errors import PermanentError, TransientError, as_code
from clients.subscribers import EventPublisher
from clients.zoho import ZohoClient
from contracts.leads import WRITEBACK_DROPPED
from core.constants import DEALER_STATUSES, ZOHO_OWNER_FIELD, LeadStatus, lead_delivery_key, lead_workflow_id
from core.dealers import DealerConfig
from core.metrics import (
    DEALER_DELIVERIES,
    EVENTS_REFUSED,
    LEAD_DROPS_RECORDED,
    LEAD_RECEIVED_TO_DELIVERED,
    LEAD_WITHDRAWALS,
    LEADS_SLA_EXHAUSTED,
    ZOHO_WRITEBACKS_DROPPED,
    ZOHO_WRITEBACKS_REFUSED,
)
from core.outbound import origin
from core.timeutil import utcnow
from db import deliveries, feedback, lead_status, refused_events, routing, zoho_writebacks

# Error types the workflow tells apart; listed as non-retryable where retrying cannot help.
LEAD_NOT_FOUND = "LeadNotFound"
DEALER_REJECTED = "DealerRejected"
UNKNOWN_DEALER = "UnknownDealer"
LEAD_MOVED_ON = "LeadMovedOn"  # the delivery asked for is no longer the lead's decision
# An UNKNOWN_DEALER delivery attempt's detail: it was the first, so no attempt of it reached the CRM.
NO_EARLIER_ATTEMPT = "no-earlier-attempt"
DROP_OWED = "DropOwed"  # support's move names a dealer whose CRM still owes a drop of the lead
# The backoff assumed before a step's next attempt where its retry policy names no maximum.
LAST_CHANCE_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class ZohoRefusal:
    error: PermanentError
    lead_gone: bool  # Zoho no longer has the lead (deleted there): no write could place the fields


@dataclass
class RecordStatusInput:
    lead_id: str
    workflow_id: str
    status: LeadStatus
    dealer_id: str | None = None
    dealer_lead_id: str | None = None
    detail: str | None = None
    claim_dealer: bool = False  # also move the dealer to the back of its rotation


@dataclass
class FetchLeadInput:
    lead_id: str


@dataclass
class FetchLeadResult:
    lead: dict[str, Any]


@dataclass
class RouteLeadInput:
    lead_id: str
    state: str
    city: str
    model: str
    record_routed: bool = False  # also record the portal status "routed" to the first dealer


@dataclass
class RouteLeadResult:
    dealer_ids: list[str]


@dataclass
class DealerLookupInput:
    dealer_id: str


@dataclass
class DealerLookupResult:
    found: bool
    name: str = ""


@dataclass
class ClaimLeadInput:
    lead_id: str
    state: str
    city: str
    model: str
    release_dealer_id: str | None = None  # a dealer that did not take the lead: drop its claim first
    exclude: list[str] = field(default_factory=list)  # dealers this run already tried
    # Runs that keep the re-routing cap in the database: a lead withdrawn more often than this is claimed
    # nowhere (``exhausted``), whichever run asks. None: runs from before, which counted in the run.
    max_reroutes: int | None = None
    # The released dealer's CRM never answered the create call (it may hold the lead): its release waits
    # for the CRM to be asked to drop the lead, which the result's ``pending_withdrawals`` then names.
    release_unanswered: bool = False


@dataclass
class AssignLeadInput:
    lead_id: str
    dealer_id: str
    assigned_by: str = ""


@dataclass
class ReassignLeadInput:
    lead_id: str
    dealer_id: str
    reason: str
    reassigned_by: str


@dataclass
class ClaimLeadResult:
    """The lead's delivery decision (``dealer_id`` None: no dealer covers it with capacity left)."""

    dealer_id: str | None
    idempotency_key: str = ""
    delivered: bool = False
    dealer_lead_id: str | None = None
    resumed: bool = False  # an earlier run (or attempt) took it: this run goes on from there
    followed: bool = False  # delivered, to a dealer with an SLA or a status read (see DeliverLeadResult)
    # Asked with ``max_reroutes``: the lead's withdrawals so far, whether they exhaust the cap (then no
    # dealer was claimed), and those whose CRM call an ended run left to make.
    withdrawals: int = 0
    exhausted: bool = False
    pending_withdrawals: list[WithdrawAtDealerInput] = field(default_factory=list)
    # Delivered by an earlier run to a dealer that is not followed: the newest status it reported, and
    # its time, which the run passes on (one terminated before it did had left Zoho without it).
    dealer_status: str = ""
    dealer_status_at: str = ""

    @classmethod
    def of(cls, claim: deliveries.Claim | None) -> ClaimLeadResult:
        if claim is None:
            return cls(dealer_id=None)
        return cls(
            dealer_id=claim.dealer_id,
            idempotency_key=claim.idempotency_key,
            delivered=claim.delivered,
            dealer_lead_id=claim.dealer_lead_id,
            resumed=claim.resumed,
        )


@dataclass
class DeliverLeadInput:
    lead_id: str
    dealer_id: str
    lead: dict[str, Any]
    record_delivered: bool = False  # also record the portal status "delivered"
    idempotency_key: str = ""  # the claim's key; runs started before claims derive it


@dataclass
class DeliverLeadResult:
    dealer_lead_id: str
    followed: bool = False  # the dealer has an SLA or a status read: the run follows it after delivery
    # How to follow it, as of the delivery: runs that follow in runs of their own need no follow_plan read.
    plan: FollowPlan | None = None


@dataclass
class FollowPlanInput:
    lead_id: str
    dealer_id: str


@dataclass
class FollowPlan:
    """How to follow the lead at its dealer: until when it must accept, and how often to ask its CRM."""

    holds: bool  # the dealer has the lead (support may have moved it meanwhile)
    sla_deadline: str = ""  # ISO 8601, in the dealer's open hours; "": the dealer has no SLA
    # Seconds from the plan's reading to the deadline: what runs before the next field waited from the
    # time they handled the plan (a worker away in between lengthened the SLA by as long).
    sla_remaining_seconds: float = 0.0
    # The deadline on Temporal's clock (ISO 8601), which the run's timers keep: the hub's deadline moved
    # by how far Temporal's clock was from the worker's when the activity started. "": no SLA.
    sla_wait_until: str = ""
    dealer_status: str | None = None  # the newest status the dealer reported so far
    dealer_status_at: str = ""  # its time (ISO 8601) where the plan was read from the database
    poll_seconds: int = 0  # 0: the dealer's CRM is not asked, its webhook reports
    withdrawals: int = 0


@dataclass
class PollStatusInput:
    lead_id: str
    dealer_id: str
    dealer_lead_id: str


@dataclass
class PollStatusResult:
    """A status read from the dealer's CRM and recorded; ``applied``: newer than what the hub had."""

    status: str | None = None
    at: str = ""
    applied: bool = False


@dataclass
class WithdrawLeadInput:
    lead_id: str
    dealer_id: str
    reason: str


@dataclass
class WithdrawLeadResult:
    withdrawn: bool  # False: the dealer accepted first and keeps the lead
    dealer_status: str | None
    withdrawals: int  # this lead's withdrawals so far, this one included
    idempotency_key: str = ""
    dealer_lead_id: str | None = None


@dataclass
class WithdrawAtDealerInput:
    lead_id: str
    dealer_id: str
    idempotency_key: str
    dealer_lead_id: str | None = None


@dataclass
class WithdrawAtDealerResult:
    crm_outcome: str  # "withdrawn" by the CRM, or "recorded" where the CRM cannot drop leads


@dataclass
class UpdateZohoLeadInput:
    lead_id: str
    fields: dict[str, Any]
    # The dealer's report the fields pass on (its Lead_Status), if any: not written once a newer report
    # of that delivery stands (one handed to a run after the newer one's run had ended).
    report_dealer_id: str | None = None
    report_status: str | None = None
    reported_at: str = ""


@dataclass
class PublishEventInput:
    event: dict[str, Any]


@dataclass
class PublishEventResult:
    delivered_to: list[str] = field(default_factory=list)


def is_read(dealer: DealerConfig) -> bool:
    """Whether the hub reads the dealer's CRM for a lead's status (REST dealers with a poll interval)."""
    return bool(dealer.status_poll_seconds and dealer.crm_kind == "rest")


def is_followed(dealer: DealerConfig) -> bool:
    """Whether a lead's run follows the dealer after delivery: it has an SLA, or its CRM is read."""
    return bool(dealer.sla_minutes) or is_read(dealer)


def temporal_clock_offset() -> timedelta:
    """How far Temporal's clock is ahead of this worker's, read when the activity's attempt starts (the
    time the server gave it, less the worker's clock now; on a time-skipping test server, the time it
    skipped). Call it first thing: the difference is then only the task's way from server to worker."""
    return activity.info().started_time - utcnow()


def plan_to_follow(
    dealer: DealerConfig, delivered_at: datetime | None, offset: timedelta, accept_by: datetime | None = None
) -> FollowPlan:
    """The dealer's deadline to accept a lead delivered then (``accept_by``, as the delivery recorded it;
    None: its open hours counted now), on the hub's clock and on Temporal's (``offset`` ahead,
    ``temporal_clock_offset``), and whether its CRM is read."""
    deadline, remaining, wait_until = "", 0.0, ""
    ends = routing.accept_by(dealer, delivered_at, accept_by) if delivered_at is not None else None
    if ends is not None:
        deadline, remaining = ends.isoformat(), max((ends - utcnow()).total_seconds(), 0.0)
        wait_until = (ends + offset).isoformat()
    return FollowPlan(
        holds=True,
        sla_deadline=deadline,
        sla_remaining_seconds=remaining,
        sla_wait_until=wait_until,
        poll_seconds=dealer.status_poll_seconds or 0 if is_read(dealer) else 0,
    )


def _withdrawals(lead_id: str, losses: deliveries.Losses) -> list[WithdrawAtDealerInput]:
    """The CRM calls still owed for the lead: each asks a dealer that lost it to drop it."""
    return [
        WithdrawAtDealerInput(lead_id, drop.dealer_id, drop.idempotency_key, drop.dealer_lead_id)
        for drop in losses.pending
    ]


class LeadActivities:
    """Holds the clients built once per worker; each method is one activity."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        zoho: ZohoClient,
        dealer_crms: Mapping[str, DealerCrm],
        publisher: EventPublisher,
        subscribers: list[str],
        business_timezone: str = "America/Sao_Paulo",
    ) -> None:
        self._sessions = sessions
        self._zoho = zoho
        self._dealer_crms = dealer_crms
        self._publisher = publisher
        self._subscribers = subscribers
        self._timezone = ZoneInfo(business_timezone)

    @activity.defn
    async def record_lead_status(self, params: RecordStatusInput) -> None:
        """Write the portal status of a lead (idempotent)."""
        now = utcnow()
        entered = await lead_status.record_status(
            self._sessions,
            lead_id=params.lead_id,
            status=params.status,
            workflow_id=params.workflow_id,
            at=now,
            dealer_id=params.dealer_id,
            dealer_lead_id=params.dealer_lead_id,
            detail=params.detail,
        )
        if params.claim_dealer and params.dealer_id:
            await routing.mark_assigned(self._sessions, params.dealer_id, now)
        if params.status == LeadStatus.DELIVERED and params.dealer_id:
            await self._measure_delivery(params.lead_id, params.dealer_id, now)
        if params.status == LeadStatus.SLA_EXHAUSTED and entered:  # (not again by a later run)
            LEADS_SLA_EXHAUSTED.labels("leads").inc()

    @activity.defn
    async def fetch_lead(self, params: FetchLeadInput) -> FetchLeadResult:
        """The full lead from Zoho CRM (webhooks carry only a few fields)."""
        with external_call():
            lead = await self._zoho.get_lead(params.lead_id)
        if lead is None:
            raise ApplicationError(
                f"Zoho has no lead {params.lead_id}", type=LEAD_NOT_FOUND, non_retryable=True
            )
        await lead_status.set_lead_source(self._sessions, params.lead_id, _lead_source(lead))
        return FetchLeadResult(lead=lead)

    @activity.defn
    async def route_lead(self, params: RouteLeadInput) -> RouteLeadResult:
        """Dealers that may take the lead, best first; the first is claimed in the rotation."""
        now = utcnow()
        profile = routing.LeadProfile(state=params.state, city=params.city, model=params.model)

        # The claim and its "routed" record commit together: a retry never finds one without the other.
        on_claim = self._routed_hook(params.lead_id, now) if params.record_routed else None
        dealer_ids = await routing.route(self._sessions, profile, self._day(now), now, on_claim=on_claim)
        return RouteLeadResult(dealer_ids=dealer_ids)

    @activity.defn
    async def claim_lead(self, params: ClaimLeadInput) -> ClaimLeadResult:
        """The lead's delivery decision: resumed when an earlier run took one, else the best dealer with
        capacity left, claimed (and recorded "routed") in one transaction that reserves the capacity."""
        now = utcnow()
        profile = routing.LeadProfile(state=params.state, city=params.city, model=params.model)
        claim = await deliveries.claim_next(
            self._sessions,
            params.lead_id,
            profile,
            self._day(now),
            now,
            release=params.release_dealer_id,
            exclude=params.exclude,
            on_claim=self._routed_hook(params.lead_id, now, profile),
            max_withdrawals=params.max_reroutes,
            release_unanswered=params.release_unanswered,
        )
        if claim is None:  # no dealer: support decides, and ``hub leads explain`` shows why
            async with self._sessions.begin() as session:
                await lead_status.set_routing_profile(session, params.lead_id, asdict(profile))
        result = await self._with_follow(params.lead_id, ClaimLeadResult.of(claim))
        if params.max_reroutes is not None or params.release_unanswered:
            losses = await deliveries.losses(self._sessions, params.lead_id)
            result.withdrawals = losses.count
            cap = params.max_reroutes
            # Past its cap, or at its fallback owner already (an earlier run's decision, kept in the
            # lead's status): the run hands it to the fallback owner (again), never to a dealer.
            result.exhausted = (
                claim is None
                and cap is not None
                and (losses.count > cap or await self._with_fallback_owner(params.lead_id))
            )
            result.pending_withdrawals = _withdrawals(params.lead_id, losses)
        return result

    async def _with_follow(self, lead_id: str, result: ClaimLeadResult) -> ClaimLeadResult:
        """A claim delivered by an earlier run says whether its dealer is followed (a run resumes it),
        and, where it is not, the status the dealer reported last (a followed one's comes with its plan)."""
        if result.delivered and result.dealer_id:
            dealer = await routing.dealer_config(self._sessions, result.dealer_id, inactive_too=True)
            result.followed = dealer is not None and is_followed(dealer)
            if not result.followed:
                held = await deliveries.holding(self._sessions, lead_id, result.dealer_id)
                if held.holds and held.dealer_status in DEALER_STATUSES and held.dealer_status_at:
                    result.dealer_status = str(held.dealer_status)
                    result.dealer_status_at = held.dealer_status_at.isoformat()
        return result

    @activity.defn
    async def assign_lead(self, params: AssignLeadInput) -> ClaimLeadResult:
        """Claim the dealer support chose for a lead that no dealer took (``assign_dealer``)."""
        now = utcnow()
        claim = await deliveries.assign(
            self._sessions,
            params.lead_id,
            params.dealer_id,
            self._day(now),
            now,
            assigned_by=params.assigned_by,
            on_claim=self._routed_hook(params.lead_id, now),
        )
        return ClaimLeadResult.of(claim)

    @activity.defn
    async def reassign_lead(self, params: ReassignLeadInput) -> ClaimLeadResult:
        """Move the lead to the dealer support chose (``hub leads reassign``), with its reason."""
        if await routing.dealer_config(self._sessions, params.dealer_id) is None:
            raise ApplicationError(
                f"no active dealer {params.dealer_id}", type=UNKNOWN_DEALER, non_retryable=True
            )
        now = utcnow()
        try:
            claim = await deliveries.reassign(
                self._sessions,
                params.lead_id,
                params.dealer_id,
                self._day(now),
                now,
                reason=params.reason,
                reassigned_by=params.reassigned_by,
            )
        except deliveries.DropOwed as owed:  # the run fails, the lead where it was; a redrive tries again
            raise ApplicationError(str(owed), type=DROP_OWED, non_retryable=True) from None
        result = ClaimLeadResult.of(claim)
        # The dealer that had the lead may hold it: the move's run asks its CRM to drop it (and any drop
        # an earlier run left owed).
        losses = await deliveries.losses(self._sessions, params.lead_id)
        result.pending_withdrawals = _withdrawals(params.lead_id, losses)
        return result

    async def _with_fallback_owner(self, lead_id: str) -> bool:
        async with self._sessions() as session:
            return await deliveries.with_fallback_owner(session, lead_id)

    def _day(self, at: datetime) -> date:
        """The business day that capacity is counted on."""
        return at.astimezone(self._timezone).date()

    def _routed_hook(
        self, lead_id: str, at: datetime, profile: routing.LeadProfile | None = None
    ) -> deliveries.ClaimHook:
        async def record_routed(session: AsyncSession, dealer_id: str) -> None:
            await lead_status.write_status(
                session,
                lead_id=lead_id,
                status=LeadStatus.ROUTED,
                workflow_id=lead_workflow_id(lead_id),
                at=at,
                dealer_id=dealer_id,
            )
            if profile is not None:
                await lead_status.set_routing_profile(session, lead_id, asdict(profile))

        return record_routed

    @activity.defn
    async def lookup_dealer(self, params: DealerLookupInput) -> DealerLookupResult:
        """Whether an active dealer with this id exists (checks support's ``assign_dealer``)."""
        dealer = await routing.dealer_config(self._sessions, params.dealer_id)
        return DealerLookupResult(found=dealer is not None, name=dealer.name if dealer else "")

    @activity.defn
    async def deliver_lead(self, params: DeliverLeadInput) -> DeliverLeadResult:
        """Create the lead in the dealer's CRM exactly once and count it against the dealer's capacity."""
        offset = temporal_clock_offset()
        # Stable across retries, worker restarts and later runs: the dealer sees one lead however often
        # the hub calls. Heartbeats let Temporal see a live call, and cancel an attempt it gave up on.
        key = params.idempotency_key or lead_delivery_key(params.lead_id, params.dealer_id)
        dealer = await routing.dealer_config(self._sessions, params.dealer_id)
        if dealer is None:
            # Taken out of the rules. Past the first attempt, or where an earlier run of the lead sent a
            # create, its CRM may have the lead (the workflow then has it asked to drop the lead); the
            # details say when none was sent.
            check = await deliveries.check_delivery(self._sessions, params.lead_id, params.dealer_id, key)
            first = activity.info().attempt == 1 and not check.sent_before
            raise ApplicationError(
                f"no active dealer {params.dealer_id}",
                *([NO_EARLIER_ATTEMPT] if first else []),
                type=UNKNOWN_DEALER,
                non_retryable=True,
            )
        crm = self._dealer_crms.get(dealer.crm_kind)
        if crm is None:
            raise ApplicationError(
                f"unsupported CRM kind {dealer.crm_kind}", type=UNKNOWN_DEALER, non_retryable=True
            )
        fields = map_fields(dealer.field_mapping, params.lead)
        check = await deliveries.check_delivery(self._sessions, params.lead_id, dealer.id, key)
        if check.moved_on:  # a run reset to before this step: the dealer must not get the lead again
            raise ApplicationError(check.moved_on, type=LEAD_MOVED_ON, non_retryable=True)
        if check.recorded_as is not None:
            # An earlier attempt delivered it and recorded so; only its answer was lost: no second call
            # (an ADF inbox would get a second e-mail, a SOAP DMS a second lookup).
            dealer_lead_id = check.recorded_as
        else:
            dealer_lead_id = await self._create_at_dealer(dealer, crm, fields, params.lead_id, key, check)
        kept_id = keepable_lead_id(dealer_lead_id)
        if kept_id != dealer_lead_id:
            activity.logger.warning("dealer %s named the lead by an id the hub cannot keep", dealer.id)
            dealer_lead_id = kept_id
        now = utcnow()
        async with self._sessions.begin() as session:
            delivered = await deliveries.mark_delivered(
                session,
                lead_id=params.lead_id,
                dealer_id=dealer.id,
                dealer_lead_id=dealer_lead_id,
                day=self._day(now),
                at=now,
                accept_by=routing.accept_by(dealer, now),
            )
            kept = delivered is not None
            if kept and params.record_delivered:
                await lead_status.write_status(
                    session,
                    lead_id=params.lead_id,
                    status=LeadStatus.DELIVERED,
                    workflow_id=lead_workflow_id(params.lead_id),
                    at=now,
                    dealer_id=dealer.id,
                    dealer_lead_id=dealer_lead_id,
                )
        if delivered is None:  # support moved the lead while this call was under way: the move stands
            activity.logger.warning("lead delivered to %s after it was reassigned", dealer.id)
        elif params.record_delivered and delivered.at == now:  # (a retry measured nothing new)
            await self._measure_delivery(params.lead_id, dealer.id, now)
        followed = is_followed(dealer)
        plan = None
        if delivered is not None and followed:
            plan = plan_to_follow(dealer, delivered.at, offset, delivered.accept_by)
        return DeliverLeadResult(dealer_lead_id=dealer_lead_id, followed=followed, plan=plan)

    async def _create_at_dealer(
        self,
        dealer: DealerConfig,
        crm: DealerCrm,
        fields: dict[str, str],
        lead_id: str,
        key: str,
        check: deliveries.DeliveryCheck,
    ) -> str:
        """The create call: the dealer's id of the lead; counted by its outcome. Noted before it goes out,
        so that a later attempt, of this run or another, tells the CRM it may be a re-send."""
        # The first send is the one that notes it (a zombie attempt beside its retry may note it first).
        first = not check.sent_before and await deliveries.note_sent(
            self._sessions, lead_id, dealer.id, utcnow()
        )
        resend = activity.info().attempt > 1 or not first
        try:
            with external_call(permanent_type=DEALER_REJECTED):
                async with heartbeating():
                    dealer_lead_id = await crm.create_lead(
                        dealer, fields, lead_id, key, resend=resend, claimed_at=check.key_first_claimed_at
                    )
        except Exception as error:
            rejected = isinstance(error, ApplicationError) and error.non_retryable
            DEALER_DELIVERIES.labels(dealer.id, "rejected" if rejected else "unavailable").inc()
            raise
        DEALER_DELIVERIES.labels(dealer.id, "delivered").inc()
        return dealer_lead_id

    async def _measure_delivery(self, lead_id: str, dealer_id: str, delivered: datetime) -> None:
        received = await lead_status.received_at(self._sessions, lead_id)
        if received is not None:
            seconds = (delivered - received).total_seconds()
            LEAD_RECEIVED_TO_DELIVERED.labels(dealer_id).observe(max(seconds, 0.0))

    @activity.defn
    async def follow_plan(self, params: FollowPlanInput) -> FollowPlan:
        """The dealer's SLA deadline for the lead (open hours counted from its delivery) and what the
        dealer reported so far, from the lead's delivery record: every run of the lead computes the same."""
        offset = temporal_clock_offset()
        dealer = await routing.dealer_config(self._sessions, params.dealer_id, inactive_too=True)
        held = await deliveries.holding(self._sessions, params.lead_id, params.dealer_id)
        if dealer is None or not held.holds:
            return FollowPlan(holds=False, withdrawals=held.withdrawals)
        plan = plan_to_follow(dealer, held.delivered_at, offset, held.accept_by)
        plan.dealer_status, plan.withdrawals = held.dealer_status, held.withdrawals
        plan.dealer_status_at = held.dealer_status_at.isoformat() if held.dealer_status_at else ""
        return plan

    @activity.defn
    async def poll_dealer_status(self, params: PollStatusInput) -> PollStatusResult:
        """Ask a REST dealer's CRM for the lead's status and record it as its webhook would. A dealer the
        rules no longer have read (its ``status_poll_seconds`` taken out since the run planned the reads)
        is not asked."""
        dealer = await routing.dealer_config(self._sessions, params.dealer_id, inactive_too=True)
        crm = self._dealer_crms.get("rest")
        if dealer is None or not is_read(dealer) or not isinstance(crm, RestDealerCrm):
            return PollStatusResult()
        basis = await deliveries.read_basis(self._sessions, params.lead_id, dealer.id)
        with external_call():
            reported = await crm.lead_status(
                dealer,
                params.dealer_lead_id,
                external_id=params.lead_id,  # where its create answer named no id: the lead is looked up
                earlier_ids=basis.earlier_ids,
                created_since=basis.lookup_since,
            )
        if reported is None:
            return PollStatusResult()
        if basis.earlier_status(params.dealer_lead_id, reported.at):
            activity.logger.info(
                "%s's CRM answered the lead's record from an earlier delivery there, with a status from"
                " before this one: not taken",
                dealer.id,
            )
            return PollStatusResult()
        if reported.status not in DEALER_STATUSES:  # the webhook would answer 422: say so, take nothing
            named = as_code(reported.status) or "(not a status word)"
            activity.logger.warning(
                "%s's CRM answered status %s, which the hub does not know", dealer.id, named
            )
            return PollStatusResult()
        now = utcnow()
        at = feedback.kept_time(reported.at or now, now)  # as feedback.record keeps it
        recorded = await feedback.record(
            self._sessions,
            lead_id=params.lead_id,
            dealer_id=params.dealer_id,
            status=LeadStatus(reported.status),
            at=at,
            received_at=now,
        )
        # A retry after the record committed finds it repeated: still the newest, still to pass on, with
        # the time it is kept with (a CRM whose time moves on each read would pass it on anew each time).
        applied = recorded.outcome == feedback.Outcome.APPLIED or (
            recorded.outcome == feedback.Outcome.REPEATED and recorded.current
        )
        return PollStatusResult(reported.status, (recorded.kept_at or at).isoformat(), applied)

    @activity.defn
    async def withdraw_lead(self, params: WithdrawLeadInput) -> WithdrawLeadResult:
        """Take the lead from a dealer that missed its SLA, unless its acceptance was recorded first."""
        decision = await deliveries.withdraw(
            self._sessions, params.lead_id, params.dealer_id, utcnow(), reason=params.reason
        )
        if decision.taken_now:
            LEAD_WITHDRAWALS.labels(params.dealer_id).inc()
        return WithdrawLeadResult(
            withdrawn=decision.withdrawn,
            dealer_status=decision.dealer_status,
            withdrawals=decision.withdrawals,
            idempotency_key=decision.idempotency_key,
            dealer_lead_id=decision.dealer_lead_id,
        )

    @activity.defn
    async def withdraw_at_dealer(self, params: WithdrawAtDealerInput) -> WithdrawAtDealerResult:
        """Ask the dealer's CRM to drop a lead it lost, and record what it answered."""
        dealer = await routing.dealer_config(self._sessions, params.dealer_id, inactive_too=True)
        crm = self._dealer_crms.get(dealer.crm_kind) if dealer else None
        outcome = RECORDED
        if dealer is not None and crm is not None:
            with external_call():
                outcome = await crm.withdraw_lead(
                    dealer, params.dealer_lead_id, params.lead_id, params.idempotency_key
                )
        await deliveries.record_withdrawal(self._sessions, params.lead_id, params.dealer_id, outcome)
        if outcome == RECORDED:
            # The customer may hear from two dealers: support tells this one (GET /v1/leads/{id} shows it).
            LEAD_DROPS_RECORDED.labels(params.dealer_id).inc()
            activity.logger.warning(
                "lead %s: %s's CRM could not be asked to drop it (recorded)", params.lead_id, params.dealer_id
            )
        return WithdrawAtDealerResult(crm_outcome=outcome)

    @activity.defn
    async def update_zoho_lead(self, params: UpdateZohoLeadInput) -> None:
        """Write the distribution outcome back to the Zoho lead without re-firing workflow rules."""
        if params.report_dealer_id and params.report_status and params.reported_at:
            reported_at = datetime.fromisoformat(params.reported_at)
            dealer_id, status = params.report_dealer_id, params.report_status
            if await deliveries.superseded(self._sessions, params.lead_id, dealer_id, status, reported_at):
                activity.logger.info("a newer status than %s stands: Zoho keeps it", status)
                return
        lead_id, fields = params.lead_id, params.fields
        if ZOHO_OWNER_FIELD in fields and await lead_status.fallback_owner_set(self._sessions, lead_id):
            # An earlier run's hand-over set it; sales may have changed it by hand since.
            activity.logger.info("Zoho's owner was set to the fallback owner already: left as it is")
            fields = {name: value for name, value in fields.items() if name != ZOHO_OWNER_FIELD}
        info = activity.info()
        try:
            parked = last_chance(info, attempt=info.start_to_close_timeout)
            if parked:
                # No retry may follow this attempt: should it time out, or its database write after Zoho's
                # answer fail, the fields (newer than any parked before) wait for support's redrive, and
                # come off again once Zoho takes them. A lead's row parked already keeps its reason.
                reason = "no answer from Zoho within the write-back's retry window"
                await zoho_writebacks.park(
                    self._sessions, lead_id, fields, reason, utcnow(), keep_reason=True
                )
            if not parked and await zoho_writebacks.get(self._sessions, lead_id) is None:  # the usual case
                refusal = await self._write_to_zoho(lead_id, fields)
                if refusal is not None and not refusal.lead_gone:
                    await zoho_writebacks.park(self._sessions, lead_id, fields, str(refusal.error), utcnow())
            else:  # one at a time with a redrive of the parked fields, and take what Zoho took off them
                async with zoho_writebacks.hold(self._sessions, lead_id, across_call=True) as held:
                    refusal = await self._write_to_zoho(lead_id, fields)
                    if refusal is None:
                        held.took(fields)
                    elif refusal.lead_gone:  # nothing is owed to a lead Zoho no longer has
                        held.took({**(held.fields or {}), **fields})
                    else:
                        held.refused(fields, str(refusal.error), utcnow())
        except TransientError as error:
            if last_chance(info, error.retry_after):  # Zoho away, or out of credits, all along
                await zoho_writebacks.park(self._sessions, lead_id, fields, f"{error}, all along", utcnow())
                ZOHO_WRITEBACKS_REFUSED.labels("leads").inc()
            with external_call():
                raise
        if refusal is None:
            await self._took(lead_id, fields)
            return
        if refusal.lead_gone:  # counted once the parked row is up to date (a retry would count it again)
            ZOHO_WRITEBACKS_DROPPED.labels("leads").inc()
            return
        # The run logs it and goes on (the lead is at its dealer): the fields wait for support's redrive
        # (``hub parked``), and the count raises an alert.
        ZOHO_WRITEBACKS_REFUSED.labels("leads").inc()
        with external_call():
            raise refusal.error

    @activity.defn
    async def redrive_zoho_writeback(self, lead_id: str) -> str:
        """Write the lead's fields Zoho refused once more (support fixed the cause): ``written``,
        ``refused again: ...`` (they stay parked), ``nothing parked``, or ``WRITEBACK_DROPPED`` (Zoho no
        longer has the lead: the fields go). The parked row stays locked meanwhile, so the lead's own run
        never writes a newer value in between."""
        with external_call():
            async with zoho_writebacks.hold(self._sessions, lead_id, across_call=True) as held:
                fields = held.fields
                if fields is None:
                    return "nothing parked"
                refusal = await self._write_to_zoho(lead_id, fields)
                if refusal is None or refusal.lead_gone:
                    held.took(fields)
                else:
                    held.refused({}, str(refusal.error), utcnow(), redrive=True)
        if refusal is None:
            await self._took(lead_id, fields)
            return "written"
        if refusal.lead_gone:
            ZOHO_WRITEBACKS_DROPPED.labels("leads").inc()
            return WRITEBACK_DROPPED
        return f"refused again: {refusal.error}"

    async def _took(self, lead_id: str, fields: dict[str, Any]) -> None:
        """What Zoho took that a later write must know: the fallback owner (``_sla_exhausted``)."""
        if ZOHO_OWNER_FIELD in fields:
            await lead_status.note_fallback_owner_set(self._sessions, lead_id, utcnow())

    async def _write_to_zoho(self, lead_id: str, fields: dict[str, Any]) -> ZohoRefusal | None:
        """Zoho's refusal for good, or None once it took the fields (a failure worth retrying raises)."""
        try:
            await self._zoho.update_lead(lead_id, fields)
        except PermanentError as error:
            return ZohoRefusal(error, lead_gone=await self._gone_from_zoho(lead_id))
        return None

    async def _gone_from_zoho(self, lead_id: str) -> bool:
        """Whether Zoho, which refused a write to the lead, no longer has it (deleted there since): no
        redrive could place the fields then. Its read says so (204 for a lead it has not). A read that
        fails tells nothing: the refusal is then parked as any other."""
        try:
            gone = await self._zoho.get_lead(lead_id) is None
        except (PermanentError, TransientError, httpx.HTTPError) as error:
            activity.logger.warning("Zoho lead %s refused the write and was not read: %s", lead_id, error)
            return False
        if gone:
            activity.logger.warning("Zoho lead %s not updated: Zoho no longer has it", lead_id)
        return gone

    @activity.defn
    async def publish_event(self, params: PublishEventInput) -> PublishEventResult:
        """Send the event to every subscriber, each on its own: one that is away or refuses it keeps
        none of the others from getting it. After a retry, only to those that neither got it nor
        refused it for good (a local activity keeps no heartbeat: its retry sends to every subscriber
        again; they drop a copy by its id). Fails, retryable, while a subscriber is away; then, for
        good, where one refused it.

        A refusal is logged, counted once (hub_events_refused_total) and parked for support's redrive
        (``db.refused_events``); so is the event for each subscriber still away when the retry window
        ends: parked as the last attempt it allows starts (should that attempt time out, the event still
        waits), or as a subscriber's Retry-After reaches past it. A parked subscriber that takes the
        event later (a retry, or a later run of the lead: event ids are stable) is taken off."""
        event = params.event
        info = activity.info()
        details = info.heartbeat_details
        delivered: list[str] = list(details[0]) if details else []
        refused: list[str] = list(details[1]) if len(details) > 1 else []
        owed = [url for url in self._subscribers if url not in delivered and url not in refused]
        parked_before = await refused_events.parked_keys(self._sessions, str(event["id"]))
        parked = set(parked_before)
        last = last_chance(info, attempt=info.start_to_close_timeout)
        if last:
            await self._park_for_window(event, owed, WINDOW_PASSED)
            parked.update(refused_events.subscriber_key(url) for url in owed)
        away: TransientError | None = None
        away_urls: list[str] = []

        async def send(url: str) -> None:
            nonlocal away
            key = refused_events.subscriber_key(url)
            # Named in the heartbeat (which the others' sends may beat) only once its row is settled: a
            # retry after the database failed here sends to it again, and parks a refusal then.
            try:
                await self._publisher.publish(url, event, utcnow())
                if key in parked:
                    await refused_events.took(self._sessions, str(event["id"]), url)
                delivered.append(url)
            except PermanentError as error:
                activity.logger.error("event %s refused by a subscriber: %s", event["id"], error)
                await refused_events.park(self._sessions, event, url, str(error), utcnow())
                refused.append(url)
                if key not in parked_before:  # an earlier try's refusal was counted then
                    EVENTS_REFUSED.labels(origin(url)).inc()
            except (TransientError, httpx.HTTPError) as error:
                away = _longest_wait(away, _as_transient(url, error))
                away_urls.append(url)
            if not info.is_local:  # after each one, answered or not: the attempt is alive
                activity.heartbeat(delivered, refused)

        # Every subscriber at once: one that never answers (each waits out the HTTP timeouts) keeps the
        # others neither waiting nor cut off by the attempt's own timeout.
        await _all_of(send(url) for url in owed)
        with external_call():
            if away is not None:
                if last or last_chance(info, away.retry_after):  # no retry follows
                    await self._park_for_window(event, away_urls, f"{away}, all along")
                    for url in away_urls:
                        if refused_events.subscriber_key(url) not in parked_before:
                            EVENTS_REFUSED.labels(origin(url)).inc()
                raise away
            if refused:
                origins = ", ".join(origin(url) for url in refused)
                raise PermanentError("subscribers", f"event {event['id']} refused by {origins}")
        return PublishEventResult(delivered_to=delivered)

    async def _park_for_window(self, event: dict[str, Any], urls: list[str], reason: str) -> None:
        """Park ``event`` for the subscribers at ``urls``, which its retry window ends without; one
        parked already keeps its reason (a refusal, say)."""
        for url in urls:
            await refused_events.park(self._sessions, event, url, reason, utcnow(), keep_reason=True)

    @activity.defn
    async def redrive_event(self, event_id: str) -> str:
        """Send a parked event again to each subscriber it is parked for (support fixed the cause):
        ``delivered``, ``refused again: ...`` (it stays parked for that subscriber) or ``nothing
        parked``. Fails, retryable, while a subscriber is away. A retry sends neither to those that
        took it (their rows are gone) nor to those that refused it in this redrive (the heartbeat
        keeps them), so a partner that refuses is asked once per redrive."""
        details = activity.info().heartbeat_details
        refused_keys: list[str] = list(details[0]) if details else []
        parked = await refused_events.of_event(self._sessions, event_id)
        if not parked:  # on a retry: the others took it on an earlier attempt
            return "delivered" if details else "nothing parked"
        refusals: list[str] = []
        away: TransientError | None = None
        for each in parked:
            url = refused_events.configured_url(each, self._subscribers)
            if url is None:
                refusals.append(f"{each.subscriber}: no longer a configured subscriber")
            elif each.subscriber_key in refused_keys:
                refusals.append(f"{each.subscriber}: {each.reason}")
            else:
                try:
                    await self._publisher.publish(url, each.event, utcnow())
                    await refused_events.redriven(self._sessions, each)
                except PermanentError as error:
                    refusals.append(f"{each.subscriber}: {error}")
                    refused_keys.append(each.subscriber_key)
                    await refused_events.refused_again(self._sessions, each, str(error), utcnow())
                except (TransientError, httpx.HTTPError) as error:
                    away = away or _as_transient(url, error)
            activity.heartbeat(refused_keys)
        with external_call():
            if away is not None:
                raise away
        return f"refused again: {'; '.join(refusals)}" if refusals else "delivered"


# Why an event waits for a subscriber that never answered: its last attempt started, the window ends.
WINDOW_PASSED = "no answer within the event's retry window"


async def _all_of(steps: Iterable[Awaitable[None]]) -> None:
    """Run the steps at once and wait for every one; then raise the first one's error, if any (a bug, or
    the database away: the attempt fails and is retried)."""
    outcomes = await asyncio.gather(*steps, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _longest_wait(first: TransientError | None, other: TransientError) -> TransientError:
    """Of two subscribers away, the one that asked for the longer wait (it decides whether a retry fits)."""
    if first is None or (other.retry_after or 0) > (first.retry_after or 0):
        return other
    return first


def _as_transient(url: str, error: TransientError | httpx.HTTPError) -> TransientError:
    """A subscriber that did not answer (or answered "later") as a failure worth retrying."""
    if isinstance(error, TransientError):
        return error
    return TransientError(f"subscriber {origin(url)}", type(error).__name__)


def last_chance(
    info: activity.Info, retry_after: float | None = None, attempt: timedelta | None = None
) -> bool:
    """Whether an activity's retries end before its next attempt could start: within its longest
    backoff of its schedule-to-close deadline, or the delay the partner asked for (Retry-After, which
    Temporal takes as given) reaching past it. With ``attempt`` (the attempt's own timeout), asked as it
    starts: whether a failure or a time-out of this attempt would be the end. Never for a local
    activity: an activity takes over."""
    if info.is_local or not info.schedule_to_close_timeout:
        return False
    policy = info.retry_policy
    backoff = policy.maximum_interval if policy and policy.maximum_interval else LAST_CHANCE_MARGIN
    if retry_after is not None:
        backoff = max(backoff, timedelta(seconds=retry_after))
    return (
        utcnow() + (attempt or timedelta(0)) + backoff >= info.scheduled_time + info.schedule_to_close_timeout
    )


def _lead_source(lead: dict[str, Any]) -> str | None:
    """Zoho's Lead_Source, a picklist value: cut to the column's size, None when empty or not text."""
    source = lead.get("Lead_Source")
    return source.strip()[:120] or None if isinstance(source, str) else None

"""Tables of the portal database (dealers, routing, lead status, shared OAuth tokens)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.timeutil import utcnow


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: DateTime(timezone=True)}


class Dealer(Base):
    """A dealership: where it sells, how much it takes, and how to reach its CRM."""

    __tablename__ = "dealers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    crm_kind: Mapped[str] = mapped_column(String(16))  # "rest", "soap" or "adf"
    crm_url: Mapped[str] = mapped_column(String(500))
    field_mapping: Mapped[dict[str, Any]] = mapped_column(JSON)
    states: Mapped[list[str]] = mapped_column(JSON)
    cities: Mapped[list[str]] = mapped_column(JSON)  # empty: every city of its states
    models: Mapped[list[str]] = mapped_column(JSON)  # empty: every model
    daily_capacity: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=100)  # lower is preferred
    last_assigned_at: Mapped[datetime | None] = mapped_column(default=None)
    # Opening hours (core/business_hours.from_config); None: always open.
    hours: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    sla_minutes: Mapped[int | None] = mapped_column(Integer, default=None)  # to accept, in open time
    status_poll_seconds: Mapped[int | None] = mapped_column(Integer, default=None)  # REST status reads
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # share among equals
    # Smooth weighted rotation among dealers of one priority (db/routing.py): the dealer's running credit.
    rotation_credit: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Delivery(Base):
    """A lead's delivery decision: the dealer it goes to, under which key, and whether it got there.

    Written when routing (or support) claims the dealer, in the transaction that checks and reserves the
    dealer's capacity for the day; ``delivered`` once the dealer's CRM confirmed. Every later run of the
    lead resumes this row instead of routing again.
    """

    __tablename__ = "deliveries"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dealer_id: Mapped[str] = mapped_column(ForeignKey("dealers.id"), index=True)
    day: Mapped[date] = mapped_column(Date, index=True)  # the capacity day the claim counts against
    status: Mapped[str] = mapped_column(String(16), server_default="delivered")  # claimed, delivered
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)  # routed, assigned or reassigned, by whom
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    dealer_lead_id: Mapped[str | None] = mapped_column(String(200), default=None)
    # When a create under ``idempotency_key`` first went out to the dealer's CRM: any later one, by a
    # retry or by another run of the lead, is a re-send (None: none yet, or sent before the column).
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    # The dealer's SLA deadline to accept, as computed when its CRM took the lead (None: no SLA then, or
    # delivered before the column: computed from the current rules).
    accept_by: Mapped[datetime | None] = mapped_column(default=None)
    # The newest status the dealer reported for the lead (accepted, contacted, ...), and its time.
    dealer_status: Mapped[str | None] = mapped_column(String(16), default=None)
    dealer_status_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the row last changed, by the portal's clock: the warehouse sync reads changes in this order.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class Withdrawal(Base):
    """A delivery the lead lost: the dealer did not accept it within its SLA, so it moved on.

    The decision is written before the dealer's CRM is asked to drop the lead; ``crm_outcome`` says what
    the CRM answered (``pending`` until it did). A lead never returns to a dealer that lost it.
    """

    __tablename__ = "withdrawals"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dealer_id: Mapped[str] = mapped_column(ForeignKey("dealers.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)  # the capacity day the delivery counted against
    routing_reason: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    dealer_lead_id: Mapped[str | None] = mapped_column(String(200), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    accept_by: Mapped[datetime | None] = mapped_column(default=None)  # the delivery's SLA deadline
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)  # when the delivery withdrawn began
    withdrawn_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    crm_outcome: Mapped[str] = mapped_column(String(16), default="pending")  # withdrawn, recorded, pending
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)


class DeliveryRelease(Base):
    """A delivery support or routing took back without an SLA miss: a claim its dealer refused, a claim
    whose CRM never answered the create call, or a lead assigned or reassigned elsewhere. Kept so the
    warehouse sees the delivery end (the decision row itself is replaced); unlike a withdrawal, it does
    not keep the lead from that dealer.

    ``crm_outcome``: for a delivery whose CRM may hold the lead (a claim whose create call it never
    answered, one whose dealer was taken out of the rules meanwhile, or a lead support moved away), what
    the CRM answered when asked to drop it: ``pending``, ``withdrawn`` or ``recorded``. None: no call
    needed.
    """

    __tablename__ = "delivery_releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    dealer_id: Mapped[str] = mapped_column(String(64))
    status_before: Mapped[str] = mapped_column(String(16))  # claimed or delivered
    routing_reason: Mapped[str | None] = mapped_column(Text, default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    released_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    crm_outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    dealer_lead_id: Mapped[str | None] = mapped_column(String(200), default=None)  # the CRM's, if delivered


class ReportGuard(Base):
    """A dealer's newest report of a lead to hand on again at ``due_at``, unless cleared first: written by
    ``hub leads reassign`` before it ends the run reading the lead, since a report handed to that run
    just before dies with it; the command clears it once it saw none did. Kept apart from the reports,
    whose due times a newer report or a hand-over clears."""

    __tablename__ = "report_guards"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dealer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(index=True)


class DealerFeedback(Base):
    """A status a dealer reported for a lead; one row per (lead, dealer, status) and delivery, however
    often sent. ``delivery_claimed_at`` names the delivery (when it was claimed): support may send a lead
    back to a dealer, whose reports about that new delivery are new ones (None for reports and deliveries
    from before the column, which compare as one delivery).

    ``outcome``: ``applied`` (the lead's newest), ``older`` (kept in history only) or ``late`` (the
    dealer had already lost the lead: recorded, never taken). ``signal_due``: set while the lead's run
    has yet to hear of the report, and when a sweep should hand it on (see ``api.relay``).
    """

    __tablename__ = "dealer_feedback"
    __table_args__ = (
        UniqueConstraint("lead_id", "dealer_id", "status", "delivery_claimed_at", name="uq_dealer_feedback"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    dealer_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]  # when the dealer says it happened
    received_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    signal_due: Mapped[datetime | None] = mapped_column(index=True)
    delivery_claimed_at: Mapped[datetime | None] = mapped_column(default=None)


class Lead(Base):
    """Portal status of a lead, as support and the CRM/ERP read it."""

    __tablename__ = "leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    dealer_id: Mapped[str | None] = mapped_column(String(64), default=None)
    dealer_lead_id: Mapped[str | None] = mapped_column(String(200), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    workflow_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # What routing looked at: {"state", "city", "model"} (no personal data), for ``hub leads explain``.
    routing_profile: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Zoho's Lead_Source (a channel such as "Website", never a person), for the warehouse's funnel.
    lead_source: Mapped[str | None] = mapped_column(String(120), default=None)
    # When Zoho's Owner was set to the fallback owner (``sla_exhausted``): a later run's hand-over leaves
    # it as it is, since sales may have changed it by hand. Support's move (``reassigned``) clears it.
    fallback_owner_set_at: Mapped[datetime | None] = mapped_column(default=None)


class LeadStatusChange(Base):
    """Every status a lead went through; one row per (lead, status, dealer) and delivery, so retries add
    nothing. ``delivery_claimed_at`` names the delivery a dealer's status is about (when it was claimed): a
    lead support sends back to a dealer goes through its statuses there again (None for statuses about
    no delivery, and for rows from before the column)."""

    __tablename__ = "lead_status_changes"
    __table_args__ = (
        UniqueConstraint(
            "lead_id", "status", "dealer_id", "delivery_claimed_at", name="uq_lead_status_change"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.lead_id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    dealer_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    at: Mapped[datetime]  # when the lead reached the status (a dealer's report: the dealer's time)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # by the portal's clock
    delivery_claimed_at: Mapped[datetime | None] = mapped_column(default=None)


class ZohoWritebackRefused(Base):
    """A lead's fields Zoho refused for good (revoked credentials, a picklist value the org lacks): the
    lead's run went on, so they wait here until support fixes the cause and redrives them (``hub parked``).

    ``fields`` holds the newest refused value of each field; a later write of a field that Zoho took
    removes it, so a redrive never puts back an older value. ``reason``: the error's type and Zoho's code,
    never its message (it may echo the fields)."""

    __tablename__ = "zoho_writebacks_refused"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    refused_at: Mapped[datetime] = mapped_column(index=True)
    redrives: Mapped[int] = mapped_column(Integer, default=0)


class EventRefused(Base):
    """A lead event one subscriber refused for good, or did not take within the event's retry window: the
    lead's run went on, so the event waits here, one row per event and subscriber, until support fixes
    the cause and redrives it (``hub parked``). A redrive sends it again as it was (same id and time).

    ``subscriber`` is the subscriber's origin, for people to read; ``subscriber_key`` a digest of its
    configured URL, which may carry a token and is kept in settings only: a redrive sends to the
    configured URL with that digest."""

    __tablename__ = "events_refused"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscriber_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    subscriber: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[str | None] = mapped_column(String(64), default=None)
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    refused_at: Mapped[datetime] = mapped_column(index=True)
    redrives: Mapped[int] = mapped_column(Integer, default=0)


class OAuthToken(Base):
    """An access token shared by every worker, so the provider's token quota is respected."""

    __tablename__ = "oauth_tokens"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_token: Mapped[str | None] = mapped_column(Text, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    refresh_lease_until: Mapped[datetime | None] = mapped_column(default=None)


class Opportunity(Base):
    """Current state of a Zoho deal, replicated into the central database."""

    __tablename__ = "opportunities"

    deal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    deal_name: Mapped[str | None] = mapped_column(String(300), default=None)
    stage: Mapped[str | None] = mapped_column(String(100), default=None)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2), default=None)
    closing_date: Mapped[str | None] = mapped_column(String(10), default=None)
    probability: Mapped[int | None] = mapped_column(Integer, default=None)
    account_name: Mapped[str | None] = mapped_column(String(300), default=None)
    contact_name: Mapped[str | None] = mapped_column(String(300), default=None)
    owner_name: Mapped[str | None] = mapped_column(String(300), default=None)
    # The Zoho lead it was converted from (its $converted_detail names the deal); None: none found.
    lead_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    # Zoho did not answer the lookup of that lead in time: the deal's next change looks again.
    lead_lookup_missed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    modified_time: Mapped[datetime]  # Zoho's Modified_Time of the state stored here
    # When the hub read the Zoho record stored here (the worker's clock; None: a webhook's state, or one
    # from before the column): a read of the same second counts only where it was made later.
    record_read_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime]


class OpportunityStageChange(Base):
    """A stage a deal had at one ``Modified_Time``, and who changed it.

    One row per (deal, time, stage): a change is recorded once however often it arrives, and a late one
    slots into place. Zoho's times have second precision, so two moves made within one second share a
    time and both are kept; ``settled`` marks the stage Zoho's record showed at that second, the move
    that came last. Transitions (from -> to) are derived in time order when read.
    """

    __tablename__ = "opportunity_stage_changes"
    __table_args__ = (UniqueConstraint("deal_id", "changed_at", "stage", name="uq_opportunity_stage_change"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deal_id: Mapped[str] = mapped_column(ForeignKey("opportunities.deal_id"), index=True)
    stage: Mapped[str] = mapped_column(String(100))
    changed_by: Mapped[str | None] = mapped_column(String(300), default=None)
    changed_at: Mapped[datetime]  # Zoho's Modified_Time: a late change may lie far in the past
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)  # by the hub's clock
    settled: Mapped[bool] = mapped_column(default=False, server_default=false())


class SyncWatermark(Base):
    """How far an incremental sync has landed: the next run reads changes from here (less an overlap)."""

    __tablename__ = "sync_watermarks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark: Mapped[datetime]
    updated_at: Mapped[datetime]


class ScrollCall(Base):
    """How many calls a Master Data scroll token has served: a customer sync claims each call here first,
    so a run that knows less of the scroll than Master Data does (one reset to an earlier page) opens a
    new scroll instead of skipping the pages another run took. Keyed by the token's SHA-256, not the
    token."""

    __tablename__ = "scroll_calls"

    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    calls: Mapped[int]
    used_at: Mapped[datetime] = mapped_column(index=True)


class Lease(Base):
    """Work that must never run twice at once (a dbt build): who holds it and until when.

    The holder renews it while it works and deletes it when done, or ends it (``expires_at``) where some
    of its work may linger. Another may take it only once it expired and a drain passed (db/leases.py)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))  # the activity attempt and the process: no personal data
    taken_at: Mapped[datetime]
    expires_at: Mapped[datetime]

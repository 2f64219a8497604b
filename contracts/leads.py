"""The lead distribution workflow's contract: one run per Zoho lead, started by the lead webhook."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.constants import LEAD_ID, lead_workflow_id

if TYPE_CHECKING:
    from core.settings import Settings

LEAD_DISTRIBUTION_WORKFLOW = "LeadDistributionWorkflow"
STATE_QUERY = "state"
ASSIGN_DEALER_UPDATE = "assign_dealer"
# Workflow-only status for the Web UI: leads waiting for support's assign_dealer decision.
AWAITING_ASSIGNMENT = "awaiting_assignment"
# Workflow-only status for the Web UI: delivered, waiting for the dealer to accept within its SLA.
AWAITING_ACCEPTANCE = "awaiting_acceptance"
# Workflow-only status for the Web UI, and the result of a run support started to move the lead (hub leads
# reassign) that found Zoho no longer has it (deleted, converted): nothing moved, the portal as it was.
NOT_REASSIGNED = "not_reassigned"
# A status the dealer reported (recorded in the portal database first), for the run to pass on.
DEALER_STATUS_SIGNAL = "dealer_status"


@dataclass(frozen=True)
class Reassignment:
    """Support's decision to move a lead to another dealer: where, why and who decided."""

    dealer_id: str
    reason: str
    by: str


@dataclass
class LeadDistributionInput:
    lead_id: str
    event: dict[str, Any] = field(default_factory=dict)  # the CloudEvent the webhook became
    assign_deadline_seconds: int = 24 * 3600
    delivery_attempt_timeout_seconds: int = 30
    delivery_retry_window_seconds: int = 6 * 3600
    # Support's explicit move of the lead to another dealer (hub leads reassign): applied to the
    # lead's delivery decision before the run resumes it. The reason and who decided go to its history.
    reassign_to: str | None = None
    reassign_reason: str = ""
    reassigned_by: str = ""
    # The dealer's SLA (db dealers.sla_minutes): misses move the lead on this often, then to this owner.
    max_reroutes: int = 3
    fallback_owner_id: str = ""
    follow_days: int = 30  # settings.lead_follow_days
    # Set when a run hands a delivered lead to a new run (continue-as-new) that waits for its dealer.
    following: Following | None = None

    @classmethod
    def for_lead(
        cls,
        settings: Settings,
        lead_id: str,
        event: dict[str, Any],
        reassignment: Reassignment | None = None,
    ) -> LeadDistributionInput:
        return cls(
            lead_id=lead_id,
            event=event,
            assign_deadline_seconds=settings.assign_dealer_deadline_seconds,
            delivery_attempt_timeout_seconds=settings.dealer_delivery_attempt_timeout_seconds,
            delivery_retry_window_seconds=settings.dealer_delivery_retry_window_seconds,
            reassign_to=reassignment.dealer_id if reassignment else None,
            reassign_reason=reassignment.reason if reassignment else "",
            reassigned_by=reassignment.by if reassignment else "",
            max_reroutes=settings.lead_max_reroutes,
            fallback_owner_id=settings.lead_fallback_owner_id,
            follow_days=settings.lead_follow_days,
        )


@dataclass
class DeliveryAttempt:
    dealer_id: str
    outcome: str  # "delivered", "rejected", "unavailable" or "withdrawn" (missed its SLA)
    detail: str = ""


@dataclass
class PassedOn:
    """The newest report of a dealer passed on to Zoho and the subscribers: older ones are not."""

    dealer_id: str
    at: str  # ISO 8601, the dealer's time of the report
    rank: int  # its place in the dealer's funnel


@dataclass
class Following:
    """A delivered lead waiting for its dealer, as one run hands it to the next (continue-as-new).

    The run that waits starts from this alone, so its history is a few events long: a dealer's status
    signalled to it replays those, not the lead's whole delivery, when the worker no longer caches it.
    """

    dealer_id: str
    dealer_lead_id: str
    sla_deadline: str  # ISO 8601 in the dealer's open hours, as the withdrawal's reason shows it
    wait_until: str  # the same moment on Temporal's clock: the run's timer runs to it
    poll_seconds: int = 0  # 0: the dealer's webhook reports; else its CRM is asked this often
    dealer_status: str | None = None  # the newest status the dealer reported (accepted: SLA met)
    read_until: str = ""  # Temporal's clock: a polled dealer's CRM is read after acceptance until then
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    passed_on: list[PassedOn] = field(default_factory=list)
    delivery_key: str = ""  # the delivery's idempotency key ("": handed on before runs carried it)


@dataclass
class LeadDistributionResult:
    """Where the lead stands: what a run returns, and what the ``state`` query shows while it runs."""

    lead_id: str
    status: str
    dealer_id: str | None = None
    dealer_lead_id: str | None = None
    attempts: list[DeliveryAttempt] = field(default_factory=list)


@dataclass
class DealerStatusReport:
    """A status the dealer reported for the lead (accepted, contacted, ...) and when, ISO 8601."""

    dealer_id: str
    status: str
    at: str


# A support login: what the history and the warehouse keep of who decided (never support's words, which
# a login must not be able to carry: no spaces or colons).
SUPPORT_LOGIN = re.compile(r"[\w.@+-]{1,64}")


@dataclass
class AssignDealerInput:
    dealer_id: str
    assigned_by: str = (
        ""  # who decided, for the history; a support login (SUPPORT_LOGIN), never customer data
    )


@dataclass
class AssignDealerResult:
    dealer_id: str
    dealer_name: str


async def start_lead_distribution(
    client: Client,
    settings: Settings,
    lead_id: str,
    event: dict[str, Any],
    rpc_timeout: timedelta | None = None,
    *,
    redrive: bool = False,
    reassignment: Reassignment | None = None,
) -> str | None:
    """Start a run of the lead's workflow; the new run's id when this call started it, None when it was
    joined.

    The workflow id is the idempotency key: concurrent and later duplicates are refused by the server
    and joined here. A webhook starts a new run only where the last one broke off (its workflow failed,
    timed out or was terminated), so a resent webhook repairs a broken run. A run that ended normally is
    never redone by a webhook: not a delivered lead, and not a lead that ended ``failed`` (no dealer could
    be reached, or Zoho does not know it) or ``unrouted`` (no dealer took it by the deadline), whose runs
    end normally too. Support retries those on purpose (``hub leads redrive``): with ``redrive`` a new run
    starts after any closed one, and only a running one is joined. Whatever starts it, a new run resumes
    the lead's delivery decision in the portal database; only a ``reassignment`` (``hub leads reassign``,
    with ``redrive``) moves it to another dealer.
    """
    reuse = (
        WorkflowIDReusePolicy.ALLOW_DUPLICATE
        if redrive
        else WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
    )
    try:
        handle = await client.start_workflow(
            LEAD_DISTRIBUTION_WORKFLOW,
            LeadDistributionInput.for_lead(settings, lead_id, event, reassignment),
            id=lead_workflow_id(lead_id),
            task_queue=settings.leads_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=reuse,
            search_attributes=TypedSearchAttributes([SearchAttributePair(LEAD_ID, lead_id)]),
            rpc_timeout=rpc_timeout,
        )
    except WorkflowAlreadyStartedError:
        return None
    return handle.first_execution_run_id


async def report_dealer_status(
    client: Client,
    settings: Settings,
    lead_id: str,
    report: DealerStatusReport,
    rpc_timeout: timedelta | None = None,
) -> None:
    """Hand a recorded dealer status to the lead's run, starting one where none runs (signal-with-start).

    A lead's run ends once its dealer accepted; a later status (contacted, sold, ...) starts a new run,
    which resumes the lead's delivery decision from the database and passes the status on to Zoho and
    the subscribers.
    """
    await client.start_workflow(
        LEAD_DISTRIBUTION_WORKFLOW,
        LeadDistributionInput.for_lead(settings, lead_id, {}),
        id=lead_workflow_id(lead_id),
        task_queue=settings.leads_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal=DEALER_STATUS_SIGNAL,
        start_signal_args=[report],
        search_attributes=TypedSearchAttributes([SearchAttributePair(LEAD_ID, lead_id)]),
        rpc_timeout=rpc_timeout,
    )


# Support's redrive of a lead's fields Zoho refused for good (``hub parked redrive``), on the leads queue.
ZOHO_WRITEBACK_WORKFLOW = "ZohoWritebackWorkflow"
# What the redrive answers where Zoho no longer has the lead: no write could place the fields.
WRITEBACK_DROPPED = "dropped: Zoho no longer has the lead"


def zoho_writeback_workflow_id(lead_id: str) -> str:
    return f"zoho-writeback-{lead_id}"


async def start_zoho_writeback_redrive(
    client: Client, settings: Settings, lead_id: str
) -> WorkflowHandle[Any, str]:
    """Start writing the lead's parked fields to Zoho once more, in a run of their own (a redrive already
    running is joined); its result: ``written``, ``refused again: ...``, ``nothing parked`` or
    ``WRITEBACK_DROPPED``."""
    return await client.start_workflow(
        ZOHO_WRITEBACK_WORKFLOW,
        lead_id,
        id=zoho_writeback_workflow_id(lead_id),
        task_queue=settings.leads_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(LEAD_ID, lead_id)]),
        result_type=str,
    )


# Support's redrive of a lead event a subscriber refused for good (``hub parked redrive``), on the leads
# queue.
EVENT_REDRIVE_WORKFLOW = "EventRedriveWorkflow"


def event_redrive_workflow_id(event_id: str) -> str:
    return f"event-redrive-{event_id}"


async def start_event_redrive(
    client: Client, settings: Settings, event_id: str, lead_id: str | None
) -> WorkflowHandle[Any, str]:
    """Start sending a parked event once more to the subscribers it is parked for, in a run of its own
    (a redrive already running is joined); its result: ``delivered``, ``refused again: ...`` or
    ``nothing parked``."""
    pairs = [SearchAttributePair(LEAD_ID, lead_id)] if lead_id else []
    return await client.start_workflow(
        EVENT_REDRIVE_WORKFLOW,
        event_id,
        id=event_redrive_workflow_id(event_id),
        task_queue=settings.leads_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(pairs),
        result_type=str,
    )

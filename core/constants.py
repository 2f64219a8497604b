"""Names shared by the API, the workers and the workflows: task queues, search attributes, statuses."""

from __future__ import annotations

from enum import StrEnum

from temporalio.common import SearchAttributeKey

LEADS_TASK_QUEUE = "leads"
OPPORTUNITIES_TASK_QUEUE = "opportunities"
VTEX_ORDERS_TASK_QUEUE = "vtex-orders"
VTEX_API_TASK_QUEUE = "vtex-api"
DBT_TASK_QUEUE = "dbt"

# The most of a partner's answer a call reads, decoded (HUB_PARTNER_ANSWER_MAX_BYTES's default).
PARTNER_ANSWER_MAX_BYTES = 16 * 1024 * 1024

# The one workflow that builds silver and gold; flows ask it for builds with this signal.
DBT_BUILD_WORKFLOW = "DbtBuildWorkflow"
DBT_BUILD_WORKFLOW_ID = "dbt-build"
REQUEST_BUILD_SIGNAL = "request_build"

# Search attributes support staff filter on in the Temporal Web UI. Never put PII here.
LEAD_ID = SearchAttributeKey.for_keyword("LeadId")
DEALER_ID = SearchAttributeKey.for_keyword("DealerId")
LEAD_STATUS = SearchAttributeKey.for_keyword("LeadStatus")

DEAL_ID = SearchAttributeKey.for_keyword("DealId")
DEAL_STAGE = SearchAttributeKey.for_keyword("DealStage")

ORDER_ID = SearchAttributeKey.for_keyword("OrderId")
ORDER_STATE = SearchAttributeKey.for_keyword("OrderState")

# Set while a run holds an event a partner refused for good (revoked credentials, a record it cannot
# read, an append the warehouse refuses): the partner's name. Cleared when support redrives it (hub
# parked redrive).
PARKED = SearchAttributeKey.for_keyword("Parked")
PARTNERS = ("zoho", "vtex", "bigquery")
REDRIVE_PARKED_SIGNAL = "redrive_parked"
# The long jobs (backfill, catalog and customer syncs) answer it with where they are.
PROGRESS_QUERY = "progress"

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    LEAD_ID,
    DEALER_ID,
    LEAD_STATUS,
    DEAL_ID,
    DEAL_STAGE,
    ORDER_ID,
    ORDER_STATE,
    PARKED,
)


class LeadStatus(StrEnum):
    """Portal status of a lead, as served at ``GET /v1/leads/{id}``."""

    RECEIVED = "received"
    ROUTED = "routed"
    DELIVERED = "delivered"
    UNROUTED = "unrouted"
    FAILED = "failed"
    REASSIGNED = "reassigned"  # support moved a lead that had a dealer to another (hub leads reassign)
    # What the dealer reported doing with the lead (its status webhook, or a read of its CRM).
    ACCEPTED = "accepted"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    LOST = "lost"
    SOLD = "sold"
    WITHDRAWN = "withdrawn"  # the dealer did not accept within its SLA: the lead moves on
    SLA_EXHAUSTED = "sla_exhausted"  # no dealer accepted within the re-routes allowed: the fallback owner


# The statuses a dealer reports, in the order a lead moves through them.
DEALER_STATUSES = (
    LeadStatus.ACCEPTED,
    LeadStatus.CONTACTED,
    LeadStatus.QUALIFIED,
    LeadStatus.LOST,
    LeadStatus.SOLD,
)


# The Zoho lead's field a lead no dealer accepted is handed over in, to its fallback owner (a user or queue).
ZOHO_OWNER_FIELD = "Owner"

# Zoho's Lead_Status for each status a dealer reports: the standard picklist's values, and "Sold", which
# the org adds to that picklist (Zoho's standard values stop at qualification).
ZOHO_LEAD_STATUS = {
    LeadStatus.ACCEPTED: "Not Contacted",
    LeadStatus.CONTACTED: "Contacted",
    LeadStatus.QUALIFIED: "Pre-Qualified",
    LeadStatus.LOST: "Lost Lead",
    LeadStatus.SOLD: "Sold",
}


def lead_workflow_id(lead_id: str) -> str:
    """Workflow id of a lead: the idempotency key of its distribution."""
    return f"lead-{lead_id}"


def lead_delivery_key(lead_id: str, dealer_id: str) -> str:
    """The idempotency key of every create call of the lead's first delivery to a dealer: the dealer sees
    one lead however often the hub calls (and the key the hub always sent, so leads delivered before
    claims keep theirs). A later delivery there after its CRM withdrew the lead has a key of its own
    (``db.deliveries``)."""
    return f"lead-{lead_id}-{dealer_id}"


def opportunity_workflow_id(deal_id: str) -> str:
    """Workflow id of a deal: every update of one deal goes through this one workflow, in order."""
    return f"opportunity-{deal_id}"


def vtex_order_workflow_id(order_id: str) -> str:
    """Workflow id of a VTEX order: every hook of one order goes through this one workflow, in order."""
    return f"vtex-order-{order_id}"


LEAD_EVENT_REQUESTED = "LeadDistribuicaoSolicitada"
LEAD_EVENT_DISTRIBUTED = "LeadDistribuidoComSucesso"
LEAD_EVENT_STATUS_UPDATED = "LeadStatusAtualizado"  # a status the dealer reported
EVENT_SOURCE = "urn:integrations-hub:lead-distribution"  # CloudEvents "source" of our events

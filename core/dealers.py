"""A dealer as the delivery step needs it: read from the portal database, used by the dealer CRM clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A dealer's id: in the rules file, in URLs of the dealer webhooks, in metric labels.
DEALER_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
# Reserved: gold.dealer_performance's rows of won deals whose lead no dealer holds; no dealer takes it.
UNLINKED_DEALER = "unlinked"


@dataclass(frozen=True)
class DealerConfig:
    """A dealer as the delivery step needs it."""

    id: str
    name: str
    crm_kind: str
    crm_url: str
    field_mapping: dict[str, Any]
    hours: dict[str, Any] | None = None  # core.business_hours.from_config; None: always open
    sla_minutes: int | None = None  # to accept a lead, in open time; None: no SLA
    status_poll_seconds: int | None = None  # REST dealers whose CRM is asked for each lead's status

"""A dealer as the delivery step needs it: read from the portal database, used by the dealer CRM clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A dealer's id: in the rules file, in URLs of the dealer webhooks, in metric labels.
DEALER_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
# Reserved: gold.dealer_performance's rows of won deals whose lead no dealer holds; no dealer takes it.
UNLINKED_DEALER = "unlinked"
# What ADF 1.0 requires of a lead, and the field-mapping targets that fill it (any one of each). A
# receiver drops a document without them; a lead inbox does so after the hub's send succeeded.
ADF_REQUIRED = {
    "the vehicle's make": ("vehicle_make",),
    "the vehicle's model": ("vehicle_model",),
    "the customer's name": ("first_name", "last_name", "full_name"),
    "the customer's e-mail or phone": ("email", "phone", "mobile"),
    "the vendor's e-mail or phone": ("vendor_email", "vendor_phone"),  # a mailto: dealer's inbox serves
}


# Every field-mapping target an ADF document has a place for (clients.adf): a mapping naming another
# would fill nothing, so the rules refuse it.
ADF_TARGETS = frozenset(
    {
        *(name for names in ADF_REQUIRED.values() for name in names),
        *("vehicle_year", "vehicle_trim", "vehicle_interest"),
        *("street", "city", "state", "postal_code", "country", "comments", "request_date", "provider"),
    }
)
# The vehicle's ``interest`` attribute: the values ADF 1.0 allows.
ADF_INTERESTS = ("buy", "lease", "sell", "trade-in", "test-drive")


def adf_missing(crm_url: str, targets: set[str]) -> dict[str, tuple[str, ...]]:
    """What ADF requires that ``targets`` (mapped, or filled for a lead) leave out, with what would fill
    it; a ``mailto:`` dealer's inbox is the vendor's e-mail."""
    filled = targets | ({"vendor_email"} if crm_url.startswith("mailto:") else set())
    return {part: names for part, names in ADF_REQUIRED.items() if not filled & set(names)}


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

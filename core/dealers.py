"""A dealer as the delivery step needs it: read from the portal database, used by the dealer CRM clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DealerConfig:
    """A dealer as the delivery step needs it."""

    id: str
    name: str
    crm_kind: str
    crm_url: str
    field_mapping: dict[str, Any]

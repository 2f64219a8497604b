"""A Zoho deal as the hub replicates it: one type for the workflow, the activities and the database.

Temporal carries it as is (``core.temporal``'s pydantic data converter keeps ``Decimal`` and aware
``datetime`` values), so no string mirror of it is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from core.timeutil import as_utc


@dataclass(frozen=True)
class DealState:
    """A deal as of ``modified_time`` (Zoho's Modified_Time). None means "not known from this source"."""

    deal_id: str
    modified_time: datetime
    stage: str | None = None
    deal_name: str | None = None
    amount: Decimal | None = None
    closing_date: str | None = None
    probability: int | None = None
    account_name: str | None = None
    contact_name: str | None = None
    owner_name: str | None = None
    modified_by: str | None = None
    created_time: datetime | None = None  # Zoho's Created_Time: where to look for its conversion
    lead_id: str | None = None  # the lead it was converted from, once looked up (None: none, or unknown)
    # Whether Zoho answered this read's lookup of that lead in time: True, not in time (the deal's next
    # change looks again); False, it answered; None, this state did not look it up.
    lead_lookup_missed: bool | None = None
    # Zoho's whole record (read, or a webhook laid over it): a field it leaves empty was cleared in Zoho,
    # and is cleared in the database too. False: a part of the deal (a webhook's stage move), whose
    # None means "not known from this source" (and states carried by runs from before the field).
    complete: bool = False
    # When the hub read this record from Zoho (the worker's clock; None: not known). Two reads of one
    # second are ordered by it: an attempt of the older one arriving late moves nothing back.
    read_at: datetime | None = None


class InvalidDeal(ValueError):
    """A Zoho record the hub cannot replicate (retrying the read returns the same record)."""


# What the central database stores (``db.models.Opportunity``): PostgreSQL refuses a value beyond its
# column, and a refusal retried would hold the deal's every later change behind it.
AMOUNT_LIMIT = Decimal(10) ** 16  # NUMERIC(18, 2): sixteen digits before the point
CENT = Decimal("0.01")
PROBABILITY_RANGE = range(-(2**31), 2**31)  # INTEGER
TEXT_LIMITS = {"stage": 100, "closing_date": 10, "name": 300}


def checked_amount(amount: Decimal | None) -> Decimal | None:
    """``amount`` to the cent (rounded half away from zero, as the database would round it) if the
    database can store it; ValueError otherwise. Checked once rounded: 9999999999999999.995 rounds to
    seventeen digits, and a value of thousands of decimals overflows the database's own numeric."""
    if amount is None:
        return None
    try:
        cents = amount.quantize(CENT, rounding=ROUND_HALF_UP) if amount.is_finite() else None
    except InvalidOperation:
        cents = None
    if cents is None or abs(cents) >= AMOUNT_LIMIT:
        raise ValueError("Amount is beyond 16 digits before the point")
    return cents


def _name(value: Any, limit: int = TEXT_LIMITS["name"]) -> str | None:
    """A text field as stored: Zoho lookups come as {"id", "name"}; cut to its column's size (a longer
    one is a display name or picklist value no Zoho layout shows whole anyway), without NUL characters
    (PostgreSQL stores none in text: one pasted into Zoho would fail the deal's every change)."""
    if isinstance(value, dict):
        value = value.get("name")
    text = "" if value is None else str(value).replace("\x00", "")
    return text[:limit] or None


def deal_from_zoho(record: dict[str, Any]) -> DealState:
    """The fields we replicate from a Zoho Deals record."""
    probability = record.get("Probability")
    # Every conversion inside the try: a record Zoho serves in an unexpected shape is a permanent,
    # named failure (its change is parked), never a crash retried forever.
    try:
        deal_id = str(record["id"])
        if not deal_id.strip() or isinstance(record["id"], dict | list):
            raise ValueError("id is not a record id")
        amount = None if record.get("Amount") is None else checked_amount(Decimal(str(record["Amount"])))
        modified_time = as_utc(datetime.fromisoformat(str(record["Modified_Time"])))
        created = record.get("Created_Time")
        created_time = as_utc(datetime.fromisoformat(str(created))) if created else None
        probability = None if probability is None else int(probability)
        if probability is not None and probability not in PROBABILITY_RANGE:
            raise ValueError("Probability is beyond an integer")
    except (InvalidOperation, ValueError, TypeError, KeyError) as error:
        raise InvalidDeal(f"deal {record.get('id')!r:.40}: {type(error).__name__} in its fields") from error
    return DealState(
        deal_id=deal_id,
        modified_time=modified_time,
        stage=_name(record.get("Stage"), TEXT_LIMITS["stage"]),
        deal_name=_name(record.get("Deal_Name")),
        amount=amount,
        closing_date=_name(record.get("Closing_Date"), TEXT_LIMITS["closing_date"]),
        probability=probability,
        account_name=_name(record.get("Account_Name")),
        contact_name=_name(record.get("Contact_Name")),
        owner_name=_name(record.get("Owner")),
        modified_by=_name(record.get("Modified_By")),
        created_time=created_time,
        complete=True,
    )

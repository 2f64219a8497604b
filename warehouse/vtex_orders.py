"""VTEX orders on their way into bronze: validation, event keys, quarantine records."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from core.vtex import OrderEvent, change_key, change_time
from warehouse.landing import BronzeRecord, InvalidRecord, QuarantineRecord, validation_reason
from warehouse.tables import VTEX_ORDERS

SOURCE = "vtex"
INVALID_ORDER = "invalid_order"  # the quarantine code: an id missing, money not cents, a date unreadable

# Money is integer cents; a float or a string there means a broken export, not a price. Every number
# the warehouse types is an INT64: one beyond it is a broken export too (Arrow cannot hold it).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
Cents = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]


class _Item(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    quantity: Annotated[StrictInt, Field(gt=0, le=INT64_MAX)]
    price: Cents
    sellingPrice: Cents | None = None


class _Total(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    value: Int64  # "Discounts" is negative by design


class OrderDocument(BaseModel):
    """The fields of an OMS order the warehouse relies on; everything else is kept as it came."""

    model_config = ConfigDict(extra="allow")

    orderId: str = Field(min_length=1)
    status: str = Field(min_length=1)
    creationDate: str
    lastChange: str
    value: Cents
    totals: list[_Total] = Field(default_factory=list)
    items: list[_Item] = Field(default_factory=list)

    @field_validator("creationDate", "lastChange")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        change_key(value)  # raises ValueError with the reason
        return value

    @field_validator("totals")
    @classmethod
    def _sums(cls, totals: list[_Total]) -> list[_Total]:
        """Each kind of total is summed into a column of its own (``order_columns``)."""
        sums: dict[str, int] = {}
        for total in totals:
            sums[total.id] = sums.get(total.id, 0) + total.value
            if not INT64_MIN <= sums[total.id] <= INT64_MAX:
                raise ValueError(f"the {total.id} totals add up beyond a 64-bit integer")
        return totals


def order_version(document: dict[str, Any]) -> BronzeRecord:
    """The bronze record of one version of an order, keyed by order id and ``lastChange``.

    Raises:
        InvalidRecord: a required id is missing, money is not non-negative integer cents, or a date does
            not parse; the exception carries the quarantine record naming every problem.
    """
    try:
        order = OrderDocument.model_validate(document)
    except ValidationError as error:
        order_id = document.get("orderId") if isinstance(document.get("orderId"), str) else None
        reason = validation_reason(error, "order")
        key = _quarantine_key(order_id, document.get("lastChange"))
        quarantine = QuarantineRecord(SOURCE, VTEX_ORDERS, key, reason, document, order_id, INVALID_ORDER)
        raise InvalidRecord(reason, quarantine) from error
    return BronzeRecord(
        source=SOURCE,
        entity_id=order.orderId,
        event_key=order_version_key(order.orderId, order.lastChange),
        payload=document,
        source_updated_at=change_time(order.lastChange),
        columns=order_columns(order, document),
    )


def order_columns(order: OrderDocument, document: dict[str, Any]) -> dict[str, Any]:
    """The typed columns of an order version (``warehouse.tables.TYPED_COLUMNS``)."""
    profile = document.get("clientProfileData")
    user = profile.get("userProfileId") if isinstance(profile, dict) else None
    return {
        "status": order.status,
        "created_at": change_time(order.creationDate),
        "value_cents": order.value,
        "items_cents": _total(order, "Items"),
        "discounts_cents": _total(order, "Discounts"),
        "shipping_cents": _total(order, "Shipping"),
        "customer_profile_id": None if user is None else str(user),
    }


def _total(order: OrderDocument, total_id: str) -> int | None:
    """The sum of the order's totals entries named ``total_id``; None when it has none."""
    values = [total.value for total in order.totals if total.id == total_id]
    return sum(values) if values else None


def order_version_key(order_id: str, last_change: str) -> str:
    return f"{order_id}@{change_key(last_change)}"


def _quarantine_key(order_id: str | None, last_change: Any) -> str:
    """The version's usual key where its parts are readable, so a backfill recognises it as landed."""
    if order_id and isinstance(last_change, str):
        try:
            return order_version_key(order_id, last_change)
        except ValueError:
            pass
    return f"{order_id or '?'}@{last_change}"


def order_event(event: OrderEvent) -> BronzeRecord:
    """The bronze record of one state change VTEX announced, as it announced it."""
    return BronzeRecord(
        source=SOURCE,
        entity_id=event.order_id,
        event_key=event.key,
        payload=event.payload,
        source_updated_at=change_time(event.change),
        columns={"state": event.state},
    )

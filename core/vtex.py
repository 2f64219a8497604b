"""VTEX facts the API, the workflows and the warehouse share: order states, change times, order events."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# States that end an order's life: its workflow stops following it (a later hook starts a new run).
FINAL_ORDER_STATES = frozenset({"invoiced", "canceled"})

# The states the hook configuration subscribes to (filter type FromWorkflow).
HOOK_ORDER_STATES = (
    "order-created",
    "payment-pending",
    "payment-approved",
    "ready-for-handling",
    "handling",
    "invoiced",
    "canceled",
)

ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

# VTEX writes 7 fractional digits ("2019-08-14T17:12:48.0965893Z"); Python's datetime keeps 6.
_TIMESTAMP = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?(?P<zone>Z|[+-]\d{2}:?\d{2})?$"
)


def change_key(value: str) -> str:
    """A VTEX timestamp as a sortable UTC key with 7 fractional digits, e.g. ``2019-08-14T17:12:48.0965893Z``.

    Keys compare as the times they name, without losing VTEX's seventh digit: two changes a tenth of a
    microsecond apart still sort apart.

    Raises:
        ValueError: ``value`` is not an ISO 8601 timestamp.
    """
    match = _TIMESTAMP.match(value.strip())
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    zone = match["zone"] or "Z"
    moment = datetime.fromisoformat(match["base"] + ("+00:00" if zone == "Z" else zone))
    fraction = (match["fraction"] or "").ljust(7, "0")[:7]
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction}Z"


def change_time(value: str) -> datetime:
    """A VTEX timestamp as an aware UTC datetime (microsecond precision)."""
    key = change_key(value)
    return datetime.fromisoformat(key[:26] + "+00:00")


def received_now() -> str:
    """Now, as ``OrderEvent.received_at`` holds it (ISO 8601 UTC, microseconds: the texts sort as times)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def order_event_key(order_id: str, state: str, change: str) -> str:
    """Identifies one state change of an order; the same change announced twice has the same key."""
    return f"{order_id}:{state}@{change}"


@dataclass
class OrderEvent:
    """One state change of an order, as a hook or a Feed v3 item announced it (a workflow signal)."""

    order_id: str
    state: str
    change: str  # change_key of CurrentChange (LastChange when absent): sorts by time
    last_state: str | None = None
    via: str = "hook"  # or "feed"
    payload: dict[str, Any] = field(default_factory=dict)  # as VTEX sent it; landed in bronze
    # When the hub got the change (ISO 8601 UTC): the hook's arrival, or the reconciler reading the feed
    # (``event()`` stamps it). Latencies to bronze and gold count from it; older signals have None.
    received_at: str | None = None

    @property
    def key(self) -> str:
        return order_event_key(self.order_id, self.state, self.change)


def _change(value: str | None) -> str | None:
    return None if value is None else change_key(value)


class OrderOrigin(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    account: str = Field(alias="Account", min_length=1)
    key: str | None = Field(default=None, alias="Key")


class OrderHook(BaseModel):
    """An Orders hook delivery. ``LastState`` and ``CurrentChange`` are missing in some of VTEX's examples."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    order_id: str = Field(alias="OrderId", pattern=ORDER_ID_PATTERN)
    state: str = Field(alias="State", min_length=1, max_length=64)
    last_state: str | None = Field(default=None, alias="LastState", max_length=64)
    last_change: str | None = Field(default=None, alias="LastChange")
    current_change: str | None = Field(default=None, alias="CurrentChange")
    domain: str | None = Field(default=None, alias="Domain")
    origin: OrderOrigin = Field(alias="Origin")

    @field_validator("last_change", "current_change")
    @classmethod
    def _timestamp(cls, value: str | None) -> str | None:
        _change(value)  # ValueError names the bad value
        return value

    @model_validator(mode="after")
    def _has_a_time(self) -> OrderHook:
        if self.current_change is None and self.last_change is None:
            raise ValueError("CurrentChange or LastChange is required")
        return self

    def event(self, payload: dict[str, Any]) -> OrderEvent:
        change = _change(self.current_change or self.last_change)
        assert change is not None  # checked by _has_a_time
        return OrderEvent(self.order_id, self.state, change, self.last_state, "hook", payload, received_now())


class FeedItem(BaseModel):
    """A Feed v3 item: the same facts as a hook, in camelCase."""

    model_config = ConfigDict(extra="allow")

    orderId: str = Field(pattern=ORDER_ID_PATTERN)
    state: str = Field(min_length=1, max_length=64)
    lastState: str | None = None
    lastChange: str | None = None
    currentChange: str | None = None

    @field_validator("lastChange", "currentChange")
    @classmethod
    def _timestamp(cls, value: str | None) -> str | None:
        _change(value)
        return value

    @model_validator(mode="after")
    def _has_a_time(self) -> FeedItem:
        if self.currentChange is None and self.lastChange is None:
            raise ValueError("currentChange or lastChange is required")
        return self

    def event(self) -> OrderEvent:
        change = _change(self.currentChange or self.lastChange)
        assert change is not None  # checked by _has_a_time
        payload = self.model_dump(mode="json")
        return OrderEvent(self.orderId, self.state, change, self.lastState, "feed", payload, received_now())

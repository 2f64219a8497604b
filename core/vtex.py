"""VTEX facts the API, the workflows and the warehouse share: order states, change times, order events."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator

from core.timeutil import within_utc_range

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
    # A date beyond the years 1 to 9999 once in UTC (0001-01-01T00:00:00+01:00) is a ValueError too.
    moment = within_utc_range(datetime.fromisoformat(match["base"] + ("+00:00" if zone == "Z" else zone)))
    fraction = (match["fraction"] or "").ljust(7, "0")[:7]
    utc = moment.astimezone(UTC)
    # The year padded by hand: strftime's %Y does not pad years before 1000 on every platform.
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}.{fraction}Z"


def change_time(value: str) -> datetime:
    """A VTEX timestamp as an aware UTC datetime (microsecond precision)."""
    key = change_key(value)
    return datetime.fromisoformat(key[:26] + "+00:00")


def readable_change_time(value: object) -> datetime | None:
    """:func:`change_time` of a field a record may leave out or garble: None where it is no timestamp."""
    if not isinstance(value, str):
        return None
    try:
        return change_time(value)
    except ValueError:
        return None


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
    payload: dict[str, Any] = field(default_factory=dict)  # as VTEX sent it; landed in bronze
    # When the hub got the change (ISO 8601 UTC): the hook's arrival, or the reconciler reading the feed
    # (``event()`` stamps it). Latencies to bronze and gold count from it; older signals have None.
    received_at: str | None = None
    # False: VTEX sent no CurrentChange, so ``change`` is LastChange, when the state before began. The
    # change itself may be newer than the state last read: the order is read whatever ``change`` says.
    timed: bool = True

    @property
    def key(self) -> str:
        return order_event_key(self.order_id, self.state, self.change)


def _valid_change(value: str | None) -> str | None:
    if value is not None:
        change_key(value)  # ValueError names the bad value
    return value


# A change time as VTEX writes it in hooks and feed items; validated, kept as sent.
ChangeTime = Annotated[str | None, AfterValidator(_valid_change)]


def order_event(
    order_id: str, state: str, current: str | None, last: str | None, payload: dict[str, Any]
) -> OrderEvent:
    """The event a hook or a feed item announces, received now: its change is CurrentChange, else
    LastChange (a model validator has checked that one of them is there)."""
    change = current or last
    if change is None:
        raise ValueError("CurrentChange or LastChange is required")
    return OrderEvent(order_id, state, change_key(change), payload, received_now(), timed=current is not None)

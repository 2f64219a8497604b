"""Internal read API over the warehouse for CRM/ERP: a customer's 360 view (gold), an order (silver) and
a dealer's performance (gold)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable
from datetime import date, datetime, timedelta
from typing import Annotated, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Path, Query, status

from api.body import InstantWithOffset, errors, read_errors
from api.deps import ReadTokenDep, SessionsDep, SettingsDep, WarehouseReadsDep
from api.openapi import READ_TOKEN, security
from core.dealers import DEALER_ID_PATTERN, UNLINKED_DEALER
from core.timeutil import utcnow, within_utc_range
from db.routing import dealer_known
from warehouse.errors import WarehouseUnavailable
from warehouse.views import CustomerPage, CustomerView, DealerPerformance, OrderView

log = logging.getLogger(__name__)

T = TypeVar("T")

# Master Data ids are UUIDs, VTEX order ids like "1480570412001-01": letters, digits, dashes.
RECORD_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
# customer_360 also keys buyers without a customer document by their profile: "profile:<VTEX user id>".
CUSTOMER_ID_PATTERN = r"^(profile:)?[A-Za-z0-9-]{1,64}$"

customers = APIRouter(prefix="/v1/customers", tags=["customers"], dependencies=[ReadTokenDep])
orders = APIRouter(prefix="/v1/orders", tags=["orders"], dependencies=[ReadTokenDep])
dealers = APIRouter(prefix="/v1/dealers", tags=["dealers"], dependencies=[ReadTokenDep])
DEFAULT_DAYS = 30  # the range when the caller names none
MAX_DAYS = 366  # one call reads at most a year
DEFAULT_PAGE, MAX_PAGE = 100, 1000  # customers per page of the change feed

UNPROCESSABLE = 422  # Starlette renamed its constant (…_ENTITY to …_CONTENT): the number is stable


UNAVAILABLE = "no read token configured, or the warehouse did not answer in time"


@customers.get(
    "",
    response_model=CustomerPage,
    responses=errors(
        e401="missing or wrong bearer token",
        e422="malformed changed_since, cursor or limit",
        e503=UNAVAILABLE,
    ),
    openapi_extra=security(READ_TOKEN),
)
async def changed_customers(
    reads: WarehouseReadsDep,
    changed_since: Annotated[
        InstantWithOffset, Query(description="ISO 8601 with its offset: customers changed at or after it")
    ],
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> CustomerPage:
    """The customers whose 360 changed since a moment, oldest change first, a page at a time: a CRM
    keeps the last changed_at it saw and asks from there next time."""
    after = _position(cursor) if cursor else None
    page = await _answered(reads.changed_customers(changed_since, after, limit))
    last = page[-1] if len(page) == limit else None
    next_cursor = _cursor(last.changed_at, last.customer_id) if last and last.changed_at else None
    return CustomerPage(customers=page, next_cursor=next_cursor)


def _cursor(changed_at: datetime, customer_id: str) -> str:
    """An opaque position in the change feed: the last row's (changed_at, customer_id)."""
    text = json.dumps([changed_at.isoformat(), customer_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _position(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        changed_at, customer_id = json.loads(text)
        position = (within_utc_range(datetime.fromisoformat(changed_at)), str(customer_id))
    except (ValueError, TypeError) as error:
        raise HTTPException(UNPROCESSABLE, "cursor: not one this API gave") from error
    if position[0].tzinfo is None:
        raise HTTPException(UNPROCESSABLE, "cursor: not one this API gave")
    return position


@customers.get(
    "/{customer_id}",
    response_model=CustomerView,
    responses=read_errors("customer", UNAVAILABLE),
    openapi_extra=security(READ_TOKEN),
)
async def customer_view(
    reads: WarehouseReadsDep, customer_id: str = Path(pattern=CUSTOMER_ID_PATTERN)
) -> CustomerView:
    """The customer's 360 view: lifetime value, average ticket, frequency, first, last and recent orders."""
    return await _found(reads.customer(customer_id), f"no customer {customer_id}")


@orders.get(
    "/{order_id}",
    response_model=OrderView,
    responses=read_errors("order", UNAVAILABLE),
    openapi_extra=security(READ_TOKEN),
)
async def order_view(reads: WarehouseReadsDep, order_id: str = Path(pattern=RECORD_ID_PATTERN)) -> OrderView:
    """The order's current status and consolidated values, with its items."""
    return await _found(reads.order(order_id), f"no order {order_id}")


@dealers.get(
    "/{dealer_id}/performance",
    response_model=DealerPerformance,
    responses=read_errors("dealer", UNAVAILABLE),
    openapi_extra=security(READ_TOKEN),
)
async def dealer_performance(
    reads: WarehouseReadsDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    dealer_id: str = Path(pattern=DEALER_ID_PATTERN),
    start: Annotated[date | None, Query(alias="from", description="first day, inclusive")] = None,
    end: Annotated[date | None, Query(alias="to", description="last day, inclusive (default: today)")] = None,
) -> DealerPerformance:
    """The dealer's leads per day: received, taken within its SLA, time to accept, re-routed away, sold,
    and the deals won from them. Without ``from``, the 30 days up to ``to``. The dealer id ``unlinked``
    gives the deals won whose lead no dealer holds, by the day each was won."""
    today = utcnow().astimezone(ZoneInfo(settings.business_timezone)).date()
    end = end or today
    if start is None and end.toordinal() < DEFAULT_DAYS:  # no 30 days before it in the calendar
        raise HTTPException(UNPROCESSABLE, f"to must be at least {DEFAULT_DAYS} days after 0001-01-01")
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end or (end - start).days >= MAX_DAYS:
        raise HTTPException(UNPROCESSABLE, f"from must be on or before to, at most {MAX_DAYS} days")
    if dealer_id != UNLINKED_DEALER and not await dealer_known(sessions, dealer_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dealer {dealer_id} in the routing rules")
    return await _answered(reads.dealer_performance(dealer_id, start, end))


async def _answered(read: Awaitable[T]) -> T:
    """What the warehouse answered; 503 when it did not answer in time."""
    try:
        return await read
    except WarehouseUnavailable as error:
        log.warning("warehouse read answered 503: %s", error)  # BigQuery's words: no row, no customer
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the warehouse did not answer") from error


async def _found(read: Awaitable[T | None], missing: str) -> T:
    """The view read, 404 when there is none, 503 when the warehouse did not answer in time."""
    view = await _answered(read)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, missing)
    return view

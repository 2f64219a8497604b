"""Internal read API over the warehouse: a customer's 360 view (gold) and an order (silver), for CRM/ERP."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, HTTPException, Path, status

from api.body import read_errors
from api.deps import ReadTokenDep, WarehouseReadsDep
from api.openapi import READ_TOKEN, security
from warehouse.errors import WarehouseUnavailable
from warehouse.views import CustomerView, OrderView

T = TypeVar("T")

# Master Data ids are UUIDs, VTEX order ids like "1480570412001-01": letters, digits, dashes.
RECORD_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"

customers = APIRouter(prefix="/v1/customers", tags=["customers"], dependencies=[ReadTokenDep])
orders = APIRouter(prefix="/v1/orders", tags=["orders"], dependencies=[ReadTokenDep])


UNAVAILABLE = "no read token configured, or the warehouse did not answer in time"


@customers.get(
    "/{customer_id}",
    response_model=CustomerView,
    responses=read_errors("customer", UNAVAILABLE),
    openapi_extra=security(READ_TOKEN),
)
async def customer_view(
    reads: WarehouseReadsDep, customer_id: str = Path(pattern=RECORD_ID_PATTERN)
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


async def _found(read: Awaitable[T | None], missing: str) -> T:
    """The view read, 404 when there is none, 503 when the warehouse did not answer in time."""
    try:
        view = await read
    except WarehouseUnavailable as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the warehouse did not answer") from error
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, missing)
    return view

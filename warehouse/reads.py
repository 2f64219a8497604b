"""What the internal read API serves from the warehouse: a customer's 360 view (gold), an order (silver)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from google.api_core import exceptions as google_errors
from google.cloud.bigquery import ScalarQueryParameter
from pydantic import BaseModel, Field

from warehouse.landing import Warehouse, WarehouseUnavailable


class OrderSummary(BaseModel):
    order_id: str
    status: str | None
    created_at: datetime | None
    order_value: Decimal | None = Field(description="in the store's currency (VTEX's cents / 100)")


class CustomerView(BaseModel):
    """A buyer's profile and purchase figures, from revenue orders only (canceled, pending, denied and
    replaced orders count nowhere)."""

    customer_id: str = Field(
        description='the Master Data customer id, or "profile:<VTEX user id>" for orders of a profile'
        " without a customer document (a guest checkout, or a customer not synced yet)"
    )
    user_id: str | None = Field(default=None, description="the VTEX profile id its orders carry")
    is_known_customer: bool = Field(default=True, description='false for a "profile:..." buyer')
    first_name: str | None
    last_name: str | None
    email: str | None = Field(description="null when VTEX only has its masked relay address")
    email_is_masked: bool | None
    orders_count: int
    lifetime_value: Decimal
    average_ticket: Decimal | None
    purchase_frequency: float | None = Field(
        description="orders per 30 days from the first order to the last"
    )
    days_between_orders: float | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    recent_orders: list[OrderSummary] = Field(
        description="the latest 10 orders, whatever their status (canceled and pending ones included)"
    )


class OrderItemView(BaseModel):
    sku_id: str | None
    product_id: str | None
    item_name: str | None
    quantity: int | None
    unit_price: Decimal | None
    selling_price: Decimal | None
    line_total: Decimal | None


class OrderView(BaseModel):
    """An order's current status and consolidated values, as silver holds them."""

    order_id: str
    status: str | None
    is_canceled: bool | None
    created_at: datetime | None
    last_change_at: datetime | None
    order_value: Decimal | None
    items_value: Decimal | None
    discounts_value: Decimal | None
    shipping_value: Decimal | None
    items: list[OrderItemView]


async def read_customer(warehouse: Warehouse, customer_id: str) -> CustomerView | None:
    """The customer's ``gold.customer_360`` row and latest orders, or None if gold has no such customer.

    Raises:
        WarehouseUnavailable: the warehouse did not answer in time.
    """
    # One row: customer_360 is clustered by customer_id and carries the latest orders.
    parameters = [ScalarQueryParameter("id", "STRING", customer_id)]
    customers = warehouse.table_id(warehouse.layers.gold, "customer_360")
    rows = await _query_built(warehouse, f"select * from `{customers}` where customer_id = @id", parameters)
    return CustomerView(**_fields(rows[0], CustomerView)) if rows else None


async def read_order(warehouse: Warehouse, order_id: str) -> OrderView | None:
    """The order's row of ``silver.orders`` with its items, or None if silver has no such order.

    Raises:
        WarehouseUnavailable: the warehouse did not answer in time.
    """
    # One row: silver.orders is clustered by order_id and keeps the order's items with it.
    parameters = [ScalarQueryParameter("id", "STRING", order_id)]
    orders = warehouse.table_id(warehouse.layers.silver, "orders")
    rows = await _query_built(warehouse, f"select * from `{orders}` where order_id = @id", parameters)
    if not rows:
        return None
    items = [
        OrderItemView(**_fields(item, OrderItemView), line_total=_line_total(item))
        for item in sorted(rows[0]["items"], key=lambda item: item["item_index"])
    ]
    return OrderView(**_fields(rows[0], OrderView, exclude=frozenset({"items"})), items=items)


def _line_total(item: dict[str, Any]) -> Decimal | None:
    """selling price x quantity, as silver.order_items computes it."""
    price, quantity = item.get("selling_price"), item.get("quantity")
    return None if price is None or quantity is None else price * quantity


async def _query_built(warehouse: Warehouse, sql: str, parameters: list[Any]) -> list[dict[str, Any]]:
    """The query's rows; none while dbt has not built the table yet (nothing is known there yet)."""
    try:
        return await warehouse.query(sql, parameters)
    except WarehouseUnavailable as error:
        if isinstance(error.__cause__, google_errors.NotFound):
            return []
        raise


def _fields(
    row: dict[str, Any], model: type[BaseModel], exclude: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The row's columns the model declares (tables may have more), but those in ``exclude``."""
    return {name: row[name] for name in model.model_fields if name in row and name not in exclude}

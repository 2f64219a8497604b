"""What the internal read API serves from the warehouse: a customer's 360 view (gold), an order (silver)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from google.api_core import exceptions as google_errors
from google.cloud.bigquery import ScalarQueryParameter
from pydantic import BaseModel, Field

from warehouse.landing import Warehouse, WarehouseUnavailable

RECENT_ORDERS = 10


class OrderSummary(BaseModel):
    order_id: str
    status: str | None
    created_at: datetime | None
    order_value: Decimal | None = Field(description="in the store's currency (VTEX's cents / 100)")


class CustomerView(BaseModel):
    """A customer's profile and purchase figures; canceled orders count nowhere."""

    customer_id: str
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
        description=f"the latest {RECENT_ORDERS}, canceled ones included"
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
    gold, silver = warehouse.layers.gold, warehouse.layers.silver
    parameters = [ScalarQueryParameter("id", "STRING", customer_id)]
    rows = await _query_built(
        warehouse,
        f"select * from `{warehouse.table_id(gold, 'customer_360')}` where customer_id = @id",
        parameters,
    )
    if not rows:
        return None
    orders_table, customers_table = (
        warehouse.table_id(silver, "orders"),
        warehouse.table_id(silver, "customers"),
    )
    orders = await warehouse.query(
        f"select o.order_id, o.status, o.created_at, o.order_value from `{orders_table}` o"
        f" join `{customers_table}` c on o.customer_user_id = c.user_id"
        f" where c.customer_id = @id order by o.created_at desc limit {RECENT_ORDERS}",
        parameters,
    )
    return CustomerView(
        **_fields(rows[0], CustomerView), recent_orders=[OrderSummary(**row) for row in orders]
    )


async def read_order(warehouse: Warehouse, order_id: str) -> OrderView | None:
    """The order's row of ``silver.orders`` with its items, or None if silver has no such order.

    Raises:
        WarehouseUnavailable: the warehouse did not answer in time.
    """
    silver = warehouse.layers.silver
    parameters = [ScalarQueryParameter("id", "STRING", order_id)]
    rows = await _query_built(
        warehouse, f"select * from `{warehouse.table_id(silver, 'orders')}` where order_id = @id", parameters
    )
    if not rows:
        return None
    items_table = warehouse.table_id(silver, "order_items")
    items = await warehouse.query(
        f"select * from `{items_table}` where order_id = @id order by item_index",
        parameters,
    )
    return OrderView(
        **_fields(rows[0], OrderView), items=[OrderItemView(**_fields(item, OrderItemView)) for item in items]
    )


async def _query_built(warehouse: Warehouse, sql: str, parameters: list[Any]) -> list[dict[str, Any]]:
    """The query's rows; none while dbt has not built the table yet (nothing is known there yet)."""
    try:
        return await warehouse.query(sql, parameters)
    except WarehouseUnavailable as error:
        if isinstance(error.__cause__, google_errors.NotFound):
            return []
        raise


def _fields(row: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The row's columns the model declares (tables may have more)."""
    return {name: row[name] for name in model.model_fields if name in row}

"""What the read API returns from the warehouse: a customer's 360 view (gold) and an order (silver)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from pydantic import BaseModel, Field


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
    figures_as_of: datetime | None = Field(
        default=None,
        description="the build these figures are from (at most a day old): recency and tenure count up to it",
    )
    recency_days: int | None = Field(
        default=None, description="whole days from the last order to figures_as_of"
    )
    tenure_frequency: float | None = Field(
        default=None,
        description="orders per 30 days from the first order to figures_as_of (at least 30 days)",
    )
    recency_score: int | None = Field(default=None, description="1-5 among buyers; 5: bought most recently")
    frequency_score: int | None = Field(default=None, description="1-5 among buyers, by tenure_frequency")
    monetary_score: int | None = Field(default=None, description="1-5 among buyers, by lifetime_value")
    rfm_segment: str | None = Field(
        default=None,
        description="champions, loyal, new, needs_attention, at_risk, hibernating, prospect (no orders), or"
        " unattributed (profile:unknown: the orders without a VTEX profile, not scored)",
    )
    changed_at: datetime | None = Field(
        default=None,
        description="when the warehouse build that last changed these figures started: the change feed's"
        " order",
    )


class CustomerPage(BaseModel):
    """Customers whose 360 changed since a moment, oldest change first."""

    customers: list[CustomerView]
    next_cursor: str | None = Field(
        description="pass as cursor for the next page; null when this page is the last one so far"
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


class DealerDay(BaseModel):
    """One day of a dealer's leads (``gold.dealer_performance``; the business time zone's days)."""

    day: date
    leads_received: int
    leads_accepted: int = Field(description="the dealer reported accepted, or a later status")
    leads_with_sla: int
    accepted_within_sla: int = Field(description="taken by the dealer's SLA deadline")
    median_minutes_to_accept: float | None
    p90_minutes_to_accept: float | None
    rerouted_away: int = Field(description="withdrawn from the dealer after its SLA passed")
    leads_sold: int = Field(description="the dealer reported sold")
    conversion: float | None = Field(description="leads_sold / leads_received")
    # Defaults: a table built before deals reached the warehouse has none of these yet.
    deals_won: int = Field(default=0, description="deals won in Zoho from the leads it got that day")
    won_amount: Decimal = Field(default=Decimal(0), description="the sum of those deals' Amount")
    deal_conversion: float | None = Field(default=None, description="deals_won / leads_received")


class DealerPerformance(BaseModel):
    """A dealer's figures per day over a range of days, and their totals.

    The dealer id ``unlinked`` holds the deals won that no dealer holds the lead of, by the day won.
    """

    dealer_id: str
    start: date = Field(description="the first day, inclusive")
    end: date = Field(description="the last day, inclusive")
    days: list[DealerDay] = Field(description="the days it received leads, oldest first")
    leads_received: int
    accepted_within_sla: int
    rerouted_away: int
    leads_sold: int
    deals_won: int
    won_amount: Decimal


class WarehouseReads(Protocol):
    """The reads the API serves (``warehouse.reads.BigQueryReads``)."""

    async def customer(self, customer_id: str) -> CustomerView | None: ...

    async def order(self, order_id: str) -> OrderView | None: ...

    async def dealer_performance(self, dealer_id: str, start: date, end: date) -> DealerPerformance: ...

    async def changed_customers(
        self, since: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[CustomerView]: ...

    async def aclose(self) -> None: ...

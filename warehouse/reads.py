"""What the internal read API serves from the warehouse: a customer's 360 view (gold), an order (silver),
a dealer's performance (gold)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from google.api_core import exceptions as google_errors
from pydantic import BaseModel

from core.settings import Settings
from warehouse.errors import WarehouseUnavailable
from warehouse.landing import SERVICE, Warehouse
from warehouse.libraries import ScalarQueryParameter
from warehouse.tables import VTEX_ORDERS, day_start, partitions_since, within_day
from warehouse.views import CustomerView, DealerDay, DealerPerformance, OrderItemView, OrderView

log = logging.getLogger(__name__)

T = TypeVar("T")
# dbt's incremental_lookback_minutes: a key model's build reads again what changed this long before its
# last build began, so rows changed since then may not be in its key table yet.
KEY_LOOKBACK = timedelta(minutes=180)


async def read_customer(warehouse: Warehouse, customer_id: str) -> CustomerView | None:
    """The customer's ``gold.customer_360`` row and latest orders, or None if gold has no such customer.

    Raises:
        WarehouseUnavailable: the warehouse did not answer in time.
    """
    # One row: customer_360 carries the latest orders.
    parameters = [ScalarQueryParameter("id", "STRING", customer_id)]
    keyed = await _keyed(
        warehouse, warehouse.layers.gold, "customer_days", "customer_id", "changed_at", parameters
    )
    customers = warehouse.table_id(warehouse.layers.gold, "customer_360")
    for days in _customer_days(keyed):
        sql = f"select * from `{customers}` where customer_id = @id{days}"
        if rows := await _query_built(warehouse, sql, parameters):
            return CustomerView(**_fields(rows[0], CustomerView))
    return None


async def read_order(warehouse: Warehouse, order_id: str) -> OrderView | None:
    """The order's row of ``silver.orders`` with its items, or None if silver has no such order.

    Raises:
        WarehouseUnavailable: the warehouse did not answer in time.
    """
    # One row: silver.orders keeps the order's items with it.
    parameters = [ScalarQueryParameter("id", "STRING", order_id)]
    keyed = await _keyed(
        warehouse, warehouse.layers.silver, "order_days", "order_id", "created_at", parameters
    )
    orders = warehouse.table_id(warehouse.layers.silver, "orders")
    for days in await _order_days(warehouse, keyed, parameters):
        sql = f"select * from `{orders}` where order_id = @id{days}"
        if rows := await _query_built(warehouse, sql, parameters):
            return _order_view(rows[0])
    return None


def _order_view(row: dict[str, Any]) -> OrderView:
    items = [
        OrderItemView(**_fields(item, OrderItemView), line_total=_line_total(item))
        for item in sorted(row["items"], key=lambda item: item["item_index"])
    ]
    return OrderView(**_fields(row, OrderView, exclude=frozenset({"items"})), items=items)


@dataclass(frozen=True)
class Keyed:
    """What a key table (``silver.order_days``, ``gold.customer_days``) holds of one id.

    The tables the read API serves by id are partitioned by day, and BigQuery prunes partitions only on
    a constant filter: a read by id alone would open every day, billing all of history on every call.
    Each has a narrow key table clustered by id, which gives the day for a few blocks' read.
    """

    known: bool  # the key table holds the id
    at: datetime | None  # the newest time it holds for it (an order's creation time may be unknown)
    unkeyed_since: datetime | None  # rows changed from then on may not be keyed yet; None: never built


async def _keyed(
    warehouse: Warehouse, dataset: str, table: str, key: str, column: str, parameters: list[Any]
) -> Keyed | None:
    """What the key table holds of the id, and since when rows may not be keyed yet (its model's last
    build, as dbt's on-run-end recorded it, less the lookback its builds read again); None when dbt has
    not built the key table yet (a hub installed before it)."""
    keys = warehouse.table_id(dataset, table)
    builds = warehouse.table_id(warehouse.layers.silver, "build_watermarks")
    sql = (
        "select keyed.known, keyed.newest, built.started"
        f" from (select count(*) > 0 as known, max({column}) as newest from `{keys}` where {key} = @id)"
        f" as keyed cross join (select max(build_started) as started from `{builds}` where model = '{table}')"
        " as built"
    )
    rows = await _query_built(warehouse, sql, parameters)
    if not rows:  # the aggregate always answers one row: none means the key table is not built
        return None
    [row] = rows
    started = row["started"]
    return Keyed(row["known"], row["newest"], started - KEY_LOOKBACK if started else None)


def _customer_days(keyed: Keyed | None) -> list[str]:
    """The filters to look for a customer's row of ``customer_360`` by, in turn: the day of its newest
    change ``customer_days`` holds, then the days since that model's last build (a row's changed_at only
    moves forward: one it has not seen, new or moved, is there). Every day where it was never built (or
    never recorded a build)."""
    if keyed is None:
        return [""]
    since = "" if keyed.unkeyed_since is None else f" and changed_at >= {day_start(keyed.unkeyed_since)}"
    if keyed.at is None or (
        keyed.unkeyed_since is not None
        and keyed.at.astimezone(UTC).date() >= keyed.unkeyed_since.astimezone(UTC).date()
    ):
        return [since]  # that day is among those
    return [f" and {within_day('changed_at', keyed.at)}", since]


async def _order_days(warehouse: Warehouse, keyed: Keyed | None, parameters: list[Any]) -> list[str]:
    """The filters to look for the order's row of ``silver.orders`` by, in turn: its creation day, as
    ``order_days`` holds it or, for an order landed since that model's last build, as bronze does; none
    when neither has the order. Every day where ``order_days`` was never built."""
    if keyed is None or (not keyed.known and keyed.unkeyed_since is None):
        return [""]
    if not keyed.known:
        orders = warehouse.table_id(warehouse.layers.bronze, VTEX_ORDERS)
        sql = (
            f"select count(*) > 0 as known, max(created_at) as newest from `{orders}` where entity_id = @id"
            f" and {partitions_since(VTEX_ORDERS, keyed.unkeyed_since)} and status is not null"
        )
        [row] = await warehouse.query(sql, parameters)
        if not row["known"]:
            return []
        keyed = Keyed(True, row["newest"], keyed.unkeyed_since)
    if keyed.at is None:
        # Its creation time came unreadable: in the partition of rows without a day, unless a later
        # version brought a readable one (silver.orders then moved it; order_days keeps its first).
        return [" and created_at is null", ""]
    return [f" and {within_day('created_at', keyed.at)}"]


async def read_changed_customers(
    warehouse: Warehouse, since: datetime, after: tuple[datetime, str] | None, limit: int
) -> list[CustomerView]:
    """Up to ``limit`` rows of ``gold.customer_360`` changed at or after ``since``, in the order of
    (changed_at, customer_id), after the ``after`` position of the previous page.

    Raises:
        WarehouseUnavailable: the warehouse did not answer in time.
    """
    # customer_360 is partitioned by day of changed_at: a constant bound on it prunes the older days.
    parameters: list[Any] = [ScalarQueryParameter("since", "TIMESTAMP", since)]
    position = ""
    if after is not None:
        position = " and (changed_at > @at or (changed_at = @at and customer_id > @id))"
        parameters += [
            ScalarQueryParameter("at", "TIMESTAMP", after[0]),
            ScalarQueryParameter("id", "STRING", after[1]),
        ]
    customers = warehouse.table_id(warehouse.layers.gold, "customer_360")
    sql = (
        f"select * from `{customers}` where changed_at >= {day_start(since)}"
        f" and changed_at >= @since{position} order by changed_at, customer_id limit {int(limit)}"
    )
    return [
        CustomerView(**_fields(row, CustomerView)) for row in await _query_built(warehouse, sql, parameters)
    ]


async def read_dealer_performance(
    warehouse: Warehouse, dealer_id: str, start: date, end: date
) -> DealerPerformance:
    """The dealer's days from ``start`` to ``end`` (inclusive) in ``gold.dealer_performance``.

    Raises:
        WarehouseUnavailable: the warehouse did not answer in time.
    """
    # The table is partitioned by day and clustered by dealer: the read prunes to the range and dealer.
    parameters = [
        ScalarQueryParameter("dealer", "STRING", dealer_id),
        ScalarQueryParameter("start", "DATE", start),
        ScalarQueryParameter("end", "DATE", end),
    ]
    table = warehouse.table_id(warehouse.layers.gold, "dealer_performance")
    sql = f"select * from `{table}` where dealer_id = @dealer and day between @start and @end order by day"
    days = [DealerDay(**_fields(row, DealerDay)) for row in await _query_built(warehouse, sql, parameters)]
    return DealerPerformance(
        dealer_id=dealer_id,
        start=start,
        end=end,
        days=days,
        leads_received=sum(day.leads_received for day in days),
        accepted_within_sla=sum(day.accepted_within_sla for day in days),
        rerouted_away=sum(day.rerouted_away for day in days),
        leads_sold=sum(day.leads_sold for day in days),
        deals_won=sum(day.deals_won for day in days),
        won_amount=sum((day.won_amount for day in days), Decimal(0)),
    )


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
            # Before dbt's first build, or a dataset prefix, project or location this process does not
            # share with the warehouse worker: "nothing known", and the log says which table is missing.
            log.warning("warehouse read found no table, answered as not built yet: %s", error.__cause__)
            return []
        raise


def _fields(
    row: dict[str, Any], model: type[BaseModel], exclude: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The row's columns the model declares (tables may have more), but those in ``exclude``."""
    return {name: row[name] for name in model.model_fields if name in row and name not in exclude}


class BigQueryReads:
    """The read API's warehouse client: each read answers within ``read_api_warehouse_timeout_seconds``
    or raises WarehouseUnavailable, so a caller waiting on it gets a 503, not a hang. (The client's own
    deadlines hold per call, and a read makes several: a job's creation, its results.)"""

    def __init__(self, settings: Settings) -> None:
        self._deadline = settings.read_api_warehouse_timeout_seconds
        self._warehouse = Warehouse.from_settings(
            settings.model_copy(update={"bigquery_timeout_seconds": self._deadline})
        )

    async def _within_deadline(self, read: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._deadline):
                return await read
        except TimeoutError as error:
            raise WarehouseUnavailable(SERVICE, f"no answer within {self._deadline:g} s") from error

    async def customer(self, customer_id: str) -> CustomerView | None:
        return await self._within_deadline(read_customer(self._warehouse, customer_id))

    async def order(self, order_id: str) -> OrderView | None:
        return await self._within_deadline(read_order(self._warehouse, order_id))

    async def dealer_performance(self, dealer_id: str, start: date, end: date) -> DealerPerformance:
        return await self._within_deadline(read_dealer_performance(self._warehouse, dealer_id, start, end))

    async def changed_customers(
        self, since: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[CustomerView]:
        return await self._within_deadline(read_changed_customers(self._warehouse, since, after, limit))

    async def aclose(self) -> None:
        await self._warehouse.aclose()

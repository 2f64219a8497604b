"""Demo: VTEX orders whose hooks arrive in order, repeated and reversed, or not at all (the Feed v3
reconciler recovers those), and what landed in bronze for each."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from contracts.schedules import VTEX_FEED_RECONCILE
from core.settings import Settings
from core.temporal import connect
from warehouse.errors import WarehouseUnavailable
from warehouse.landing import Warehouse
from warehouse.libraries import ScalarQueryParameter
from warehouse.tables import VTEX_ORDER_EVENTS, VTEX_ORDERS, every_partition

LIFECYCLE = ["payment-pending", "payment-approved", "ready-for-handling", "handling", "invoiced"]
DELIVERIES = ["in_order", "repeated_reversed", "none"]
WAIT_SECONDS = 60.0


@dataclass
class DemoOrder:
    order_id: str
    delivery: str
    hooks_answered: str = ""
    states_landed: int = 0
    versions_landed: int = 0
    latest: str = "-"


async def run_order_demo(settings: Settings, simulators_url: str) -> bool:
    """Send the demo orders, wait for bronze, print a table; True if every order landed its final state."""
    async with httpx.AsyncClient(timeout=30) as http:
        orders = [await _send(http, simulators_url, delivery) for delivery in DELIVERIES]
    print(f"\nMoved {len(orders)} VTEX orders through {len(LIFECYCLE)} states; waiting for bronze...")
    if any(order.delivery == "none" for order in orders):
        # Lost hooks wait for the reconciler's next scheduled run; run it now instead.
        client = await connect(settings)
        await client.get_schedule_handle(VTEX_FEED_RECONCILE).trigger()
    warehouse = Warehouse.from_settings(settings)
    try:
        await asyncio.gather(*(_follow(warehouse, order) for order in orders))
    finally:
        await warehouse.aclose()
    print(f"\n{'order id':<19} {'hooks':<18} {'answers':<22} {'states':<7} {'versions':<9} latest in bronze")
    for order in orders:
        print(
            f"{order.order_id:<19} {order.delivery:<18} {order.hooks_answered:<22} "
            f"{order.states_landed:<7} {order.versions_landed:<9} {order.latest}"
        )
    print(f"Bronze tables: {warehouse.table_id(warehouse.layers.bronze, VTEX_ORDERS)}, .{VTEX_ORDER_EVENTS}")
    return all(o.latest == LIFECYCLE[-1] and o.states_landed == len(LIFECYCLE) for o in orders)


async def _send(http: httpx.AsyncClient, simulators_url: str, delivery: str) -> DemoOrder:
    created = await http.post(f"{simulators_url}/_control/vtex/orders", json={})
    created.raise_for_status()
    order = DemoOrder(order_id=created.json()["order"]["orderId"], delivery=delivery)
    moved = await http.post(
        f"{simulators_url}/_control/vtex/orders/{order.order_id}/states",
        json={"states": LIFECYCLE, "delivery": delivery},
    )
    moved.raise_for_status()
    codes = [str(d["status_code"]) for d in moved.json()["deliveries"]]
    order.hooks_answered = f"{len(codes)}x {','.join(sorted(set(codes)))}" if codes else "lost"
    return order


async def _follow(warehouse: Warehouse, order: DemoOrder) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        events = await _rows(warehouse, VTEX_ORDER_EVENTS, order.order_id)
        versions = await _rows(warehouse, VTEX_ORDERS, order.order_id)
        order.states_landed = len({row["event_key"] for row in events})
        order.versions_landed = len({row["event_key"] for row in versions})
        if versions:
            order.latest = str(versions[-1]["payload"].get("status"))
        if order.latest == LIFECYCLE[-1] and order.states_landed == len(LIFECYCLE):
            return
        await asyncio.sleep(1)


async def _rows(warehouse: Warehouse, table: str, order_id: str) -> list[dict[str, Any]]:
    try:
        return await warehouse.query(
            f"select event_key, payload from `{warehouse.table_id(warehouse.layers.bronze, table)}`"
            f" where entity_id = @id and {every_partition(table)} order by source_updated_at",
            [ScalarQueryParameter("id", "STRING", order_id)],
        )
    except WarehouseUnavailable:
        return []  # the tables appear with the first landing

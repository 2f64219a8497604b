"""Demo: silver and gold built by dbt through DbtBuildWorkflow, then a customer's 360 view and daily sales."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from contracts.dbt_build import (
    STATUS_QUERY,
    BuildRequest,
    DbtBuildStatus,
    dbt_build_workflow_id,
    send_build_request,
)
from contracts.schedules import LEAD_WAREHOUSE_SYNC, trigger_run
from core.settings import Settings
from core.temporal import connect
from warehouse.landing import Warehouse
from warehouse.reads import read_customer

BUILD_WAIT_SECONDS = 600.0
TOP = 5  # rows of each gold table shown


async def run_gold_demo(settings: Settings) -> bool:
    """Ask for a build, wait for it, print the busiest customer's 360 view and recent daily sales."""
    client = await connect(settings)
    await land_leads(client)
    workflow_id = dbt_build_workflow_id(settings)
    before = await _last_full_at(client, workflow_id)
    # A full build: daily sales and products too, not only the fast path.
    await send_build_request(client, settings, BuildRequest("demo", full=True))
    print(f"\nAsked {workflow_id} for a full dbt build of silver and gold; waiting...", flush=True)
    deadline = time.monotonic() + BUILD_WAIT_SECONDS
    status = DbtBuildStatus()
    while time.monotonic() < deadline:
        status = await client.get_workflow_handle(workflow_id).query(STATUS_QUERY, result_type=DbtBuildStatus)
        if full_build_done(status, before):
            break
        await asyncio.sleep(2)
    last = status.last_full
    if last is None or not full_build_done(status, before):
        print("  no build finished in time")
        return False
    outcome = "passed" if last.success else "FAILED: " + "; ".join(last.failures)
    print(
        f"dbt build {outcome}: {last.models_built} models, {last.tests_passed} tests passed,"
        f" {last.seconds:.0f} s"
    )
    warehouse = Warehouse.from_settings(settings)
    try:
        await _print_gold(warehouse)
    finally:
        await warehouse.aclose()
    return last.success


async def land_leads(client: Client) -> None:
    """Run the lead warehouse sync now, so gold shows the demo's leads as they are (its schedule would
    within a minute): a run already going may have closed its window before the last changes."""
    workflow_id, fresh = await trigger_run(client, LEAD_WAREHOUSE_SYNC)
    await client.get_workflow_handle(workflow_id).result()
    if not fresh:
        workflow_id, _ = await trigger_run(client, LEAD_WAREHOUSE_SYNC)
        await client.get_workflow_handle(workflow_id).result()
    print(f"\nLanded the portal's lead changes in bronze ({LEAD_WAREHOUSE_SYNC} run {workflow_id})")


def full_build_done(status: DbtBuildStatus, before: str | None) -> bool:
    """A full build started after the request (its start time is not ``before``) and none is running."""
    return status.last_full_at != before and not status.building and not status.full_asked


async def _last_full_at(client: Client, workflow_id: str) -> str | None:
    """When the last full build started, None when none did or the build workflow has not started."""
    try:
        status = await client.get_workflow_handle(workflow_id).query(STATUS_QUERY, result_type=DbtBuildStatus)
    except RPCError:
        return None
    started: str | None = status.last_full_at
    return started


async def _print_gold(warehouse: Warehouse) -> None:
    await _print_customers(warehouse)
    await _print_daily_sales(warehouse)
    await _print_products(warehouse)
    await _print_leads(warehouse)


async def _print_customers(warehouse: Warehouse) -> None:
    """The busiest customers' 360 views, as GET /v1/customers/{id} serves them."""
    busiest = await warehouse.query(
        f"select customer_id from `{warehouse.table_id(warehouse.layers.gold, 'customer_360')}`"
        f" order by orders_count desc, lifetime_value desc limit {TOP}"
    )
    if not busiest:
        print("No customers in gold yet (the customer sync lands them).")
        return
    print("\nThe busiest customers (gold.customer_360; GET /v1/customers/{id}):")
    print(f"{'customer':<36} {'orders':>6} {'LTV':>10} {'avg ticket':>10} {'per 30 d':>8} {'first':<10}"
          f" {'last':<10} {'RFM':<5} segment")  # fmt: skip
    for row in busiest:
        view = await read_customer(warehouse, str(row["customer_id"]))
        if view is None or view.first_order_at is None or view.last_order_at is None:
            continue
        rfm = f"{view.recency_score}{view.frequency_score}{view.monetary_score}"
        print(
            f"{view.customer_id:<36} {view.orders_count:>6} {view.lifetime_value:>10.2f}"
            f" {view.average_ticket or 0:>10.2f} {view.purchase_frequency or 0:>8.2f}"
            f" {view.first_order_at:%Y-%m-%d} {view.last_order_at:%Y-%m-%d} {rfm:<5} {view.rfm_segment}"
        )


async def _print_daily_sales(warehouse: Warehouse) -> None:
    days = await warehouse.query(
        f"select * from `{warehouse.table_id(warehouse.layers.gold, 'daily_sales')}`"
        f" order by sales_date desc limit {TOP}"
    )
    print(f"\n{'day':<12} {'orders':>6} {'revenue':>12} {'units':>6} {'canceled':>8}   (gold.daily_sales)")
    for day in days:
        print(
            f"{day['sales_date']!s:<12} {day['orders_count']:>6} {day['revenue']:>12.2f}"
            f" {day['units_sold']:>6} {day['canceled_orders']:>8}"
        )


async def _print_products(warehouse: Warehouse) -> None:
    products = await warehouse.query(
        f"select * from `{warehouse.table_id(warehouse.layers.gold, 'product_performance')}`"
        f" order by revenue desc, sku_id limit {TOP}"
    )
    print(f"\n{'SKU':>6} {'product':<44} {'orders':>6} {'units':>5} {'revenue':>10}"
          "   (gold.product_performance)")  # fmt: skip
    for product in products:
        name = str(product["sku_name"] or "-")[:44]
        print(
            f"{product['sku_id']!s:>6} {name:<44} {product['orders_count']:>6} {product['units_sold']:>5}"
            f" {product['revenue']:>10.2f}"
        )


async def _print_leads(warehouse: Warehouse) -> None:
    """The lead half of gold: each dealer's figures and the funnel (the lead warehouse sync lands the
    demo's leads within a minute)."""
    gold = warehouse.layers.gold
    dealers = await warehouse.query(
        f"select * from `{warehouse.table_id(gold, 'dealer_performance')}` order by day desc, dealer_id"
    )
    print(f"\n{'dealer':<20} {'day':<12} {'leads':>5} {'taken':>5} {'in SLA':>6} {'median min':>10} "
          f"{'re-routed':>9} {'sold':>4} {'won':>3} {'won amount':>12}")  # fmt: skip
    for row in dealers[:10]:
        median = row["median_minutes_to_accept"]
        print(
            f"{row['dealer_id']:<20} {row['day']!s:<12} {row['leads_received']:>5} {row['leads_accepted']:>5}"
            f" {_in_sla(row):>6} {'-' if median is None else f'{median:.1f}':>10}"
            f" {row['rerouted_away']:>9} {row['leads_sold']:>4} {row['deals_won']:>3}"
            f" {row['won_amount']:>12.2f}"
        )
    funnel = await warehouse.query(
        f"select state, sum(received) as received, sum(delivered) as delivered, sum(accepted) as accepted,"
        f" sum(sold) as sold from `{warehouse.table_id(gold, 'lead_funnel')}` group by state order by state"
    )
    print(f"\n{'state':<6} {'received':>8} {'delivered':>9} {'accepted':>8} {'sold':>5}   (gold.lead_funnel)")
    for row in funnel:
        print(f"{row['state'] or '-':<6} {row['received']:>8} {row['delivered']:>9} {row['accepted']:>8}"
              f" {row['sold']:>5}")  # fmt: skip


def _in_sla(row: dict[str, Any]) -> str:
    """Leads taken within their SLA of those that had one; "-" for a dealer without an SLA."""
    with_sla = row["leads_with_sla"]
    return f"{row['accepted_within_sla']}/{with_sla}" if with_sla else "-"

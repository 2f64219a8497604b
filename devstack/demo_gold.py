"""Demo: silver and gold built by dbt through DbtBuildWorkflow, then a customer's 360 view and daily sales."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client
from temporalio.service import RPCError

from contracts.dbt_build import (
    STATUS_QUERY,
    BuildRequest,
    DbtBuildStatus,
    dbt_build_workflow_id,
    send_build_request,
)
from core.settings import Settings
from core.temporal import connect
from warehouse.landing import Warehouse
from warehouse.reads import read_customer

BUILD_WAIT_SECONDS = 600.0


async def run_gold_demo(settings: Settings) -> bool:
    """Ask for a build, wait for it, print the busiest customer's 360 view and recent daily sales."""
    client = await connect(settings)
    workflow_id = dbt_build_workflow_id(settings)
    before = await _builds(client, workflow_id)
    await send_build_request(
        client, settings, BuildRequest("demo", full=True)
    )  # daily sales too, not only the fast path
    print(f"\nAsked {workflow_id} for a dbt build of silver and gold; waiting...", flush=True)
    deadline = time.monotonic() + BUILD_WAIT_SECONDS
    status = DbtBuildStatus()
    while time.monotonic() < deadline:
        status = await client.get_workflow_handle(workflow_id).query(STATUS_QUERY, result_type=DbtBuildStatus)
        if status.builds > before and not status.building and not status.pending:
            break
        await asyncio.sleep(2)
    last = status.last
    if last is None or status.builds <= before:
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


async def _builds(client: Client, workflow_id: str) -> int:
    """Builds so far, 0 when the build workflow has not started yet."""
    try:
        status = await client.get_workflow_handle(workflow_id).query(STATUS_QUERY, result_type=DbtBuildStatus)
    except RPCError:
        return 0
    return int(status.builds)


async def _print_gold(warehouse: Warehouse) -> None:
    gold = warehouse.layers.gold
    busiest = await warehouse.query(
        f"select customer_id from `{warehouse.table_id(gold, 'customer_360')}`"
        " order by orders_count desc, lifetime_value desc limit 1"
    )
    if not busiest:
        print("No customers in gold yet (the customer sync lands them).")
    else:
        view = await read_customer(warehouse, str(busiest[0]["customer_id"]))
        if view is not None:
            print(
                f"Customer 360 of {view.customer_id} (GET /v1/customers/{view.customer_id}):"
                f" {view.orders_count} orders, LTV {view.lifetime_value:.2f},"
                f" average ticket {view.average_ticket}, frequency {view.purchase_frequency} per 30 days,"
                f" first {view.first_order_at:%Y-%m-%d}; RFM {view.recency_score}/{view.frequency_score}/"
                f"{view.monetary_score}, segment {view.rfm_segment}"
                if view.first_order_at
                else f"Customer 360 of {view.customer_id}: no orders yet"
            )
    days = await warehouse.query(
        f"select * from `{warehouse.table_id(gold, 'daily_sales')}` order by sales_date desc limit 5"
    )
    print(f"{'day':<12} {'orders':>6} {'revenue':>12} {'units':>6} {'canceled':>8}")
    for day in days:
        print(
            f"{day['sales_date']!s:<12} {day['orders_count']:>6} {day['revenue']:>12.2f}"
            f" {day['units_sold']:>6} {day['canceled_orders']:>8}"
        )
    await _print_leads(warehouse)


async def _print_leads(warehouse: Warehouse) -> None:
    """The lead half of gold: each dealer's figures and the funnel (the lead warehouse sync lands the
    demo's leads within a minute)."""
    gold = warehouse.layers.gold
    dealers = await warehouse.query(
        f"select * from `{warehouse.table_id(gold, 'dealer_performance')}` order by day desc, dealer_id"
    )
    print(f"\n{'dealer':<20} {'day':<12} {'leads':>5} {'taken':>5} {'in SLA':>6} {'median min':>10} "
          f"{'re-routed':>9} {'sold':>4}")  # fmt: skip
    for row in dealers[:10]:
        median = row["median_minutes_to_accept"]
        print(
            f"{row['dealer_id']:<20} {row['day']!s:<12} {row['leads_received']:>5} {row['leads_accepted']:>5}"
            f" {row['accepted_within_sla']:>6} {'-' if median is None else f'{median:.1f}':>10}"
            f" {row['rerouted_away']:>9} {row['leads_sold']:>4}"
        )
    funnel = await warehouse.query(
        f"select state, sum(received) as received, sum(delivered) as delivered, sum(accepted) as accepted,"
        f" sum(sold) as sold from `{warehouse.table_id(gold, 'lead_funnel')}` group by state order by state"
    )
    print(f"\n{'state':<6} {'received':>8} {'delivered':>9} {'accepted':>8} {'sold':>5}   (gold.lead_funnel)")
    for row in funnel:
        print(f"{row['state'] or '-':<6} {row['received']:>8} {row['delivered']:>9} {row['accepted']:>8}"
              f" {row['sold']:>5}")  # fmt: skip

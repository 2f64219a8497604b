"""dbt benchmark: silver and gold built on a seeded bronze, against the running local stack (``dev.py up``).

    .venv/bin/python bench/dbt.py --orders 100000

1. Seeds bronze through the warehouse layer (exactly-once appends, as the backfill lands): ``--orders``
   orders of a generated two-year history (the simulator's generator, with a seed of its own so its ids
   differ from the stack's history), and the simulator's catalog SKUs and Master Data customers, who are
   the items and buyers of those orders. Each seeded row is then dated as if it had landed when it
   happened (a minute after its change, and at least a day ago): a warehouse's history landed over
   two years, not in the last minute, and builds read bronze by landing time.
2. Times a full build (``dbt build --full-refresh``, as ``python -m warehouse.dbt`` runs it).
3. ``--rounds`` times, lands ``--more`` newer orders and times the incremental build the 30-second path
   runs (fast: silver, customer_360 and customer_days); then the hourly full build (every model and
   check). Prints the fast builds' median and the hourly build against the full build.
4. Prints the rows of each silver and gold model, and the emulator's peak resident memory so far.
5. Hook-to-gold: ``--samples`` orders are created in the VTEX simulator and moved to ``invoiced``; their
   hooks go through the API and the order flow, which asks the build workflow for builds. Measures the
   time from the last hook's answer until ``GET /v1/orders/{id}`` shows ``invoiced`` (silver) and until
   ``GET /v1/customers/{id}`` shows the order as the buyer's last (gold). The goal is 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from google.cloud.bigquery import ScalarQueryParameter

from bench.clients import bench_client
from bench.lead_history import LeadHistory
from contracts.dbt_build import DbtBuildSummary
from core.settings import Settings
from core.vtex import change_time
from simulators.config import SimulatorConfig
from simulators.vtex_history import OrderHistory
from simulators.vtex_store import Catalog, CatalogChanges, GeneratedStore, generated_customers
from warehouse.dbt import build_command, dbt_environment, parse_summary
from warehouse.errors import WarehouseUnavailable
from warehouse.landing import BronzeRecord, Warehouse
from warehouse.leads import TABLE_OF_KIND
from warehouse.streams import StreamCursor
from warehouse.tables import VTEX_CUSTOMERS, VTEX_ORDERS, VTEX_SKUS
from warehouse.vtex_catalog import sku_version
from warehouse.vtex_customers import customer_version
from warehouse.vtex_orders import order_version

PAGE = 2_000  # records per exactly-once append
LIFECYCLE = ["payment-pending", "payment-approved", "ready-for-handling", "handling", "invoiced"]
MODELS = {"silver": ["orders", "order_days", "order_items", "order_events", "profile_orders",
                     "orders_per_profile", "skus", "products_active",
                     "customers", "lead_status_changes", "lead_deliveries", "leads", "deals",
                     "deal_stage_changes"],
          "gold": ["customer_360", "customer_days", "daily_sales", "product_performance",
                   "dealer_performance", "lead_funnel"]}  # fmt: skip
LEAD_TABLES = sorted(set(TABLE_OF_KIND.values()))
WORK_DIR = Path("var/bench-dbt").resolve()
FRESHNESS_GOAL_SECONDS = 120.0


async def land_all(warehouse: Warehouse, table: str, records: Iterable[BronzeRecord]) -> int:
    """Land ``records`` page by page at one cursor; the number landed."""
    cursor, landed = StreamCursor(), 0
    for page in pages(records, PAGE):
        cursor = await warehouse.land_at(table, cursor, page)
        landed += len(page)
    return landed


def pages(records: Iterable[BronzeRecord], size: int) -> Iterator[list[BronzeRecord]]:
    page: list[BronzeRecord] = []
    for record in records:
        page.append(record)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


async def land_leads(warehouse: Warehouse, history: LeadHistory, positions: range) -> int:
    """Land the lead flow's and deals' records of the leads at ``positions``, a block of leads at a time."""
    landed = 0
    for start in range(positions.start, positions.stop, 5_000):
        block: dict[str, list[BronzeRecord]] = {table: [] for table in LEAD_TABLES}
        for table, record in history.records(range(start, min(start + 5_000, positions.stop))):
            block[table].append(record)
        for table, records in block.items():
            landed += await land_all(warehouse, table, records)
    return landed


def history_orders(history: OrderHistory, positions: range) -> Iterator[BronzeRecord]:
    for position in positions:
        yield order_version(history.cached_document(position))


def catalog_skus(config: SimulatorConfig) -> Iterator[BronzeRecord]:
    catalog = Catalog(config, CatalogChanges())
    for sku in range(1, catalog.size + 1):
        yield sku_version(sku, catalog.sku_document(sku), catalog.price_document(sku))


def customers(config: SimulatorConfig) -> Iterator[BronzeRecord]:
    for document in generated_customers(config).documents:
        try:
            yield customer_version(document).record
        except ValueError:
            continue  # the simulator's few invalid addresses: the customer sync quarantines them


async def seed(warehouse: Warehouse, history: OrderHistory, orders: int, leads: LeadHistory) -> None:
    config = SimulatorConfig()
    started = time.perf_counter()
    skus = await land_all(warehouse, VTEX_SKUS, catalog_skus(config))
    people = await land_all(warehouse, VTEX_CUSTOMERS, customers(config))
    landed = await land_all(warehouse, VTEX_ORDERS, history_orders(history, range(orders)))
    lead_rows = await land_leads(warehouse, leads, range(leads.leads))
    for table in (VTEX_SKUS, VTEX_CUSTOMERS, VTEX_ORDERS, *LEAD_TABLES):
        await warehouse.execute(
            f"update `{warehouse.table_id(warehouse.layers.bronze, table)}` set ingested_at = least("
            "coalesce(timestamp_add(source_updated_at, interval 1 minute), ingested_at),"
            " timestamp_sub(ingested_at, interval 1 day)) where ingested_at >= timestamp '2000-01-01'"
        )
    print(
        f"seeded bronze         {landed:,} orders, {people:,} customers, {skus:,} SKUs, {leads.leads:,}"
        f" leads ({lead_rows:,} lead and deal records), dated as landed"
        f" when they happened, in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def dbt_build(settings: Settings, full_refresh: bool, fast: bool = False) -> DbtBuildSummary:
    """One build in a child process, as the build activity runs it."""
    command = build_command(WORK_DIR, full_refresh=full_refresh, fast=fast)
    done = subprocess.run(
        command,
        env={**os.environ, **dbt_environment(settings)},
        capture_output=True,
        text=True,
        check=False,
        timeout=3 * 3600,
    )
    summary = parse_summary(done.stdout)
    if summary.error:
        raise SystemExit(f"dbt could not run: {summary.error}")
    return summary


def report_build(name: str, summary: DbtBuildSummary) -> None:
    outcome = "passed" if summary.success else "FAILED: " + "; ".join(summary.failures)[:600]
    print(
        f"{name:<21} {summary.seconds:.1f} s: {summary.models_built} models, {summary.tests_passed} tests"
        f" passed, {summary.tests_failed} failed; {outcome}",
        flush=True,
    )


def model_seconds() -> dict[str, float]:
    """Seconds each silver and gold model took in the last build (dbt's run_results.json)."""
    results = json.loads((WORK_DIR / "target" / "run_results.json").read_text())["results"]
    wanted = {model for models in MODELS.values() for model in models}
    return {
        name: float(result["execution_time"])
        for result in results
        if (name := result["unique_id"].rsplit(".", 1)[-1]) in wanted
        and result["unique_id"].startswith("model.")
    }


def report_models(full: dict[str, float], fast: list[dict[str, float]], hourly: dict[str, float]) -> None:
    """Each model's time in the full build, the fast builds (median) and the hourly build, side by side."""
    print(f"{'model seconds':<28} {'full':>7} {'fast med':>9} {'hourly':>7}  fast/full")
    for layer, models in MODELS.items():
        for model in models:
            fast_times = [build[model] for build in fast if model in build]
            median = statistics.median(fast_times) if fast_times else None
            ratio = f"{median / full[model]:.2f}" if median is not None and full.get(model) else "-"
            shown = [f"{value:.2f}" if value is not None else "-" for value in (
                full.get(model), median, hourly.get(model))]  # fmt: skip
            print(f"  {layer}.{model:<{26 - len(layer)}} {shown[0]:>7} {shown[1]:>9} {shown[2]:>7}  {ratio}")


async def model_rows(warehouse: Warehouse) -> None:
    for layer, models in MODELS.items():
        dataset = getattr(warehouse.layers, layer)
        counts = []
        for model in models:
            try:
                rows = await warehouse.query(
                    f"select count(*) as n from `{warehouse.table_id(dataset, model)}`"
                )
            except WarehouseUnavailable:
                counts.append(f"{model} not built")
                continue
            counts.append(f"{model} {rows[0]['n']:,}")
        print(f"{layer + ' rows':<21} {', '.join(counts)}")


def emulator_peak_memory() -> str:
    """The local BigQuery emulator's peak resident memory (VmHWM), read from /proc (Linux)."""
    port = Settings().bigquery_endpoint.rsplit(":", 1)[-1].encode()
    for process in Path("/proc").glob("[0-9]*"):
        try:
            command = (process / "cmdline").read_bytes()
            if b"bqemulator" not in command or b"--rest-port\0" + port + b"\0" not in command:
                continue
            status = (process / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024**2:.2f} GiB (pid {process.name})"
    return "unknown (no emulator process found)"


async def hook_to_gold(
    http: httpx.AsyncClient, warehouse: Warehouse, api: str, sims: str, limit: float
) -> tuple[float, float]:
    """Seconds from an order's last hook to silver, and to gold, through the running stack."""
    created, customer_id = await order_of_a_known_buyer(http, warehouse, sims)
    order_id = created["orderId"]
    created_at = change_time(created["creationDate"]).replace(microsecond=0)
    moved = await http.post(
        f"{sims}/_control/vtex/orders/{order_id}/states", json={"states": LIFECYCLE, "delivery": "in_order"}
    )
    moved.raise_for_status()
    hooked = time.monotonic()
    to_silver = to_gold = None
    while time.monotonic() - hooked < limit and (to_silver is None or to_gold is None):
        await asyncio.sleep(0.5)
        if to_silver is None:
            order = await http.get(f"{api}/v1/orders/{order_id}")
            if order.status_code == 200 and order.json()["status"] == LIFECYCLE[-1]:
                to_silver = time.monotonic() - hooked
        if to_gold is None:
            view = await http.get(f"{api}/v1/customers/{customer_id}")
            last = view.json().get("last_order_at") if view.status_code == 200 else None
            if last and datetime.fromisoformat(last) >= created_at:
                to_gold = time.monotonic() - hooked
    if to_silver is None or to_gold is None:
        raise SystemExit(f"order {order_id} did not reach silver and gold within {limit:.0f} s")
    return to_silver, to_gold


async def order_of_a_known_buyer(
    http: httpx.AsyncClient, warehouse: Warehouse, sims: str
) -> tuple[dict[str, Any], str]:
    """A new simulator order and its buyer's customer id, from a buyer silver knows.

    The few generated customers with an unusable e-mail are quarantined by the customer sync (and by the
    seed): they have no customer view, so their orders cannot be followed to gold.
    """
    for _ in range(20):
        created = await http.post(f"{sims}/_control/vtex/orders", json={})
        order = created.raise_for_status().json()["order"]
        rows = await warehouse.query(
            f"select customer_id from `{warehouse.table_id(warehouse.layers.silver, 'customers')}`"
            " where user_id = @user",
            [ScalarQueryParameter("user", "STRING", order["clientProfileData"]["userProfileId"])],
        )
        if rows:
            return order, str(rows[0]["customer_id"])
    raise SystemExit("no simulator order came from a customer in silver.customers: was bronze seeded?")


async def run(args: argparse.Namespace) -> None:
    settings = Settings()
    # Over the simulator's SKUs and buyers, up to now (daily sales reach today).
    store = GeneratedStore(SimulatorConfig())
    history = OrderHistory(
        orders=args.orders + args.rounds * args.more,
        days=730,
        end=datetime.now(UTC),
        seed=args.seed,
        store=store,
    )
    # Two years of leads up to now, as of the orders: the seeded ones first, the rounds' the newest.
    leads = LeadHistory(leads=args.leads + args.rounds * args.more_leads, days=730, end=datetime.now(UTC))
    warehouse = Warehouse.from_settings(settings)
    await warehouse.ensure_schema()
    try:
        if not args.skip_seed:
            await seed(warehouse, history, args.orders, leads)
            full = await asyncio.to_thread(dbt_build, settings, True)
            report_build("full build", full)
            full_models, fast_models = model_seconds(), []
            fast_seconds = []
            for round_ in range(args.rounds):
                start = args.orders + round_ * args.more
                more = await land_all(
                    warehouse, VTEX_ORDERS, history_orders(history, range(start, start + args.more))
                )
                first_lead = args.leads + round_ * args.more_leads
                await land_leads(warehouse, leads, range(first_lead, first_lead + args.more_leads))
                fast = await asyncio.to_thread(dbt_build, settings, False, True)
                report_build(f"{more:,}+{args.more_leads:,} more, fast", fast)
                fast_seconds.append(fast.seconds)
                fast_models.append(model_seconds())
            hourly = await asyncio.to_thread(dbt_build, settings, False)
            report_build("incremental, hourly", hourly)
            report_models(full_models, fast_models, model_seconds())
            median = statistics.median(fast_seconds)
            print(
                f"incremental / full    fast median {median:.1f} s = {median / full.seconds:.2f} of the full"
                f" build (goal at 1M orders: <= 0.25); hourly {hourly.seconds / full.seconds:.2f}"
            )
            await model_rows(warehouse)
            print(f"emulator peak memory  {emulator_peak_memory()}")
        headers = {"Authorization": f"Bearer {settings.read_api_token.get_secret_value()}"}
        silver, gold = [], []
        async with bench_client(100, headers=headers) as http:
            for sample in range(args.samples):
                to_silver, to_gold = await hook_to_gold(http, warehouse, args.api, args.sims, args.timeout)
                silver.append(to_silver)
                gold.append(to_gold)
                print(f"hook to gold #{sample + 1:<8} silver {to_silver:.1f} s, gold {to_gold:.1f} s")
                await asyncio.sleep(args.gap)
        if gold:
            met = "met" if max(gold) <= FRESHNESS_GOAL_SECONDS else "MISSED"
            print(
                f"hook to gold          median {statistics.median(gold):.1f} s, max {max(gold):.1f} s"
                f" (silver median {statistics.median(silver):.1f} s) over {len(gold)} orders;"
                f" goal {FRESHNESS_GOAL_SECONDS:.0f} s: {met}"
            )
    finally:
        await warehouse.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=100_000, help="orders seeded in bronze")
    parser.add_argument("--more", type=int, default=1_000, help="orders landed before each incremental build")
    parser.add_argument("--leads", type=int, default=20_000, help="leads (and their deals) seeded in bronze")
    parser.add_argument(
        "--more-leads", type=int, default=200, help="leads landed before each incremental build"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="incremental fast builds, each after --more orders"
    )
    parser.add_argument("--samples", type=int, default=5, help="orders whose hook-to-gold time is measured")
    parser.add_argument("--gap", type=float, default=20.0, help="seconds between those orders")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds an order may take")
    parser.add_argument("--seed", type=int, default=20261125, help="seed of the generated history")
    parser.add_argument("--skip-seed", action="store_true", help="only measure hook-to-gold")
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--sims", default="http://127.0.0.1:8100")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

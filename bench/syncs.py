"""Catalog and customer sync benchmark against the running local stack (``python3 dev.py up``).

    .venv/bin/python bench/syncs.py --rate 100

Runs a customer sync of the simulator's Master Data CL (all of it on the first run), then a catalog sync
of its catalog at ``--rate`` catalog requests per second, and prints:
- the catalog sync's duration against the bound the rate allows (SKUs * requests per SKU / rate), and
  the ratio of the two (the goal is at least 0.8);
- customers landed per second;
- the worker's peak resident memory (the goal is under 300 MiB: pages are streamed, the catalog is
  never held in memory).
Each sync is started directly (as its schedule would start it) with a benchmark workflow id.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import print_memory
from core.settings import Settings
from core.temporal import connect
from workflows.vtex_catalog_sync import CatalogSyncInput, CatalogSyncResult, CatalogSyncWorkflow
from workflows.vtex_customer_sync import CustomerSyncInput, CustomerSyncResult, CustomerSyncWorkflow

REQUESTS_PER_SKU = 2  # its catalog record and its price


async def customer_sync(settings: Settings) -> tuple[CustomerSyncResult, float]:
    client = await connect(settings)
    started = time.perf_counter()
    result = await client.execute_workflow(
        CustomerSyncWorkflow.run,
        CustomerSyncInput(api_task_queue=settings.vtex_api_task_queue),
        id=f"bench-customer-sync-{uuid.uuid4().hex[:8]}",
        task_queue=settings.vtex_orders_task_queue,
    )
    return result, time.perf_counter() - started


async def catalog_sync(settings: Settings, rate: float) -> tuple[CatalogSyncResult, float]:
    client = await connect(settings)
    started = time.perf_counter()
    result = await client.execute_workflow(
        CatalogSyncWorkflow.run,
        CatalogSyncInput(requests_per_second=rate, api_task_queue=settings.vtex_api_task_queue),
        id=f"bench-catalog-sync-{uuid.uuid4().hex[:8]}",
        task_queue=settings.vtex_orders_task_queue,
    )
    return result, time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="catalog requests per second")
    parser.add_argument("--skip-customers", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    if not args.skip_customers:
        customers, seconds = await customer_sync(settings)
        print(
            f"customers             {customers.landed} landed ({customers.read} read, {customers.quarantined}"
            f" quarantined, {customers.pages} pages) in {seconds:.1f} s = {customers.read / seconds:.0f}/s"
        )
    catalog, seconds = await catalog_sync(settings, args.rate)
    counts = catalog.counts
    skus = counts.read + counts.removed
    bound = skus * REQUESTS_PER_SKU / args.rate
    print(
        f"catalog               {counts.read} SKUs read, {counts.changed} changed,"
        f" {counts.unchanged} unchanged, {counts.quarantined} quarantined; {counts.vtex_requests} requests"
    )
    print(
        f"catalog duration      {seconds:.1f} s (rate-limit bound {bound:.1f} s at {args.rate:g} requests/s)"
    )
    print(f"ratio                 {bound / seconds:.2f} of the bound")
    print_memory()


if __name__ == "__main__":
    asyncio.run(main())

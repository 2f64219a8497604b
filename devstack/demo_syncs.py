"""Demo: the catalog and customer syncs, triggered through their schedules, and what each landed."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle

from cli.progress import follow
from contracts.schedules import VTEX_CATALOG_SYNC, VTEX_CUSTOMER_SYNC, trigger_run
from core.constants import PROGRESS_QUERY
from core.settings import Settings
from core.temporal import connect
from workflows.vtex_catalog_sync import CatalogSyncResult
from workflows.vtex_customer_sync import CustomerSyncResult

PROGRESS_EVERY_SECONDS = 10.0


async def run_sync_demo(settings: Settings) -> bool:
    """Trigger both sync schedules once, follow them, print their counts; True if both completed."""
    client = await connect(settings)
    print(f"\nTriggering the schedules {VTEX_CUSTOMER_SYNC} and {VTEX_CATALOG_SYNC}...", flush=True)
    customers = await _trigger(client, VTEX_CUSTOMER_SYNC, CustomerSyncResult)
    catalog = await _trigger(client, VTEX_CATALOG_SYNC, CatalogSyncResult)
    customer_result = await customers.result()
    print(
        f"Customers: {customer_result.read} read, {customer_result.landed} landed,"
        f" {customer_result.already_landed} already there, {customer_result.quarantined} quarantined"
        f" ({_checks(customer_result.checks)}); watermark now {customer_result.watermark};"
        f" {customer_result.seconds:.0f} s",
        flush=True,
    )
    catalog_result = await _follow(catalog)
    counts = catalog_result.counts
    print(
        f"Catalog: {counts.read} SKUs read, {counts.changed} changed, {counts.unchanged} unchanged,"
        f" {counts.quarantined} quarantined, {counts.removed} removed; {counts.vtex_requests} VTEX requests"
        f" in {catalog_result.seconds:.0f} s ({catalog_result.skus_per_second} SKUs/s)"
    )
    print(f"Bronze tables: {settings.bigquery_dataset_prefix}bronze.vtex_customers, .vtex_skus")
    return customer_result.done and catalog_result.done


async def _trigger(client: Client, schedule_id: str, result_type: type[Any]) -> WorkflowHandle[Any, Any]:
    """Trigger the schedule now and return the run it started (or the one still running)."""
    workflow_id, _ = await trigger_run(client, schedule_id)
    return client.get_workflow_handle(workflow_id, result_type=result_type)


async def _follow(handle: WorkflowHandle[Any, CatalogSyncResult]) -> CatalogSyncResult:
    """The catalog sync's result, printing its progress while it runs (it reads every SKU)."""

    def show(progress: CatalogSyncResult) -> None:
        print(
            f"  catalog: {progress.counts.read} SKUs read ({progress.skus_per_second}/s),"
            f" {progress.counts.changed} changed so far",
            flush=True,
        )

    return await follow(handle, PROGRESS_QUERY, CatalogSyncResult, show, every=PROGRESS_EVERY_SECONDS)


def _checks(checks: dict[str, int]) -> str:
    return (
        ", ".join(f"{count} {code.replace('_', ' ')}" for code, count in sorted(checks.items())) or "no notes"
    )

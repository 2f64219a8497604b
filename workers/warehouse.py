"""The ``warehouse`` role: VTEX orders, the VTEX API queue, the backfill, the syncs (VTEX's and the lead
flow's, from the portal database) and dbt builds.

Its process loads the VTEX client, the BigQuery client and pyarrow (the Storage Write API), and runs dbt
in child processes. It polls the ``vtex-orders``, ``vtex-api`` and ``dbt`` task queues, and creates the
scheduled flows' Temporal Schedules.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.dbt import BuildRequestActivities, DbtActivities
from activities.lead_warehouse import LeadWarehouseActivities
from activities.pacing import RequestBudgets
from activities.vtex import VtexOrderActivities
from activities.vtex_backfill import VtexBackfillActivities
from activities.vtex_catalog import VtexCatalogActivities
from activities.vtex_customers import VtexCustomerActivities
from activities.vtex_feed import INVALID_FEED_ITEM, VtexFeedActivities
from activities.watermarks import WatermarkActivities
from clients.bounded import answer_hooks
from clients.vtex import VtexClient
from contracts.dbt_build import BuildRequester
from core.background import in_background
from core.metrics import start_at_zero, warehouse_series
from core.settings import Settings
from db.engine import engine_for, session_factory
from warehouse.landing import Warehouse
from warehouse.tables import (
    BRONZE_TABLES,
    QUARANTINE,
    VTEX_CUSTOMERS,
    VTEX_ORDER_EVENTS,
    VTEX_ORDERS,
    VTEX_SKUS,
)
from warehouse.vtex_catalog import INVALID_SKU
from warehouse.vtex_customers import INVALID_DATE, INVALID_EMAIL, MISSING_ID
from warehouse.vtex_orders import INVALID_ORDER
from workers.options import shutdown_options, webhook_queue_polling, workflow_options
from workers.schedules import ensure_schedules
from workflows.dbt_build import DbtBuildWorkflow
from workflows.lead_warehouse_sync import LeadWarehouseSyncWorkflow
from workflows.vtex_catalog_sync import CatalogSyncWorkflow
from workflows.vtex_customer_sync import CustomerSyncWorkflow
from workflows.vtex_feed_reconcile import VtexFeedReconcileWorkflow
from workflows.vtex_hook_config import VtexHookConfigWorkflow
from workflows.vtex_order import VtexOrderWorkflow
from workflows.vtex_order_backfill import OrderBackfillWorkflow

log = logging.getLogger("workers.warehouse")

VTEX_WORKFLOWS: tuple[type, ...] = (
    VtexOrderWorkflow,
    VtexFeedReconcileWorkflow,
    VtexHookConfigWorkflow,
    OrderBackfillWorkflow,
    CatalogSyncWorkflow,
    CustomerSyncWorkflow,
    LeadWarehouseSyncWorkflow,
)
WORKFLOWS: tuple[type, ...] = (*VTEX_WORKFLOWS, DbtBuildWorkflow)
# Every check that sends a record to quarantine, with the table the record was meant for.
QUARANTINE_CHECKS = [
    (VTEX_ORDERS, INVALID_ORDER),
    (VTEX_ORDER_EVENTS, INVALID_FEED_ITEM),
    (VTEX_SKUS, INVALID_SKU),
    *((VTEX_CUSTOMERS, check) for check in (MISSING_ID, INVALID_DATE, INVALID_EMAIL)),
]


async def prepare(client: Client, settings: Settings) -> None:
    """Before the role's workers start: the scheduled flows' Schedules, created or brought up to date."""
    await ensure_schedules(client, settings)


@asynccontextmanager
async def open_workers(client: Client, settings: Settings) -> AsyncIterator[list[Worker]]:
    """The role's workers with their clients (built once per process), closed again on exit; the
    warehouse's schema is prepared while the workers start."""
    start_at_zero(
        warehouse_series([table for table in BRONZE_TABLES if table != QUARANTINE], QUARANTINE_CHECKS)
    )
    engine = engine_for(settings)
    http = httpx.AsyncClient(
        timeout=settings.dealer_http_timeout_seconds,
        event_hooks=answer_hooks(settings.partner_answer_max_bytes),
    )
    vtex = VtexClient(http, settings)
    warehouse = Warehouse.from_settings(settings)
    budgets = RequestBudgets()  # the long jobs' VTEX request budgets, shared by this process's activities
    builds = BuildRequester(client, settings)
    sessions = session_factory(engine)
    try:
        async with AsyncExitStack() as running:
            await running.enter_async_context(in_background(prepare_warehouse(warehouse)))
            yield build_workers(client, settings, vtex, warehouse, budgets, builds, sessions)
    finally:
        await builds.flush()  # a build request still waiting for a pause in landings goes out now
        await warehouse.aclose()
        await http.aclose()
        await engine.dispose()


def build_workers(
    client: Client,
    settings: Settings,
    vtex: VtexClient,
    warehouse: Warehouse,
    budgets: RequestBudgets,
    builds: BuildRequester,
    sessions: async_sessionmaker[AsyncSession],
) -> list[Worker]:
    """One worker per task queue: each queue scales separately, and every VTEX call shares one rate limit."""
    orders = VtexOrderActivities(vtex, warehouse, builds)
    feed = VtexFeedActivities(vtex, warehouse, settings, client)
    backfill = VtexBackfillActivities(vtex, warehouse, budgets)
    catalog = VtexCatalogActivities(vtex, warehouse, budgets)
    customers = VtexCustomerActivities(vtex, warehouse, budgets, sessions)
    watermarks = WatermarkActivities(sessions)
    leads = LeadWarehouseActivities(warehouse, sessions)
    requests = BuildRequestActivities(builds)
    return [
        Worker(
            client,
            task_queue=settings.vtex_orders_task_queue,
            workflows=VTEX_WORKFLOWS,
            **workflow_options(settings, settings.worker_max_cached_order_workflows),
            **webhook_queue_polling(settings),
            activities=[
                orders.land_order_events,
                feed.deliver_feed_items,
                # The lead warehouse sync reads the portal database, never VTEX: not on the paced queue.
                leads.land_lead_changes,
                watermarks.read_watermark,
                watermarks.advance_watermark,
            ],
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            **shutdown_options(settings),
        ),
        Worker(
            client,
            task_queue=settings.vtex_api_task_queue,
            activities=[
                orders.land_order_version,
                feed.read_order_feed,
                feed.commit_order_feed,
                feed.save_hook_config,
                backfill.count_orders,
                backfill.plan_page,
                backfill.land_orders,
                catalog.land_catalog_page,
                catalog.land_removed_skus,
                watermarks.read_watermark,
                customers.land_customer_page,
                watermarks.advance_watermark,
                requests.request_dbt_build,
            ],
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            **shutdown_options(settings),
            # Enforced by the Temporal server across every worker polling this queue: VTEX's limit is
            # per account, not per process.
            max_task_queue_activities_per_second=settings.vtex_requests_per_second,
        ),
        Worker(
            client,
            task_queue=settings.dbt_task_queue,
            workflows=[DbtBuildWorkflow],
            **workflow_options(settings, settings.worker_max_cached_workflows),
            activities=[DbtActivities(settings, sessions).dbt_build, requests.request_dbt_build],
            # One build at a time per worker; the workflow never asks for two at once anyway.
            max_concurrent_activities=2,
            **shutdown_options(settings),
        ),
    ]


async def prepare_warehouse(warehouse: Warehouse) -> None:
    """Create the warehouse's schema now, so the first landings do not wait for it."""
    try:
        await warehouse.ready()
    except Exception as error:  # the warehouse may be away at start: the first landing tries again
        log.warning("warehouse schema not ready at start (the first landing tries again): %s", error)

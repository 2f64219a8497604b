"""Worker process: builds the clients once, registers workflows and activities, polls the task queue."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.dbt import BuildRequester, DbtActivities
from activities.leads import LeadActivities
from activities.opportunities import OpportunityActivities
from activities.pacing import RequestBudgets
from activities.vtex import VtexOrderActivities
from activities.vtex_backfill import VtexBackfillActivities
from activities.vtex_catalog import VtexCatalogActivities
from activities.vtex_customers import VtexCustomerActivities
from activities.vtex_feed import VtexFeedActivities
from clients.dealer_crm import RestDealerCrm, SoapDealerCrm
from clients.subscribers import EventPublisher
from clients.vtex import VtexClient
from clients.zoho import ZohoClient
from core.background import in_background
from core.logs import configure_logging
from core.outbound import PinnedTransport
from core.settings import Settings, get_settings
from core.temporal import connect
from db.engine import create_engine, session_factory
from warehouse import Warehouse
from workers.metrics import serving_metrics
from workers.schedules import ensure_schedules
from workflows.dbt_build import DbtBuildWorkflow
from workflows.lead_distribution import LeadDistributionWorkflow
from workflows.opportunity_sync import OpportunitySyncWorkflow
from workflows.vtex_catalog_sync import CatalogSyncWorkflow
from workflows.vtex_customer_sync import CustomerSyncWorkflow
from workflows.vtex_feed_reconcile import VtexFeedReconcileWorkflow
from workflows.vtex_hook_config import VtexHookConfigWorkflow
from workflows.vtex_order import VtexOrderWorkflow
from workflows.vtex_order_backfill import OrderBackfillWorkflow

log = logging.getLogger("workers")

# Each workflow run re-executes, inside the sandbox, every module its workflow module imports unless
# it is passed through; with hundreds of runs in the cache, those copies dominate the worker's memory.
# The workflow modules import only deterministic code (dataclasses, constants, the activity
# contracts), so they share the modules the worker loaded; the sandbox still checks every call.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
)

# The workflows of each task queue. ``WORKFLOWS`` is every one of them: what a replay must know.
LEAD_WORKFLOWS: tuple[type, ...] = (LeadDistributionWorkflow,)
OPPORTUNITY_WORKFLOWS: tuple[type, ...] = (OpportunitySyncWorkflow,)
VTEX_WORKFLOWS: tuple[type, ...] = (
    VtexOrderWorkflow,
    VtexFeedReconcileWorkflow,
    VtexHookConfigWorkflow,
    OrderBackfillWorkflow,
    CatalogSyncWorkflow,
    CustomerSyncWorkflow,
)
DBT_WORKFLOWS: tuple[type, ...] = (DbtBuildWorkflow,)
WORKFLOWS = (*LEAD_WORKFLOWS, *OPPORTUNITY_WORKFLOWS, *VTEX_WORKFLOWS, *DBT_WORKFLOWS)


@dataclass
class WorkerActivities:
    leads: LeadActivities
    opportunities: OpportunityActivities
    vtex_orders: VtexOrderActivities
    vtex_feed: VtexFeedActivities
    vtex_backfill: VtexBackfillActivities
    vtex_catalog: VtexCatalogActivities
    vtex_customers: VtexCustomerActivities
    dbt: DbtActivities
    builds: BuildRequester
    warehouse: Warehouse


@asynccontextmanager
async def worker_activities(settings: Settings, client: Client) -> AsyncIterator[WorkerActivities]:
    """The activity objects with their clients (built once per process), closed again on exit."""
    engine = create_engine(settings.database_url)
    http = httpx.AsyncClient(timeout=settings.dealer_http_timeout_seconds)
    # Dealer URLs come from the dealers' YAML and their WSDLs: their connections go only to addresses
    # checked as they open (a name cannot pass the URL check and then resolve to an internal address).
    rules = settings.outbound_rules()
    dealer_http = httpx.AsyncClient(
        timeout=settings.dealer_http_timeout_seconds, transport=PinnedTransport(rules)
    )
    api_keys = {dealer: key.get_secret_value() for dealer, key in settings.dealer_api_keys.items()}
    rest = RestDealerCrm(dealer_http, api_keys, settings.check_outbound_url)
    soap = SoapDealerCrm(settings.dealer_http_timeout_seconds, api_keys, settings.check_outbound_url, rules)
    sessions = session_factory(engine)
    zoho = ZohoClient(http, settings, sessions)
    vtex = VtexClient(http, settings)
    warehouse = Warehouse.from_settings(settings)
    budgets = RequestBudgets()  # the long jobs' VTEX request budgets, shared by this worker's activities
    builds = BuildRequester(client, settings)
    try:
        yield WorkerActivities(
            leads=LeadActivities(
                sessions=sessions,
                zoho=zoho,
                dealer_crms={"rest": rest, "soap": soap},
                publisher=EventPublisher(http, settings.event_signing_secret.get_secret_value()),
                subscribers=list(settings.event_subscribers),
                business_timezone=settings.business_timezone,
            ),
            opportunities=OpportunityActivities(sessions, zoho),
            vtex_orders=VtexOrderActivities(vtex, warehouse, builds),
            vtex_feed=VtexFeedActivities(vtex, warehouse, settings),
            vtex_backfill=VtexBackfillActivities(vtex, warehouse, budgets),
            vtex_catalog=VtexCatalogActivities(vtex, warehouse, budgets),
            vtex_customers=VtexCustomerActivities(vtex, warehouse, sessions, budgets),
            dbt=DbtActivities(settings),
            builds=builds,
            warehouse=warehouse,
        )
    finally:
        await builds.flush()  # a build request still waiting for a pause in landings goes out now
        await warehouse.aclose()
        await soap.aclose()
        await dealer_http.aclose()
        await http.aclose()
        await engine.dispose()


async def prepare_warehouse(warehouse: Warehouse) -> None:
    """Create the warehouse's schema now, so the first landings do not wait for it."""
    try:
        await warehouse.ready()
    except Exception as error:  # the warehouse may be away at start: the first landing tries again
        log.warning("warehouse schema not ready at start (the first landing tries again): %s", error)


def build_workers(client: Client, activities: WorkerActivities, settings: Settings) -> list[Worker]:
    """One worker per task queue: each flow scales separately, and every VTEX call shares one rate limit."""
    leads = activities.leads
    opportunities = activities.opportunities
    orders = activities.vtex_orders
    feed = activities.vtex_feed
    backfill = activities.vtex_backfill
    catalog = activities.vtex_catalog
    customers = activities.vtex_customers
    webhook_polling = workflow_task_polling(settings)  # the queues that webhooks start workflows on
    return [
        Worker(
            client,
            task_queue=settings.leads_task_queue,
            workflows=LEAD_WORKFLOWS,
            workflow_runner=WORKFLOW_RUNNER,
            **webhook_polling,
            activities=[
                leads.record_lead_status,
                leads.fetch_lead,
                leads.route_lead,
                leads.claim_lead,
                leads.assign_lead,
                leads.reassign_lead,
                leads.lookup_dealer,
                leads.deliver_lead,
                leads.update_zoho_lead,
                leads.publish_event,
            ],
            max_concurrent_activities=settings.worker_max_concurrent_activities,
        ),
        Worker(
            client,
            task_queue=settings.opportunities_task_queue,
            workflows=OPPORTUNITY_WORKFLOWS,
            workflow_runner=WORKFLOW_RUNNER,
            **webhook_polling,
            activities=[opportunities.fetch_deal, opportunities.apply_deal_change],
            max_concurrent_activities=settings.worker_max_concurrent_activities,
        ),
        Worker(
            client,
            task_queue=settings.vtex_orders_task_queue,
            workflows=VTEX_WORKFLOWS,
            workflow_runner=WORKFLOW_RUNNER,
            **webhook_polling,
            activities=[orders.land_order_events, feed.deliver_feed_items],
            max_concurrent_activities=settings.worker_max_concurrent_activities,
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
                customers.read_watermark,
                customers.land_customer_page,
                customers.advance_watermark,
                activities.builds.request_dbt_build,
            ],
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            # Enforced by the Temporal server across every worker polling this queue: VTEX's limit is
            # per account, not per process.
            max_task_queue_activities_per_second=settings.vtex_requests_per_second,
        ),
        Worker(
            client,
            task_queue=settings.dbt_task_queue,
            workflows=DBT_WORKFLOWS,
            workflow_runner=WORKFLOW_RUNNER,
            activities=[activities.dbt.dbt_build, activities.builds.request_dbt_build],
            # One build at a time per worker; the workflow never asks for two at once anyway.
            max_concurrent_activities=2,
        ),
    ]


def workflow_task_polling(settings: Settings) -> dict[str, Any]:
    """Worker options for queues where webhooks start many workflows at once.

    A workflow's first task (and that of one evicted from the cache) comes from the task queue itself;
    later ones from the worker's own sticky queue. The SDK's default gives the first kind one poll of
    five: a burst of new orders then waits seconds for it. Half of the polls go to each kind instead.
    """
    return {
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.worker_workflow_task_polls),
        "nonsticky_to_sticky_poll_ratio": 0.5,
    }


def worker_runtime(sdk_metrics_port: int | None) -> Runtime:
    """The SDK's runtime: its metrics on a loopback port (``workers.metrics`` serves them with the hub's),
    and its core's warnings forwarded into Python logging, so they come out as JSON like every line."""
    metrics = PrometheusConfig(bind_address=f"127.0.0.1:{sdk_metrics_port}") if sdk_metrics_port else None
    logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    return Runtime(telemetry=TelemetryConfig(metrics=metrics, logging=logs))


async def run(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight tasks and stop."""
    sdk_metrics_port = free_loopback_port() if settings.worker_metrics_port else None
    client = await connect(settings, runtime=worker_runtime(sdk_metrics_port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await ensure_schedules(client, settings)
    async with worker_activities(settings, client) as activities, AsyncExitStack() as running:
        await running.enter_async_context(in_background(prepare_warehouse(activities.warehouse)))
        workers = build_workers(client, activities, settings)
        for worker in workers:
            await running.enter_async_context(worker)
            log.info("worker polling %s at %s", worker.task_queue, settings.temporal_address)
        if sdk_metrics_port:
            await running.enter_async_context(serving_metrics(settings, client, workers, sdk_metrics_port))
        await stop.wait()
    log.info("worker stopped")


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now, for the SDK's metrics (read only by this process's endpoint)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="hub-worker", description="Run the integrations worker.")
    parser.parse_args()
    settings = get_settings()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()

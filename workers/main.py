"""Worker process: builds the clients once, registers workflows and activities, polls the task queue."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.leads import LeadActivities
from clients.dealer_crm import RestDealerCrm, SoapDealerCrm
from clients.subscribers import EventPublisher
from clients.zoho import ZohoClient
from core.settings import Settings, get_settings
from db.engine import create_engine, session_factory
from workflows.lead_distribution import LeadDistributionWorkflow

log = logging.getLogger("workers")


@asynccontextmanager
async def lead_activities(settings: Settings) -> AsyncIterator[LeadActivities]:
    """The activity object with its clients, closed again on exit."""
    engine = create_engine(settings.database_url)
    http = httpx.AsyncClient(timeout=settings.dealer_http_timeout_seconds)
    api_keys = {dealer: key.get_secret_value() for dealer, key in settings.dealer_api_keys.items()}
    soap = SoapDealerCrm(settings.dealer_http_timeout_seconds, api_keys)
    sessions = session_factory(engine)
    try:
        yield LeadActivities(
            sessions=sessions,
            zoho=ZohoClient(http, settings, sessions),
            dealer_crms={"rest": RestDealerCrm(http, api_keys), "soap": soap},
            publisher=EventPublisher(http, settings.event_signing_secret.get_secret_value()),
            subscribers=list(settings.event_subscribers),
        )
    finally:
        await soap.aclose()
        await http.aclose()
        await engine.dispose()


def build_worker(client: Client, activities: LeadActivities, settings: Settings, task_queue: str) -> Worker:
    """A worker for lead distribution on ``task_queue``."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[LeadDistributionWorkflow],
        activities=[
            activities.record_lead_status,
            activities.fetch_lead,
            activities.route_lead,
            activities.lookup_dealer,
            activities.deliver_lead,
            activities.update_zoho_lead,
            activities.publish_event,
        ],
        max_concurrent_activities=settings.worker_max_concurrent_activities,
    )


async def connect(settings: Settings, serve_metrics: bool = False) -> Client:
    """A Temporal client; with ``serve_metrics``, the SDK's metrics are served for Prometheus."""
    runtime = None
    if serve_metrics and settings.worker_metrics_port:
        address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    return await Client.connect(
        settings.temporal_address, namespace=settings.temporal_namespace, runtime=runtime
    )


async def run(settings: Settings, task_queue: str) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight tasks and stop."""
    client = await connect(settings, serve_metrics=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with lead_activities(settings) as activities:
        worker = build_worker(client, activities, settings, task_queue)
        async with worker:
            log.info("worker polling %s at %s", task_queue, settings.temporal_address)
            await stop.wait()
    log.info("worker stopped")


def main() -> None:
    parser = argparse.ArgumentParser(prog="hub-worker", description="Run the integrations worker.")
    parser.add_argument("--task-queue", default=None, help="defaults to HUB_LEADS_TASK_QUEUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the useful ones
    settings = get_settings()
    asyncio.run(run(settings, args.task_queue or settings.leads_task_queue))


if __name__ == "__main__":
    main()

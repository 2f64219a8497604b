"""The worker's metrics endpoint, and the gauges it reads from Temporal's visibility.

One address per worker for Prometheus: ``/metrics`` serves the hub's worker metrics (``core.metrics``)
followed by the Temporal SDK's own (``temporal_*`` and the workflows' metric meter), which the SDK serves
on a loopback port of its own that this endpoint reads on every scrape.

Some numbers belong to no process: how many leads wait for support, which runs Temporal terminated or
timed out, when each scheduled flow last completed, what the last dbt build found. :class:`VisibilityPoll`
asks Temporal for them every ``HUB_WORKER_METRICS_POLL_SECONDS``. Every worker reports the same values,
so dashboards take their ``max``; and a restarted worker knows them again at its first poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from contracts.dbt_build import STATUS_QUERY, DbtBuildStatus, dbt_build_workflow_id
from contracts.leads import AWAITING_ASSIGNMENT, LEAD_DISTRIBUTION_WORKFLOW
from contracts.schedules import scheduled
from core.background import in_background
from core.constants import LEAD_STATUS, PARKED, PARTNERS
from core.metrics import (
    BRONZE_FRESHNESS,
    BRONZE_LOADED_AT,
    DBT_LAST_BUILD,
    EXPECTED_INTERVAL,
    LAST_SUCCESS,
    LEADS_IN_PROGRESS,
    PARKED_WORKFLOWS,
    REGISTRY,
    RUNS_CLOSED_LAST_HOUR,
)
from core.settings import Settings

# dbt source freshness statuses as hub_bronze_freshness values (anything else, e.g. a runtime error: 2).
FRESHNESS_LEVELS = {"pass": 0, "warn": 1, "error": 2}

log = logging.getLogger("workers.metrics")

SDK_SCRAPE_TIMEOUT_SECONDS = 5.0
RPC_TIMEOUT = timedelta(seconds=10)
CLOSED_WINDOW = timedelta(hours=1)
# How runs broke off. Failed ones are counted here too, not only by the SDK (temporal_workflow_failed):
# the SDK's series of a workflow type appears with its first failure, which an increase() cannot see.
CLOSED_STATUSES = {
    "Failed": "failed",
    "Terminated": "terminated",
    "TimedOut": "timed_out",
    "Canceled": "canceled",
}
# Superseded lead runs broke off by design: support's reassign terminates the run and starts the next.
# Counted are only the runs still the latest of their lead (what hub leads redrive finds), up to this
# many looked up per poll.
SUPERSEDED_CHECKS = 100
# A lead workflow's LeadStatus while it runs; the final statuses end the run.
RUNNING_LEAD_STATUSES = ("received", "routed", AWAITING_ASSIGNMENT)
DBT_FLOW = "dbt-build"


@asynccontextmanager
async def serving_metrics(
    settings: Settings, client: Client, workers: Sequence[Worker], sdk_port: int
) -> AsyncIterator[None]:
    """The endpoint on ``HUB_WORKER_METRICS_HOST:PORT``, and the visibility poll unless its interval is 0."""
    poll = VisibilityPoll(client, settings, workflow_queues(workers))
    every = settings.worker_metrics_poll_seconds
    polling = in_background(poll.run(every)) if every else contextlib.nullcontext()
    async with polling:
        with metrics_endpoint(settings.worker_metrics_host, settings.worker_metrics_port, sdk_port):
            yield


@contextmanager
def metrics_endpoint(host: str, port: int, sdk_port: int) -> Iterator[None]:
    """Serve ``http://host:port/metrics`` in a thread: the hub's metrics, then the SDK's from ``sdk_port``."""
    sdk_url = f"http://127.0.0.1:{sdk_port}/metrics"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = generate_latest(REGISTRY) + sdk_metrics(sdk_url)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)  # both parts are that format
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a line per scrape drowns the useful ones

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-endpoint", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def sdk_metrics(url: str) -> bytes:
    """The SDK's exposition text; empty while it cannot be read (the hub's metrics are served anyway)."""
    try:
        with urllib.request.urlopen(url, timeout=SDK_SCRAPE_TIMEOUT_SECONDS) as response:  # noqa: S310 (loopback)
            return bytes(response.read())
    except OSError as error:
        log.warning("the Temporal SDK's metrics could not be read: %s", type(error).__name__)
        return b""


def workflow_queues(workers: Sequence[Worker]) -> dict[str, str]:
    """Each workflow type these workers run, with its task queue.

    Every workflow is registered under its class name (``tests/architecture/test_layers.py`` checks it).
    """
    return {
        cls.__name__: worker.task_queue for worker in workers for cls in worker.config().get("workflows", [])
    }


class VisibilityPoll:
    """Sets the gauges that only Temporal can answer, from its visibility store and the build workflow."""

    def __init__(self, client: Client, settings: Settings, workflow_queues: dict[str, str]) -> None:
        self._client = client
        self._settings = settings
        self._queues = workflow_queues
        # Scheduled flows: the flow (its schedule id), its workflow type and task queue, its interval.
        self._flows = [(flow.schedule_id, flow.workflow_type, flow.every) for flow in scheduled(settings)]

    async def run(self, every_seconds: float) -> None:
        """Poll until cancelled; a poll that fails is logged and the next one tries again."""
        while True:
            await self.poll()
            await asyncio.sleep(every_seconds)

    async def poll(self) -> None:
        for part in (self._leads, self._parked, self._closed_runs, self._scheduled_flows, self._dbt_build):
            try:
                await part()
            except Exception as error:  # Temporal away, a query unanswered: the gauges keep their values
                log.warning("metrics poll %s failed: %s", part.__name__.strip("_"), type(error).__name__)

    async def _count(self, query: str) -> int:
        return (await self._client.count_workflows(query, rpc_timeout=RPC_TIMEOUT)).count

    async def _leads(self) -> None:
        queue = self._settings.leads_task_queue
        running = f"WorkflowType = '{LEAD_DISTRIBUTION_WORKFLOW}' AND TaskQueue = '{queue}'"
        running += " AND ExecutionStatus = 'Running'"
        for status in RUNNING_LEAD_STATUSES:
            count = await self._count(f"{running} AND {LEAD_STATUS.name} = '{status}'")
            LEADS_IN_PROGRESS.labels(status).set(count)

    async def _parked(self) -> None:
        # Every role's queues, not only this worker's: with every flows worker gone, the warehouse
        # worker still reports the leads and deals parked (the alert takes the highest report).
        settings = self._settings
        every_queue = {
            settings.leads_task_queue,
            settings.opportunities_task_queue,
            settings.vtex_orders_task_queue,
            settings.vtex_api_task_queue,
            settings.dbt_task_queue,
        }
        queues = ", ".join(f"'{queue}'" for queue in sorted(every_queue))
        for partner in PARTNERS:
            query = f"ExecutionStatus = 'Running' AND TaskQueue IN ({queues}) AND {PARKED.name} = '{partner}'"
            PARKED_WORKFLOWS.labels(partner).set(await self._count(query))

    async def _closed_runs(self) -> None:
        since = (datetime.now(UTC) - CLOSED_WINDOW).isoformat(timespec="seconds")
        for workflow_type, task_queue in self._queues.items():
            counted = await self._client.count_workflows(
                f"WorkflowType = '{workflow_type}' AND TaskQueue = '{task_queue}'"
                f" AND CloseTime > '{since}' GROUP BY ExecutionStatus",
                rpc_timeout=RPC_TIMEOUT,
            )
            by_status = {str(group.group_values[0]): group.count for group in counted.groups}
            if workflow_type == LEAD_DISTRIBUTION_WORKFLOW:
                for status in ("Terminated", "Canceled"):
                    if by_status.get(status):
                        by_status[status] -= await self._superseded(workflow_type, task_queue, status, since)
            for status, label in CLOSED_STATUSES.items():
                RUNS_CLOSED_LAST_HOUR.labels(workflow_type, label).set(by_status.get(status, 0))

    async def _superseded(self, workflow_type: str, task_queue: str, status: str, since: str) -> int:
        """How many of these runs a later run of their workflow took over from."""
        query = (
            f"WorkflowType = '{workflow_type}' AND TaskQueue = '{task_queue}'"
            f" AND CloseTime > '{since}' AND ExecutionStatus = '{status}'"
        )
        superseded = 0
        async for execution in self._client.list_workflows(
            query, limit=SUPERSEDED_CHECKS, rpc_timeout=RPC_TIMEOUT
        ):
            latest = await self._client.get_workflow_handle(execution.id).describe(rpc_timeout=RPC_TIMEOUT)
            superseded += latest.run_id != execution.run_id
        return superseded

    async def _scheduled_flows(self) -> None:
        task_queue = self._settings.vtex_orders_task_queue  # where the schedules start their runs
        for flow, workflow_type, every in self._flows:
            EXPECTED_INTERVAL.labels(flow).set(every.total_seconds())
            query = (
                f"WorkflowType = '{workflow_type}' AND TaskQueue = '{task_queue}'"
                " AND ExecutionStatus = 'Completed'"
            )
            # Visibility lists the most recently closed first.
            async for execution in self._client.list_workflows(query, limit=1, rpc_timeout=RPC_TIMEOUT):
                if execution.close_time is not None:
                    LAST_SUCCESS.labels(flow).set(execution.close_time.timestamp())

    async def _dbt_build(self) -> None:
        handle = self._client.get_workflow_handle(dbt_build_workflow_id(self._settings))
        try:
            status = await handle.query(STATUS_QUERY, result_type=DbtBuildStatus, rpc_timeout=RPC_TIMEOUT)
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                return  # no build asked for yet (or builds run elsewhere): nothing to expect
            raise
        # Builds follow landings, not a clock; the catalog sync asks for one every interval it lands.
        EXPECTED_INTERVAL.labels(DBT_FLOW).set(self._settings.vtex_catalog_sync_interval_seconds)
        if status.last_success_at:
            LAST_SUCCESS.labels(DBT_FLOW).set(datetime.fromisoformat(status.last_success_at).timestamp())
        if status.last is not None:
            # Models from the last build; tests from the last full build (fast builds run none).
            last, checked = status.last, status.last_full or status.last
            for result, value in (
                ("models_built", last.models_built),
                ("models_failed", last.models_failed),
                ("tests_passed", checked.tests_passed),
                ("tests_failed", checked.tests_failed),
                ("tests_warned", checked.tests_warned),
            ):
                DBT_LAST_BUILD.labels(result).set(value)
            for table, freshness in checked.freshness.items():
                BRONZE_FRESHNESS.labels(table).set(FRESHNESS_LEVELS.get(freshness, 2))
            for table, loaded_at in checked.loaded_at.items():
                BRONZE_LOADED_AT.labels(table).set(datetime.fromisoformat(loaded_at).timestamp())

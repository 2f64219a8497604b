"""Worker process: ``hub-worker --role flows|warehouse|all`` polls the task queues of its role.

One image serves every role. ``flows`` runs lead distribution and opportunity sync (the portal database,
Zoho and the dealer CRMs: no BigQuery client, no pyarrow, no dbt); ``warehouse`` runs the VTEX flows,
the syncs, the backfill and dbt builds; ``all`` runs both in one process (the local default). Each role
module is imported only when its role runs, so a ``flows`` process never loads the warehouse's code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from types import ModuleType
from typing import Any, TypeVar, get_args

from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import Worker

from core.background import in_background
from core.logs import configure_logging
from core.memory import give_back_periodically
from core.settings import EventLoop, Settings, WorkerRole, WorkerSettings
from core.temporal import connect
from core.tracing import start_tracing, stop_tracing
from db.engine import database_unavailable, engine_for, session_factory
from db.schema import schema_behind, schema_revision
from workers.metrics import serving_metrics

log = logging.getLogger("workers")
T = TypeVar("T")
SCHEMA_CHECK_SECONDS = 5.0

# The modules of each role. Each has ``prepare(client, settings)``, what the role sets up once as it
# starts (the warehouse's Schedules), and ``open_workers(client, settings)``, its workers.
ROLE_MODULES = {
    "flows": ["workers.flows"],
    "warehouse": ["workers.warehouse"],
    "all": ["workers.flows", "workers.warehouse"],
}


def role_modules(role: WorkerRole) -> list[ModuleType]:
    return [importlib.import_module(name) for name in ROLE_MODULES[role]]


async def prepare_role(client: Client, settings: Settings, role: WorkerRole) -> None:
    for module in role_modules(role):
        await module.prepare(client, settings)


@asynccontextmanager
async def role_workers(client: Client, settings: Settings, role: WorkerRole) -> AsyncIterator[list[Worker]]:
    """The workers of ``role`` with their clients, closed again on exit (not yet polling)."""
    async with AsyncExitStack() as parts:
        workers: list[Worker] = []
        for module in role_modules(role):
            workers += await parts.enter_async_context(module.open_workers(client, settings))
        yield workers


def worker_runtime(sdk_metrics_port: int | None) -> Runtime:
    """The SDK's runtime: its metrics on a loopback port (``workers.metrics`` serves them with the hub's),
    and its core's warnings forwarded into Python logging, so they come out as JSON like every line."""
    metrics = PrometheusConfig(bind_address=f"127.0.0.1:{sdk_metrics_port}") if sdk_metrics_port else None
    logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    return Runtime(telemetry=TelemetryConfig(metrics=metrics, logging=logs))


async def run(settings: Settings, role: WorkerRole) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight tasks and stop."""
    sdk_metrics_port = free_loopback_port() if settings.worker_metrics_port else None
    log.info("worker (%s) runs on %s's event loop", role, running_loop_name())
    client = await connect(settings, runtime=worker_runtime(sdk_metrics_port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if not await schema_ready(settings, stop):
        log.info("worker stopped before the portal database had its schema")
        return
    await prepare_role(client, settings, role)
    async with role_workers(client, settings, role) as workers, AsyncExitStack() as running:
        await running.enter_async_context(polling(workers))
        for worker in workers:
            log.info("worker (%s) polling %s at %s", role, worker.task_queue, settings.temporal_address)
        if sdk_metrics_port:
            await running.enter_async_context(serving_metrics(settings, client, workers, sdk_metrics_port))
        await running.enter_async_context(in_background(give_back_periodically(settings.memory_trim_seconds)))
        await stop.wait()
        grace = settings.worker_graceful_shutdown_seconds
        log.info("worker stopping: tasks in flight get %.0f s to finish", grace)
    log.info("worker stopped")


async def schema_ready(settings: Settings, stop: asyncio.Event, every: float = SCHEMA_CHECK_SECONDS) -> bool:
    """Wait, polling nothing, until the portal database has this code's schema (a rollout's new pods may
    start before its migration ran: their work would fail on missing columns); False when told to stop
    first. A database that does not answer yet is waited for the same way."""
    engine = engine_for(settings)
    sessions = session_factory(engine)
    said = None
    try:
        while not stop.is_set():
            try:
                async with sessions() as session:
                    behind = schema_behind(await schema_revision(session))
            except Exception as error:
                if not database_unavailable(error):
                    raise
                behind = f"unavailable ({type(error).__name__})"
            if behind is None:
                return True
            if behind != said:
                log.warning("worker waits before polling: the portal database is %s", behind)
                said = behind
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
        return False
    finally:
        await engine.dispose()


@asynccontextmanager
async def polling(workers: list[Worker]) -> AsyncIterator[None]:
    """The workers polling; on exit they all stop polling at once and drain together. One after another,
    the later ones would poll on while the first drained, taking new tasks, and the drains would add up
    past the pod's grace period (its SIGKILL then cuts the tasks in flight)."""
    async with AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        try:
            yield
        finally:
            await asyncio.gather(*(worker.shutdown() for worker in workers))


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now, for the SDK's metrics (read only by this process's endpoint)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes event loops of ``kind`` (``HUB_WORKER_EVENT_LOOP``) for ``asyncio.Runner``: uvloop's
    where it is installed; None, asyncio's own, as ``asyncio.run`` makes it."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:  # not built for this platform (Windows): asyncio's own loop does the same work
            log.warning("uvloop is not installed: the worker runs on asyncio's own event loop")
        else:
            return uvloop.new_event_loop
    return None


def run_on(kind: EventLoop, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new event loop of ``kind``, as ``asyncio.run`` does."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: whose event loop runs the caller."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


def main() -> None:
    parser = argparse.ArgumentParser(prog="hub-worker", description="Run the integrations worker.")
    parser.add_argument(
        "--role",
        choices=get_args(WorkerRole),
        help="the task queues to poll: flows (leads, opportunities), warehouse (VTEX, syncs, dbt) or all"
        " (default: HUB_WORKER_ROLE, else all)",
    )
    args = parser.parse_args()
    # Production checks the credentials of the role it runs, given here or by HUB_WORKER_ROLE.
    settings = WorkerSettings(**({"worker_role": args.role} if args.role else {}))
    configure_logging(settings.log_level)
    role = settings.worker_role
    start_tracing(f"hub-worker-{role}")
    try:
        run_on(settings.worker_event_loop, run(settings, role))
    finally:
        stop_tracing()  # export the last spans


if __name__ == "__main__":
    main()

"""Worker options shared by the roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.worker import PollerBehaviorSimpleMaximum

from core.settings import Settings
from workflows.sandbox import WORKFLOW_RUNNER


def webhook_queue_polling(settings: Settings) -> dict[str, Any]:
    """Worker options for queues where webhooks start many workflows at once.

    A workflow's first task (and that of one evicted from the cache) comes from the task queue itself;
    later ones from the worker's own sticky queue. The SDK's default gives the first kind one poll of
    five: a burst of new orders then waits seconds for it. Half of the polls go to each kind instead.
    """
    return {
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(settings.worker_workflow_task_polls),
        "nonsticky_to_sticky_poll_ratio": 0.5,
    }


def shutdown_options(settings: Settings) -> dict[str, Any]:
    """Every worker's: on SIGTERM, running activities get ``HUB_WORKER_GRACEFUL_SHUTDOWN_SECONDS`` to
    finish (the SDK's default, 0, cancels them at once: a dealer call or a landing would start over)."""
    return {"graceful_shutdown_timeout": timedelta(seconds=settings.worker_graceful_shutdown_seconds)}


def workflow_options(settings: Settings, max_cached_workflows: int) -> dict[str, Any]:
    """How every worker runs its workflows: in the shared sandbox, at most
    ``HUB_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS`` tasks at once (the SDK's pool has as many threads), keeping
    up to ``max_cached_workflows`` runs in memory between their tasks (``HUB_WORKER_MAX_CACHED_WORKFLOWS``,
    or for the ``vtex-orders`` queue ``HUB_WORKER_MAX_CACHED_ORDER_WORKFLOWS``)."""
    return {
        "workflow_runner": WORKFLOW_RUNNER,
        "max_cached_workflows": max_cached_workflows,
        "max_concurrent_workflow_tasks": settings.worker_max_concurrent_workflow_tasks,
    }

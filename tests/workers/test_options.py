"""Each worker caches the runs of its task queue as its settings say: the order queue, whose runs wait
hours or days between most of their hooks, has a cache of its own, which an operator can make smaller
than the lead queues' to save the memory idle order runs hold. Every workflow queue works on as many
tasks at once as ``HUB_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS`` says."""

from __future__ import annotations

from typing import Any

from temporalio.testing import WorkflowEnvironment

from core.settings import Settings
from tests.hub import hub_settings
from workers.flows import soap_retry_pause
from workers.main import role_workers


async def workflow_queue_options(
    temporal_env: WorkflowEnvironment, settings: Settings, option: str
) -> dict[str, Any]:
    """``option`` of each worker of the ``all`` role that runs workflows, by task queue (built, not
    started)."""
    async with role_workers(temporal_env.client, settings, "all") as workers:
        return {
            worker.task_queue: worker.config()[option] for worker in workers if worker.config()["workflows"]
        }


def settings_of(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, **overrides: Any
) -> Settings:
    target = temporal_env.client.service_client.config.target_host
    # nothing is called: the workers are built, not started
    return hub_settings(sqlite_url, target, "http://127.0.0.1:9", task_queue, **overrides)


async def test_the_order_queue_has_its_own_cache_size_and_the_other_workflow_queues_share_one(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    settings = settings_of(
        temporal_env,
        sqlite_url,
        task_queue,
        worker_max_cached_workflows=700,
        worker_max_cached_order_workflows=70,
        **warehouse_settings,
    )
    assert await workflow_queue_options(temporal_env, settings, "max_cached_workflows") == {
        settings.leads_task_queue: 700,
        settings.opportunities_task_queue: 700,
        settings.vtex_orders_task_queue: 70,
        settings.dbt_task_queue: 700,
    }


async def test_every_workflow_queue_works_on_as_many_tasks_at_once_as_its_setting_says(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    settings = settings_of(
        temporal_env, sqlite_url, task_queue, worker_max_concurrent_workflow_tasks=12, **warehouse_settings
    )
    assert await workflow_queue_options(temporal_env, settings, "max_concurrent_workflow_tasks") == {
        settings.leads_task_queue: 12,
        settings.opportunities_task_queue: 12,
        settings.vtex_orders_task_queue: 12,
        settings.dbt_task_queue: 12,
    }


def test_a_retried_soap_create_pauses_a_calls_time_or_what_its_attempt_leaves() -> None:
    """The pause before a retried SOAP create's lookup leaves the attempt time for its lookup, its create
    and a margin: at the defaults (10 s calls, 30 s attempts) 5 s; a call's time where there is room."""
    assert soap_retry_pause(Settings(environment="test")) == 5.0
    roomy = Settings(environment="test", dealer_http_timeout_seconds=1)
    assert soap_retry_pause(roomy) == 1.0
    cramped = Settings(environment="test", dealer_http_timeout_seconds=14)
    assert soap_retry_pause(cramped) == 0.0

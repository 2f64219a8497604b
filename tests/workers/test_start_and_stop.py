"""A worker process polls once the portal database has its schema, and stops all its Temporal workers at
once on SIGTERM: none takes new tasks while another drains, and the drains run side by side within one
graceful period (the pod's grace period allows one)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

from alembic import command
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.settings import Settings
from db.migrate import alembic_config
from db.schema import SCHEMA_HEAD
from workers.main import polling, schema_ready

started: list[str] = []
finished: list[str] = []


@activity.defn
async def slow_step(name: str) -> str:
    started.append(name)
    await asyncio.sleep(1.5)  # within the graceful period: each drain lets it finish
    finished.append(name)
    return name


@workflow.defn(sandboxed=False)
class OneSlowStep:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(slow_step, name, start_to_close_timeout=timedelta(seconds=60))


def worker(client: Client, queue: str) -> Worker:
    return Worker(
        client,
        task_queue=queue,
        workflows=[OneSlowStep],
        activities=[slow_step],
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def test_the_workers_stop_polling_together_and_finish_what_they_hold(
    temporal_env: WorkflowEnvironment,
) -> None:
    client = temporal_env.client
    queues = [f"shutdown-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    started.clear()
    finished.clear()
    holding, leave = asyncio.Event(), asyncio.Event()

    async def poll_until_told() -> None:
        async with polling([worker(client, queue) for queue in queues]):
            for queue in queues:
                await client.start_workflow(OneSlowStep.run, queue, id=f"held-{queue}", task_queue=queue)
            while len(started) < len(queues):
                await asyncio.sleep(0.05)
            holding.set()
            await leave.wait()  # then the exit: SIGTERM's path

    running = asyncio.create_task(poll_until_told())
    await holding.wait()
    leave.set()
    await asyncio.sleep(0.5)  # the drains are under way: each worker holds a step of 1.5 s
    # Given to the first worker: one after another, it would still be polling while the last drains.
    await client.start_workflow(OneSlowStep.run, "late", id=f"late-{queues[0]}", task_queue=queues[0])
    await running
    assert sorted(finished) == sorted(queues)  # what each held finished in its graceful period
    assert "late" not in started  # no worker took a task after the stop


async def test_a_worker_polls_only_once_the_portal_database_has_its_schema(tmp_path: Path) -> None:
    """A rollout's new worker starts before the migration ran: it waits, and polls once it has run."""
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    previous = f"{int(SCHEMA_HEAD) - 1:04d}"
    command.upgrade(alembic_config(url), previous)
    settings = Settings(environment="test", database_url=url)
    stop = asyncio.Event()
    waiting = asyncio.create_task(schema_ready(settings, stop, every=0.05))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    assert await asyncio.wait_for(waiting, 10) is True
    # Told to stop while it waits: it ends without polling.
    behind = f"sqlite:///{tmp_path / 'behind.db'}"
    command.upgrade(alembic_config(behind), previous)
    stopping = asyncio.Event()
    stopping.set()
    assert (
        await schema_ready(Settings(environment="test", database_url=behind), stopping, every=0.05) is False
    )

"""A worker process stops all its Temporal workers at once on SIGTERM: none takes new tasks while another
drains, and the drains run side by side within one graceful period (the pod's grace period allows one)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workers.main import polling

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
    stop = asyncio.Event()
    late_sent = asyncio.Event()

    async def send_during_the_drain() -> None:
        await stop.wait()
        await asyncio.sleep(0.5)  # the drains are under way
        # Given to the first worker: one after another, it would still be polling while the last drains.
        await client.start_workflow(OneSlowStep.run, "late", id=f"late-{queues[0]}", task_queue=queues[0])
        late_sent.set()

    sender = asyncio.create_task(send_during_the_drain())
    async with polling([worker(client, queue) for queue in queues]):
        for queue in queues:
            await client.start_workflow(OneSlowStep.run, queue, id=f"held-{queue}", task_queue=queue)
        while len(started) < len(queues):
            await asyncio.sleep(0.05)
        stop.set()
        await late_sent.wait()
    await sender
    assert sorted(finished) == sorted(queues)  # what each held finished in its graceful period
    assert "late" not in started  # no worker took a task after the stop

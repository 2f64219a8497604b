"""A worker process killed in the middle of a delivery: after a restart the lead is delivered exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.hub import Hub, environment_of, running_hub, start_worker_process
from tests.support import eventually


async def test_killed_worker_delivers_exactly_once(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, tmp_path: Path
) -> None:
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        worker=False,
        dealer_delivery_attempt_timeout_seconds=4,
        worker_metrics_port=0,
    ) as hub:
        env = {**os.environ, **environment_of(hub.settings)}
        log = tmp_path / "worker.log"
        # The dealer answers slowly, so the kill lands while the request is in flight.
        lead_id = await send_slow_lead(hub, latency_ms=2000)
        worker = start_worker_process(env, log)
        try:
            await delivery_in_flight(hub)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            assert (await hub.lead(lead_id) or {}).get("status") != "delivered"

            worker = start_worker_process(env, log)
            lead = await hub.wait_for_status(lead_id, "delivered", timeout=90)
            await hub.handle(lead_id).result()
        finally:
            worker.kill()
            worker.wait(timeout=10)

        stored = await hub.dealer_leads("rest-mg")
        assert stored["creates_by_external_id"] == {lead_id: 1}
        counters = (await hub.counters())["dealers"]["rest-mg"]
        assert counters["created"] == 1
        assert counters["requests"] >= 2  # the retry really reached the dealer again
        assert lead["dealer_lead_id"] == stored["leads"][0]["id"]


async def test_sigterm_lets_the_running_delivery_finish(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, tmp_path: Path
) -> None:
    """A worker stopped the way compose and Kubernetes stop it (SIGTERM) lets its running activities
    finish (HUB_WORKER_GRACEFUL_SHUTDOWN_SECONDS) instead of cancelling them: the dealer is called once."""
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        worker=False,
        dealer_delivery_attempt_timeout_seconds=10,
        worker_metrics_port=0,
    ) as hub:
        env = {**os.environ, **environment_of(hub.settings)}
        log = tmp_path / "worker.log"
        lead_id = await send_slow_lead(hub, latency_ms=3000)
        worker = start_worker_process(env, log)
        try:
            await delivery_in_flight(hub)
            worker.send_signal(signal.SIGTERM)
            # Waited for off the event loop: the simulated dealer answering the delivery runs on it.
            assert await asyncio.to_thread(worker.wait, 30) == 0  # once the delivery finished
            assert (await hub.counters())["dealers"]["rest-mg"]["created"] == 1

            worker = start_worker_process(env, log)  # the rest of the flow
            await hub.wait_for_status(lead_id, "delivered", timeout=90)
            await hub.handle(lead_id).result()
        finally:
            worker.kill()
            worker.wait(timeout=10)
        counters = (await hub.counters())["dealers"]["rest-mg"]
        assert (counters["requests"], counters["created"]) == (1, 1)  # finished, never cancelled and retried


async def send_slow_lead(hub: Hub, latency_ms: int) -> str:
    """A lead for the MG dealer, whose CRM takes ``latency_ms`` to answer; its webhook sent."""
    await hub.fault(target="rest-mg", latency_ms=latency_ms)
    lead_id = await hub.create_lead(State="MG", City="Betim")
    assert (await hub.post_webhook(lead_id)).status_code == 202
    return lead_id


async def delivery_in_flight(hub: Hub) -> None:
    """Until the MG dealer's CRM has the delivery's request."""

    async def started() -> bool:
        return (await hub.counters())["dealers"].get("rest-mg", {}).get("requests", 0) >= 1

    await eventually(started, timeout=60)

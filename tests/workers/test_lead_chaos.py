"""Chaos: the worker killed with SIGKILL during deliveries, runs terminated and webhooks resent meanwhile.

Whatever happens to the runs, every lead ends at exactly one dealer, created there once: counted by the
dealer simulators, not by the hub.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, session_factory
from db.rules import apply_rules
from tests.hub import Hub, environment_of, running_hub, start_worker_process
from tests.hub import test_rules as routing_rules
from tests.support import eventually

LEADS = 24
KILLS = 3
DEALERS = ("rest-sp-a", "rest-sp-b", "rest-mg", "soap-rj")
PLACES = [("SP", "Santos"), ("MG", "Betim"), ("RJ", "Niterói")]


async def rotate_sao_paulo(hub: Hub) -> None:
    """Both São Paulo dealers at one priority: a lead routed twice would likely reach the other one."""
    rules = routing_rules(hub.sims_url)
    for dealer in rules.dealers:
        if dealer.id.startswith("rest-sp-"):
            dealer.routing.priority = 10
    engine = create_engine(hub.settings.database_url)
    await apply_rules(session_factory(engine), rules)
    await engine.dispose()


async def terminate_some(hub: Hub, lead_ids: list[str], rng: random.Random, count: int) -> int:
    """Terminate up to ``count`` of the leads' runs that are still running; how many were."""
    terminated = 0
    for lead_id in rng.sample(lead_ids, len(lead_ids)):
        if terminated == count:
            break
        handle = hub.handle(lead_id)
        try:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate(reason="support: stuck")
                terminated += 1
        except RPCError:
            continue  # ended meanwhile
    return terminated


async def finished(hub: Hub, lead_id: str) -> bool:
    """The lead's latest run completed (a terminated one is restarted by the next resend)."""
    described = await hub.handle(lead_id).describe()
    return described.status == WorkflowExecutionStatus.COMPLETED


async def test_every_lead_reaches_one_dealer_through_kills_terminates_and_resends(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        worker=False,
        dealer_delivery_attempt_timeout_seconds=4,
        worker_metrics_port=0,
    ) as hub:
        await rotate_sao_paulo(hub)
        for dealer in DEALERS:  # slow enough that kills and terminates land during deliveries
            await hub.fault(target=dealer, latency_ms=800)
        await hub.fault(target="zoho", latency_ms=300)  # and after them, while Zoho is written
        env = {**os.environ, **environment_of(hub.settings)}
        log = tmp_path / "worker.log"
        lead_ids = []
        for n in range(LEADS):
            state, city = PLACES[n % len(PLACES)]
            lead_ids.append(await hub.create_lead(State=state, City=city))
        worker = start_worker_process(env, log)
        terminates = resends = 0
        try:
            await asyncio.gather(*(hub.post_webhook(lead_id) for lead_id in lead_ids))
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(1.0, 2.5))
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                terminates += await terminate_some(hub, lead_ids, rng, 5)
                answers = await asyncio.gather(*(hub.post_webhook(lead_id) for lead_id in lead_ids))
                resends += sum(answer.json()["status"] == "accepted" for answer in answers)
                worker = start_worker_process(env, log)
            for lead_id in lead_ids:
                await eventually(lambda lead_id=lead_id: finished(hub, lead_id), timeout=120, interval=0.5)
        finally:
            worker.kill()
            worker.wait(timeout=10)

        creates: Counter[str] = Counter()
        at: dict[str, str] = {}
        for dealer in DEALERS:
            for lead_id, count in (await hub.dealer_leads(dealer))["creates_by_external_id"].items():
                creates[lead_id] += count
                at[lead_id] = dealer
        portal = {lead_id: (await hub.lead(lead_id) or {}).get("dealer_id") for lead_id in lead_ids}

    assert terminates >= 1 and resends >= 1  # the chaos really happened
    assert {lead_id: creates[lead_id] for lead_id in lead_ids} == dict.fromkeys(lead_ids, 1)
    assert portal == {lead_id: at[lead_id] for lead_id in lead_ids}

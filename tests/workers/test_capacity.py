"""Dealer capacity is reserved with the routing claim: never exceeded by leads fired together at two
worker processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, session_factory
from db.rules import apply_rules
from tests.hub import Hub, environment_of, running_hub, start_worker_process
from tests.hub import test_rules as routing_rules
from tests.support import eventually

LEADS = 30
CAPACITY = {"rest-sp-a": 4, "rest-sp-b": 6}


async def limit_capacity(hub: Hub) -> None:
    rules = routing_rules(hub.sims_url)
    for dealer in rules.dealers:
        if dealer.id in CAPACITY:
            dealer.routing.daily_capacity = CAPACITY[dealer.id]
    engine = create_engine(hub.settings.database_url)
    await apply_rules(session_factory(engine), rules)
    await engine.dispose()


async def decided(hub: Hub, lead_id: str) -> str | None:
    """Where the lead stands once routing is done with it: its dealer, or "waiting" for support."""
    lead = await hub.lead(lead_id)
    if lead is None:
        return None
    if lead["status"] == "delivered":
        return str(lead["dealer_id"])
    return "waiting" if (lead["detail"] or "").startswith("awaiting assign_dealer") else None


async def polling(logs: list[Path]) -> bool | None:
    """Whether each worker process logged that it polls (``worker (all) polling <queue> at ...``)."""
    return all(log.exists() and b") polling " in log.read_bytes() for log in logs) or None


async def accepted(hub: Hub, lead_id: str, patience: float = 60) -> int:
    """The webhook's answer, sent again after each 503 as Zoho does (on a loaded machine Temporal may
    answer part of the burst too late)."""
    answer = await hub.post_webhook(lead_id)
    deadline = asyncio.get_running_loop().time() + patience
    while answer.status_code == 503 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
        answer = await hub.post_webhook(lead_id)
    return answer.status_code


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_leads_fired_together_never_exceed_capacity(
    database: str,
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
) -> None:
    database_url = str(request.getfixturevalue(f"{database}_url"))
    async with running_hub(
        temporal_env.client, database_url, task_queue, worker=False, worker_metrics_port=0
    ) as hub:
        await limit_capacity(hub)
        env = {**os.environ, **environment_of(hub.settings)}
        logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
        workers = [start_worker_process(env, log) for log in logs]
        try:
            lead_ids = [await hub.create_lead(State="SP", City="Santos") for _ in range(LEADS)]
            await eventually(lambda: polling(logs), timeout=60)  # fired together at two polling workers
            answers = await asyncio.gather(*(accepted(hub, lead_id) for lead_id in lead_ids))
            assert answers == [202] * LEADS
            outcomes = [await eventually(lambda i=i: decided(hub, i), timeout=120) for i in lead_ids]
        finally:
            for worker in workers:
                worker.kill()
                worker.wait(timeout=10)
        counters = (await hub.counters())["dealers"]

    assert Counter(outcomes) == {"rest-sp-a": 4, "rest-sp-b": 6, "waiting": LEADS - 10}
    assert {dealer: counters[dealer]["created"] for dealer in CAPACITY} == CAPACITY

"""How fast the API's sweep drains dealer reports left due by a Temporal outage.

    python3 dev.py up                                    # another terminal: the local Temporal
    .venv/bin/python bench/sweep.py --reports 1000

Records ``--reports`` dealer acceptances in a scratch database (a SQLite file, or ``--database URL``)
as if Temporal had been away when they arrived (each due, none handed on), then sweeps them to the
local Temporal as the API's sweep does, once one at a time and once ``SWEEP_CONCURRENCY`` at a time,
each on its own fresh set, and prints reports per second for both and their ratio. The runs they start
go to a task queue no worker polls, and are terminated at the end; the stack's own leads and database
are not touched.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.relay import SWEEP_CONCURRENCY, ReportRelay
from core.constants import LeadStatus, lead_workflow_id
from core.settings import Settings
from core.temporal import connect
from core.timeutil import utcnow
from db import deliveries, feedback
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from db.routing import LeadProfile
from db.rules import RulesFile, apply_rules

DEALER = {
    "id": "sweep-bench",
    "name": "Sweep bench",
    "crm": {"kind": "rest", "url": "http://127.0.0.1:9/crm"},
    "routing": {"states": ["SP"], "daily_capacity": 1_000_000},
    "field_mapping": {"external_id": "id"},
}

LEAD = LeadProfile("SP", "Santos", "Onix")


async def reports_due(sessions: async_sessionmaker[AsyncSession], lead_ids: list[str]) -> None:
    """A delivered lead per id, each with an acceptance whose first hand-over never happened."""
    now = utcnow()
    for lead_id in lead_ids:
        claim = await deliveries.claim_next(
            sessions, lead_id, LeadProfile("SP", "Santos", "Onix"), now.date(), now
        )
        assert claim is not None, "the bench dealer has capacity for every lead"
        await feedback.record(
            sessions,
            lead_id=lead_id,
            dealer_id=claim.dealer_id,
            status=LeadStatus.ACCEPTED,
            at=now,
            received_at=now - feedback.HAND_OVER_GRACE,  # due to the sweep at once
            to_signal=True,
        )


async def sweep_once(
    client: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    count: int,
    concurrency: int,
) -> float:
    """Seconds one sweep took to hand on ``count`` new reports, ``concurrency`` at a time."""
    run = uuid.uuid4().int % 10**12
    lead_ids = [f"9{run:012d}{n:05d}" for n in range(count)]
    await reports_due(sessions, lead_ids)
    sweeper = ReportRelay(client, settings, sessions, sweep_concurrency=concurrency)
    started = time.perf_counter()
    handed = await sweeper.sweep()
    seconds = time.perf_counter() - started
    if handed != count:
        raise SystemExit(f"the sweep handed on {handed} of {count} reports: is Temporal answering?")
    await terminate(client, lead_ids)
    return seconds


async def terminate(client: Client, lead_ids: list[str]) -> None:
    gate = asyncio.Semaphore(32)

    async def one(lead_id: str) -> None:
        async with gate:
            await client.get_workflow_handle(lead_workflow_id(lead_id)).terminate("sweep benchmark")

    await asyncio.gather(*(one(lead_id) for lead_id in lead_ids))


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1, help="sweeps of each kind, alternating (medians)")
    parser.add_argument("--temporal", default="127.0.0.1:7233")
    parser.add_argument(
        "--database", metavar="URL", help="an empty scratch database (default: a SQLite file, removed after)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        await bench(args, args.database or f"sqlite:///{Path(folder) / 'portal.db'}")


async def bench(args: argparse.Namespace, database_url: str) -> None:
    concurrent = SWEEP_CONCURRENCY
    settings = Settings(
        temporal_address=args.temporal, leads_task_queue=f"sweep-bench-{uuid.uuid4().hex[:8]}"
    )
    client = await connect(settings)
    upgrade(database_url)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    await apply_rules(sessions, RulesFile.model_validate({"dealers": [DEALER]}))
    print(f"sweeping {args.reports} reports at a time, database {engine.dialect.name}", flush=True)
    seconds: dict[int, list[float]] = {1: [], concurrent: []}
    try:
        for _ in range(args.rounds):
            for concurrency in (1, concurrent):
                took = await sweep_once(client, settings, sessions, args.reports, concurrency)
                seconds[concurrency].append(took)
                print(f"  {concurrency:2d} at a time: {args.reports} reports in {took:.1f} s", flush=True)
    finally:
        await engine.dispose()
    one, many = (statistics.median(seconds[c]) for c in (1, concurrent))
    print(f"one at a time          {args.reports / one:7.1f} reports/s")
    print(f"{concurrent} at a time          {args.reports / many:7.1f} reports/s   ({one / many:.1f} x)")


if __name__ == "__main__":
    asyncio.run(main())

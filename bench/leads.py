"""Lead distribution benchmark against the running local stack (``python3 dev.py up``).

    .venv/bin/python bench/leads.py --count 500 --rate 50

Sends N Zoho lead webhooks at a fixed rate and prints: accepted per second, acknowledgement latency
p50/p99, leads delivered end to end per second, each hub process's resident and peak memory, and the
rate of a skeleton workflow with as many no-op activities as a delivered lead's history scheduled (counted
from that history, not assumed), on the same Temporal server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import print_memory
from bench.skeleton import SkeletonInput, SkeletonWorkflow, no_op
from core.settings import Settings
from core.temporal import connect

T = TypeVar("T")
ENDED = ("delivered", "awaiting_assignment", "unrouted", "failed")


@dataclass
class Ack:
    status: int
    seconds: float


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def activities_per_delivered_lead(client: Client, since: str, sample: int = 20) -> int:
    """How many activities a delivered lead's history scheduled: the median over ``sample`` leads
    delivered since ``since`` (a lead whose first dealer refuses it runs more)."""
    query = f"WorkflowType = 'LeadDistributionWorkflow' AND StartTime >= '{since}'"
    query += " AND LeadStatus = 'delivered'"
    scheduled = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    counts = []
    async for execution in client.list_workflows(query, limit=sample):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        counts.append(sum(1 for event in history.events if event.event_type == scheduled))
    if not counts:
        raise RuntimeError("no lead was delivered: nothing to count the activities of")
    return round(statistics.median(counts))


async def paced(count: int, rate: float, send: Callable[[int], Awaitable[T]]) -> list[T]:
    """Start ``send(i)`` at i/rate seconds (open loop: slow answers do not slow the sender)."""
    started = time.perf_counter()
    tasks = []
    for i in range(count):
        if rate > 0:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    return await asyncio.gather(*tasks)


async def create_leads(http: httpx.AsyncClient, sims: str, count: int) -> list[str]:
    # Four in five go to São Paulo, where the example dealers have the most daily capacity.
    places = [("SP", "São Paulo")] * 4 + [("RJ", "Rio de Janeiro")]
    ids: list[str] = []
    for i in range(count):
        state, city = places[i % len(places)]
        body = {"State": state, "City": city, "Modelo_de_Interesse": "Onix"}
        response = await http.post(f"{sims}/_control/zoho/leads", json=body)
        response.raise_for_status()
        ids.append(str(response.json()["lead"]["id"]))
    return ids


async def outcomes(client: Client, since: str) -> dict[str, int]:
    """How many lead workflows started since ``since`` are in each status (visibility query)."""
    base = f"WorkflowType = 'LeadDistributionWorkflow' AND StartTime >= '{since}'"
    counts = {}
    for status in ENDED:
        counts[status] = (await client.count_workflows(f"{base} AND LeadStatus = '{status}'")).count
    return counts


async def bench_leads(
    args: argparse.Namespace, settings: Settings, client: Client
) -> tuple[list[Ack], float, dict[str, int], str]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        lead_ids = await create_leads(http, args.sims, args.count)
        headers = {settings.zoho_webhook_secret_header: settings.zoho_webhook_secret.get_secret_value()}

        async def send(i: int) -> Ack:
            started = time.perf_counter()
            response = await http.post(
                f"{args.api}/webhooks/zoho/leads", data={"lead_id": lead_ids[i]}, headers=headers
            )
            return Ack(response.status_code, time.perf_counter() - started)

        since = datetime.now(UTC).isoformat()
        first_sent = time.perf_counter()
        acks = await paced(args.count, args.rate, send)
    # A lead has ended its run here when delivered, given up, or waiting for support's decision.
    deadline = time.perf_counter() + args.timeout
    while time.perf_counter() < deadline:
        counts = await outcomes(client, since)
        if sum(counts.values()) >= args.count:
            break
        await asyncio.sleep(0.5)
    return acks, time.perf_counter() - first_sent, counts, since


async def bench_skeleton(args: argparse.Namespace, client: Client, activities: int) -> float:
    task_queue = f"bench-skeleton-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[SkeletonWorkflow], activities=[no_op]):
        first = time.perf_counter()

        async def start(i: int) -> None:
            await client.execute_workflow(
                SkeletonWorkflow.run, SkeletonInput(activities), id=f"{task_queue}-{i}", task_queue=task_queue
            )

        await paced(args.count, args.rate, start)
        return time.perf_counter() - first


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument(
        "--rate", type=float, default=50.0, help="webhooks per second; 0 = as fast as possible"
    )
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--sims", default="http://127.0.0.1:8100")
    parser.add_argument("--temporal", default="127.0.0.1:7233")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the leads to finish")
    parser.add_argument("--no-skeleton", action="store_true", help="skip the skeleton comparison")
    args = parser.parse_args()

    settings = Settings()
    client = await connect(Settings(temporal_address=args.temporal))
    print(f"Sending {args.count} lead webhooks at {args.rate or 'max'}/s to {args.api} ...", flush=True)
    acks, end_to_end, counts, since = await bench_leads(args, settings, client)
    latencies = [a.seconds for a in acks]
    accepted = sum(1 for a in acks if a.status == 202)
    send_window = max(args.count / args.rate if args.rate else 0, max(latencies))
    print(f"accepted              {accepted}/{args.count} ({accepted / send_window:.1f}/s)")
    print(
        f"ack latency           p50 {percentile(latencies, 50) * 1000:.1f} ms   "
        f"p99 {percentile(latencies, 99) * 1000:.1f} ms   max {max(latencies) * 1000:.1f} ms"
    )
    delivered = counts["delivered"]
    lead_rate = delivered / end_to_end
    print(
        f"delivered end to end  {delivered} in {end_to_end:.1f} s ({lead_rate:.1f} leads/s); others: "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "delivered")
    )
    print_memory()
    if not args.no_skeleton:
        activities = await activities_per_delivered_lead(client, since)
        skeleton = await bench_skeleton(args, client, activities)
        skeleton_rate = args.count / skeleton
        print(
            f"skeleton workflows    {args.count} in {skeleton:.1f} s ({skeleton_rate:.1f}/s, "
            f"{activities} no-op activities each: the median a delivered lead's history scheduled)"
        )
        print(f"end-to-end / skeleton {lead_rate / skeleton_rate:.2f}")


if __name__ == "__main__":
    asyncio.run(main())

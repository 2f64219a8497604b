"""Opportunity replication benchmark against the running local stack (``python3 dev.py up``).

    .venv/bin/python bench/opportunities.py --deals 100 --updates 5 --rate 50

Sends ``updates`` stage changes for each of ``deals`` deals, interleaved, at a fixed rate, and prints
acknowledgement latency p50/p99 and how many updates per second reached the central database.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.clients import bench_client
from bench.leads import paced, percentile
from core.settings import Settings

STAGES = [
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Proposal/Price Quote",
    "Negotiation/Review",
]


async def create_deals(http: httpx.AsyncClient, sims: str, count: int) -> list[str]:
    ids = []
    # Last modified a day ago: the changes the benchmarks send are newer than Zoho's record, as the
    # rule's own webhooks are (the hub keeps a record newer than a webhook as the deal's state).
    modified = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()
    for _ in range(count):
        response = await http.post(f"{sims}/_control/zoho/deals", json={"Modified_Time": modified})
        response.raise_for_status()
        ids.append(str(response.json()["deal"]["id"]))
    return ids


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deals", type=int, default=100)
    parser.add_argument("--updates", type=int, default=5, help="stage changes per deal")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="webhooks per second; 0 = as fast as possible"
    )
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--sims", default="http://127.0.0.1:8100")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    settings = Settings()
    secret = {settings.zoho_webhook_secret_header: settings.zoho_webhook_secret.get_secret_value()}
    auth = {"Authorization": f"Bearer {settings.read_api_token.get_secret_value()}"}
    base = datetime.now(UTC).replace(microsecond=0)

    async with bench_client(200) as http:
        deal_ids = await create_deals(http, args.sims, args.deals)
        updates = [
            {
                "deal_id": deal_id,
                "stage": STAGES[n % len(STAGES)],
                "modified_time": (base + timedelta(seconds=n)).isoformat(),
                "modified_by": "bench",
            }
            for n in range(args.updates)
            for deal_id in deal_ids
        ]
        random.Random(1).shuffle(updates)  # interleaved and out of order
        total = len(updates)
        print(f"Sending {total} updates of {args.deals} deals at {args.rate or 'max'}/s ...", flush=True)

        async def send(i: int) -> tuple[int, float]:
            started = time.perf_counter()
            response = await http.post(
                f"{args.api}/webhooks/zoho/opportunities", data=updates[i], headers=secret
            )
            return response.status_code, time.perf_counter() - started

        first = time.perf_counter()
        results = await paced(total, args.rate, send)
        last_time = base + timedelta(seconds=args.updates - 1)
        remaining = set(deal_ids)
        while remaining and time.perf_counter() - first < args.timeout:
            for deal_id in list(remaining):
                response = await http.get(f"{args.api}/v1/opportunities/{deal_id}", headers=auth)
                if (
                    response.status_code == 200
                    and datetime.fromisoformat(response.json()["modified_time"]) >= last_time
                ):
                    remaining.discard(deal_id)
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - first

    latencies = [seconds for _, seconds in results]
    accepted = sum(1 for status, _ in results if status == 202)
    print(f"accepted              {accepted}/{total}")
    print(f"ack latency           p50 {percentile(latencies, 50) * 1000:.1f} ms   "
          f"p99 {percentile(latencies, 99) * 1000:.1f} ms   max {max(latencies) * 1000:.1f} ms")  # fmt: skip
    done = args.deals - len(remaining)
    print(f"deals up to date      {done}/{args.deals} after {elapsed:.1f} s")
    print(f"updates applied       {total / elapsed:.1f}/s (first send until every deal is current)")


if __name__ == "__main__":
    asyncio.run(main())

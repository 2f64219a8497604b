"""VTEX order benchmark against the running local stack (``python3 dev.py up``).

    .venv/bin/python bench/orders.py --orders 300 --rate 50 [--timeline 2]

Creates ``orders`` orders in the VTEX simulator and moves each through three states with hooks held
back, then sends those hooks to the API itself, interleaved, at a fixed rate. Prints hook
acknowledgement p50/p99; orders landed per second (every state change and the final version in
bronze) against orders sent per second (goal: at least 0.95 of it); and hook-to-bronze latency p50/p99
(the hook's send time until its state change is a row in ``bronze.vtex_order_events``; goal: p99 at
most 5 s); and the CPU seconds each local-stack process used from the first hook until all landed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.cloud.bigquery import ScalarQueryParameter

from bench.clients import bench_client
from bench.cpu import CpuWindow
from bench.leads import paced, percentile
from bench.memory import print_memory
from core.settings import Settings
from core.vtex import change_key, order_event_key
from warehouse.errors import WarehouseUnavailable
from warehouse.landing import Warehouse
from warehouse.tables import VTEX_ORDER_EVENTS, VTEX_ORDERS

STATES = ["payment-approved", "ready-for-handling", "invoiced"]


async def held_hooks(http: httpx.AsyncClient, sims: str, count: int) -> list[dict[str, Any]]:
    """Orders moved through STATES in the simulator; their hooks, not yet delivered."""
    hooks: list[dict[str, Any]] = []
    for _ in range(count):
        created = await http.post(f"{sims}/_control/vtex/orders", json={})
        created.raise_for_status()
        order_id = created.json()["order"]["orderId"]
        url = f"{sims}/_control/vtex/orders/{order_id}/states"
        (await http.post(url, json={"states": STATES, "delivery": "none"})).raise_for_status()
        shown = await http.get(f"{sims}/_control/vtex/orders/{order_id}")
        hooks += shown.json()["hooks"]
    return hooks


async def landed_rows(warehouse: Warehouse, table: str, since: datetime) -> list[dict[str, Any]]:
    try:
        return await warehouse.query(
            # Only what the figures need: polling must not load the emulator it measures.
            f"select event_key, entity_id, ingested_at, json_value(payload, '$.status') as status"
            f" from `{warehouse.table_id(warehouse.layers.bronze, table)}` where ingested_at >= @since",
            [ScalarQueryParameter("since", "TIMESTAMP", since)],
        )
    except WarehouseUnavailable:
        return []


def completion_times(
    final: dict[str, datetime], landed_at: dict[str, datetime], order_of: dict[str, str]
) -> dict[str, datetime]:
    """When each order was wholly in bronze: its final version and every state change sent for it."""
    keys: dict[str, list[str]] = {}
    for key, order_id in order_of.items():
        keys.setdefault(order_id, []).append(key)
    return {
        order_id: max([at, *(landed_at[key] for key in keys.get(order_id, []))])
        for order_id, at in final.items()
        if all(key in landed_at for key in keys.get(order_id, []))
    }


def first_final_versions(versions: list[dict[str, Any]]) -> dict[str, datetime]:
    """When each order's final state first reached bronze."""
    final: dict[str, datetime] = {}
    for row in versions:
        if row["status"] == STATES[-1]:
            order_id = row["entity_id"]
            final[order_id] = min(row["ingested_at"], final.get(order_id, row["ingested_at"]))
    return final


def print_timeline(
    sent_at: dict[str, datetime], landed_at: dict[str, datetime], since: datetime, window: float
) -> None:
    """Hook-to-bronze by when the hook was sent: shows whether a slow tail is steady or one stall."""
    windows: dict[int, list[float]] = {}
    for key, sent in sent_at.items():
        if key in landed_at:
            index = int((sent - since).total_seconds() // window)
            windows.setdefault(index, []).append((landed_at[key] - sent).total_seconds())
    for index, delays in sorted(windows.items()):
        print(f"  sent {index * window:5.0f}-{(index + 1) * window:<5.0f}s  {len(delays):4d} hooks   "
              f"p50 {percentile(delays, 50):6.2f} s   p99 {percentile(delays, 99):6.2f} s")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="hooks per second; 0 = as fast as possible")
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--sims", default="http://127.0.0.1:8100")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--timeline", type=float, default=0, metavar="SECONDS",
        help="also print hook-to-bronze p50/p99 of the hooks sent in each window of this many seconds",
    )  # fmt: skip
    args = parser.parse_args()
    settings = Settings()
    headers = {settings.vtex_hook_secret_header: settings.vtex_hook_secret.get_secret_value()}
    warehouse = Warehouse.from_settings(settings)
    async with bench_client(200) as http:
        hooks = await held_hooks(http, args.sims, args.orders)
        random.Random(1).shuffle(hooks)  # interleaved, and each order's hooks out of order
        sent_at: dict[str, datetime] = {}
        order_of: dict[str, str] = {}  # event key -> order id
        print(f"Sending {len(hooks)} hooks of {args.orders} orders at {args.rate or 'max'}/s ...", flush=True)
        since = datetime.now(UTC)

        def key_of(hook: dict[str, Any]) -> str:
            return order_event_key(hook["OrderId"], hook["State"], change_key(hook["CurrentChange"]))

        async def send(i: int) -> tuple[int, float]:
            status, seconds = await post(hooks[i])
            if status != 200:  # refused (503: VTEX sends it again, the reconciler finds it): not awaited
                sent_at.pop(key_of(hooks[i]), None)
            return status, seconds

        async def post(hook: dict[str, Any]) -> tuple[int, float]:
            key = key_of(hook)
            sent_at.setdefault(key, datetime.now(UTC))
            order_of[key] = hook["OrderId"]
            started = time.perf_counter()
            try:
                response = await http.post(f"{args.api}/webhooks/vtex/orders", json=hook, headers=headers)
            except httpx.TransportError:
                return 0, time.perf_counter() - started  # counted as not accepted
            return response.status_code, time.perf_counter() - started

        first = time.perf_counter()
        cpu = CpuWindow.start()
        results = await paced(len(hooks), args.rate, send)
        sending = time.perf_counter() - first

    final: dict[str, datetime] = {}
    landed_keys: set[str] = set()
    events: list[dict[str, Any]] = []
    # Done when every order's final version and every state change taken (late, older ones too) is in
    # bronze.
    while (len(final) < args.orders or not landed_keys >= sent_at.keys()) and (
        time.perf_counter() - first < args.timeout
    ):
        # Each read returns every row landed since the start: reading often loads the emulator (and this
        # process) enough to slow what is measured; the latencies come from the rows' own ingested_at.
        await asyncio.sleep(5)
        final = first_final_versions(await landed_rows(warehouse, VTEX_ORDERS, since))
        events = await landed_rows(warehouse, VTEX_ORDER_EVENTS, since)
        landed_keys = {row["event_key"] for row in events}
    await warehouse.aclose()
    cpu.print()  # from the first hook until all landed: which process the time went to

    latencies = [seconds for _, seconds in results]
    accepted = sum(1 for status, _ in results if status == 200)
    print(f"accepted              {accepted}/{len(hooks)}")
    print(f"ack latency           p50 {percentile(latencies, 50) * 1000:.1f} ms   "
          f"p99 {percentile(latencies, 99) * 1000:.1f} ms   max {max(latencies) * 1000:.1f} ms")  # fmt: skip
    first_landing: dict[str, datetime] = {}
    for row in events:
        key = row["event_key"]
        first_landing[key] = min(row["ingested_at"], first_landing.get(key, row["ingested_at"]))
    complete = completion_times(final, first_landing, order_of)
    if complete:
        span = (max(complete.values()) - since).total_seconds()
        landed_rate, sent_rate = len(complete) / span, args.orders / sending
        print(f"orders landed         {len(complete)}/{args.orders} in {span:.1f} s, {landed_rate:.1f} "
              f"orders/s (first hook until every state change and final version is in bronze)")  # fmt: skip
        print(f"keeps up              {landed_rate / sent_rate:.2f} x the {sent_rate:.1f} orders/s sent "
              f"in {sending:.1f} s (goal >= 0.95)")  # fmt: skip
    delays = [(first_landing[k] - sent).total_seconds() for k, sent in sent_at.items() if k in first_landing]
    if delays:
        p50, p99 = percentile(delays, 50), percentile(delays, 99)
        print(f"hook to bronze        p50 {p50:.2f} s   p99 {p99:.2f} s (goal p99 <= 5 s; "
              f"{len(delays)}/{len(sent_at)} state changes landed)")  # fmt: skip
    if args.timeline and delays:
        print_timeline(sent_at, first_landing, since, args.timeline)
    print_memory()


if __name__ == "__main__":
    asyncio.run(main())

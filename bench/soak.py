"""Soak benchmark: mixed traffic for a long time against the running local stack, watching memory and errors.

    .venv/bin/python bench/soak.py --write-rules var/soak-dealers.yaml    # the example dealers, room for all
    python3 dev.py up --rules var/soak-dealers.yaml                        # a fresh stack (new --state-dir)
    .venv/bin/python bench/soak.py --minutes 30

Sends, open loop, lead webhooks (5/s), deal changes (2/s) and VTEX order hooks (10/s); triggers a
customer sync at a third of the run and starts an order backfill at half of it. Every minute it prints
each hub process's resident memory, each worker's threads, the runs each worker keeps in its cache per
task queue (the SDK's ``temporal_sticky_cache_size``, up to ``HUB_WORKER_MAX_CACHED_WORKFLOWS`` each,
``vtex-orders`` up to ``HUB_WORKER_MAX_CACHED_ORDER_WORKFLOWS``) with the workflow tasks that hit and
missed it, and, per stream, what was sent, acknowledged, refused with 503 and failed otherwise. At the
end it waits for the work to drain and checks that nothing acknowledged is missing: every lead ended
delivered, every deal holds its last change, every order hook's state change is a row in bronze. Goals:
no process grows more than 10 % after the first 5 minutes, no error, nothing missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from google.cloud.bigquery import ScalarQueryParameter
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.clients import bench_client
from bench.memory import hub_processes
from bench.opportunities import STAGES, create_deals
from bench.orders import held_hooks
from bench.rules import example_rules, write_rules
from cli.times import moment
from contracts.schedules import VTEX_CUSTOMER_SYNC, trigger_run
from core.constants import lead_workflow_id
from core.settings import Settings
from core.temporal import connect
from core.vtex import change_key, order_event_key
from devstack.stack import Ports
from warehouse.landing import Warehouse
from warehouse.tables import VTEX_ORDER_EVENTS
from workflows.vtex_order_backfill import OrderBackfillInput, start_order_backfill

PLACES = [("SP", "São Paulo")] * 4 + [("RJ", "Rio de Janeiro")]
DEAL_POOL = 200
HOOKS_AHEAD = 300  # order hooks made ready before they are sent
GROWTH_GOAL = 0.10
# The SDK's cache figures per task queue: the runs it holds, and the workflow tasks that found their run
# there (hits, a series per workflow type) or had to replay its history (misses).
CACHE_FIGURES = re.compile(
    r'^temporal_sticky_cache_(size|hit|miss)\{[^}]*task_queue="([^"]+)"[^}]*\} (\S+)$', re.MULTILINE
)


@dataclass
class Stream:
    """One kind of traffic: what was sent and how it was answered."""

    name: str
    rate: float
    answers: Counter[str] = field(default_factory=Counter)
    accepted: list[Any] = field(default_factory=list)  # what each acknowledged request promised

    def record(self, status: int | None, promise: Any) -> None:
        if status is not None and 200 <= status < 300:
            self.answers["ok"] += 1
            self.accepted.append(promise)
        elif status == 503:
            self.answers["503"] += 1
        else:
            self.answers["error"] += 1

    def line(self) -> str:
        sent = sum(self.answers.values())
        answers = self.answers
        return f"{self.name} {sent} sent, {answers['ok']} ok, {answers['503']} 503, {answers['error']} errors"


def write_soak_rules(path: Path) -> None:
    """The example dealers with a daily capacity that covers any soak, and no SLA: nobody accepts the
    soak's leads, which would otherwise move from dealer to dealer as their SLAs pass."""
    rules = example_rules()
    for dealer in rules["dealers"]:
        dealer["routing"]["daily_capacity"] = 1_000_000
        dealer.pop("sla", None)
    write_rules(path, rules)


async def post(http: httpx.AsyncClient, url: str, **kwargs: Any) -> int | None:
    try:
        return (await http.post(url, **kwargs)).status_code
    except httpx.HTTPError:
        return None


async def open_loop(stream: Stream, seconds: float, send: Callable[[int], Awaitable[None]]) -> None:
    """Start ``send(i)`` at i / rate seconds until ``seconds`` are over; slow answers do not slow it.

    A send that raises (the simulator refused to make its record, no hook came) counts as an error.
    """

    async def guarded(i: int) -> None:
        try:
            await send(i)
        except Exception as error:
            if not stream.answers["error"]:
                print(f"{stream.name}: first error: {type(error).__name__}: {error}", flush=True)
            stream.answers["error"] += 1

    started, tasks = time.perf_counter(), set()
    for i in range(int(seconds * stream.rate)):
        delay = started + i / stream.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(guarded(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)


class Soak:
    def __init__(self, args: argparse.Namespace, settings: Settings, http: httpx.AsyncClient) -> None:
        self.args, self.settings, self.http = args, settings, http
        self.leads = Stream("leads", args.lead_rate)
        self.deals = Stream("deal changes", args.deal_rate)
        self.orders = Stream("order hooks", args.order_rate)
        self.zoho_secret = {
            settings.zoho_webhook_secret_header: settings.zoho_webhook_secret.get_secret_value()
        }
        self.vtex_secret = {settings.vtex_hook_secret_header: settings.vtex_hook_secret.get_secret_value()}
        self.base_time = datetime.now(UTC).replace(microsecond=0)
        self.deal_ids: list[str] = []
        self.hooks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send_lead(self, i: int) -> None:
        state, city = PLACES[i % len(PLACES)]
        body = {"State": state, "City": city, "Modelo_de_Interesse": "Onix"}
        created = await self.http.post(f"{self.args.sims}/_control/zoho/leads", json=body)
        lead_id = str(created.json()["lead"]["id"])
        url = f"{self.args.api}/webhooks/zoho/leads"
        self.leads.record(
            await post(self.http, url, data={"lead_id": lead_id}, headers=self.zoho_secret), lead_id
        )

    async def send_deal_change(self, i: int) -> None:
        deal_id = self.deal_ids[i % len(self.deal_ids)]
        # When the change is due to be sent: later changes are newer, whatever the order they arrive in,
        # and none is ahead of the hub's clock (the API leaves out a time more than 5 minutes ahead).
        modified = self.base_time + timedelta(seconds=i / self.args.deal_rate)
        change = {
            "deal_id": deal_id,
            "stage": STAGES[(i // len(self.deal_ids)) % len(STAGES)],
            "modified_time": modified.isoformat(),
            "modified_by": "soak",
        }
        url = f"{self.args.api}/webhooks/zoho/opportunities"
        self.deals.record(
            await post(self.http, url, data=change, headers=self.zoho_secret), (deal_id, modified)
        )

    async def make_orders(self, seconds: float) -> None:
        """Keep the queue of held hooks full: orders moved through their states in the simulator."""
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            if self.hooks.qsize() >= HOOKS_AHEAD:  # the senders have enough: never block past the deadline
                await asyncio.sleep(0.1)
                continue
            for hook in await held_hooks(self.http, self.args.sims, 1):
                self.hooks.put_nowait(hook)

    async def send_order_hook(self, _: int) -> None:
        hook = await asyncio.wait_for(self.hooks.get(), timeout=30)  # the simulator fell behind: an error
        url = f"{self.args.api}/webhooks/vtex/orders"
        key = order_event_key(
            hook["OrderId"], hook["State"], change_key(hook.get("CurrentChange") or hook["LastChange"])
        )
        self.orders.record(await post(self.http, url, json=hook, headers=self.vtex_secret), key)

    async def long_jobs(self, client: Client, seconds: float) -> None:
        """A customer sync at a third of the run, an order backfill at half of it."""
        await asyncio.sleep(seconds / 3)
        workflow_id, started = await trigger_run(client, VTEX_CUSTOMER_SYNC)
        print(
            f"customer sync         {workflow_id} ({'started' if started else 'already running'})", flush=True
        )
        await asyncio.sleep(seconds / 2 - seconds / 3)
        params = OrderBackfillInput.for_range(
            self.settings,
            moment(self.args.backfill_since),
            moment(self.args.backfill_until, end_of_day=True),
            20.0,
        )
        try:
            handle = await start_order_backfill(client, self.settings, params)
        except WorkflowAlreadyStartedError:
            print("order backfill        that range is being backfilled already: not started", flush=True)
            return
        print(f"order backfill        {handle.id} started", flush=True)

    async def report(
        self, minute: int, memory: dict[tuple[str, int], list[float]], cached: dict[str, list[int]]
    ) -> None:
        processes = hub_processes()
        for process in processes:
            memory.setdefault((process.kind, process.pid), []).append(process.rss_mib)
        threads = ", ".join(f"{p.kind} {p.threads}" for p in processes if p.kind.startswith("worker"))
        figures = await self.cache_figures()
        for queue, counts in figures.items():
            cached.setdefault(queue, []).append(counts["size"])
        rss = ", ".join(f"{kind} {values[-1]:.0f}" for (kind, _), values in sorted(memory.items()))
        cache_line = ", ".join(
            f"{queue} {counts['size']} ({counts['hit']} hits, {counts['miss']} misses)"
            for queue, counts in sorted(figures.items())
        )
        streams = "; ".join(stream.line() for stream in (self.leads, self.deals, self.orders))
        lines = [
            f"min {minute:3d}  RSS MiB: {rss}",
            f"threads: {threads}",
            f"cached runs: {cache_line}",
            streams,
        ]
        print(("\n" + " " * 9).join(lines), flush=True)

    async def cache_figures(self) -> dict[str, Counter[str]]:
        """Per task queue, the runs the local workers keep in their caches and the workflow tasks that
        hit or missed them since the workers started, from their metrics endpoints."""
        ports = Ports()
        token = self.settings.metrics_token.get_secret_value()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        found: dict[str, Counter[str]] = {}
        for port in (ports.worker_metrics, ports.warehouse_worker_metrics):
            with contextlib.suppress(httpx.HTTPError):
                text = (await self.http.get(f"http://127.0.0.1:{port}/metrics", headers=headers)).text
                for figure, queue, value in CACHE_FIGURES.findall(text):
                    found.setdefault(queue, Counter())[figure] += int(float(value))
        return found


async def missing_leads(client: Client, since: str, accepted: list[str]) -> int:
    """Acknowledged leads whose workflow has not delivered them (yet)."""
    query = (
        f"WorkflowType = 'LeadDistributionWorkflow' AND StartTime >= '{since}' AND LeadStatus = 'delivered'"
    )
    delivered = {execution.id async for execution in client.list_workflows(query)}
    return len({lead_workflow_id(lead_id) for lead_id in accepted} - delivered)


async def missing_deal_changes(
    http: httpx.AsyncClient, api: str, token: str, accepted: list[tuple[str, datetime]]
) -> int:
    latest: dict[str, datetime] = {}
    for deal_id, modified in accepted:
        latest[deal_id] = max(modified, latest.get(deal_id, modified))
    behind = 0
    for deal_id, modified in latest.items():
        response = await http.get(
            f"{api}/v1/opportunities/{deal_id}", headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code != 200 or datetime.fromisoformat(response.json()["modified_time"]) < modified:
            behind += 1
    return behind


async def missing_order_events(settings: Settings, since: datetime, accepted: list[str]) -> int:
    warehouse = Warehouse.from_settings(settings)
    events = warehouse.table_id(warehouse.layers.bronze, VTEX_ORDER_EVENTS)
    try:
        rows = await warehouse.query(
            f"select distinct event_key from `{events}` where ingested_at >= @since",
            [ScalarQueryParameter("since", "TIMESTAMP", since)],
        )
    finally:
        await warehouse.aclose()
    landed = {row["event_key"] for row in rows}
    return len(set(accepted) - landed)


async def drained(check: Callable[[], Awaitable[int]], patience: float) -> int:
    """What ``check`` still misses once it reaches 0 or ``patience`` seconds pass (polled every 5 s)."""
    deadline = time.perf_counter() + patience
    missing = await check()
    while missing and time.perf_counter() < deadline:
        await asyncio.sleep(5)
        missing = await check()
    return missing


def growth(memory: dict[tuple[str, int], list[float]], warm_minutes: int) -> list[str]:
    lines = []
    for (kind, pid), values in sorted(memory.items()):
        if len(values) <= warm_minutes:
            continue
        warm, peak = values[warm_minutes - 1], max(values[warm_minutes - 1 :])
        grown = (peak - warm) / warm if warm else 0.0
        verdict = "ok" if grown <= GROWTH_GOAL else "OVER"
        lines.append(f"{kind:<16} pid {pid:<7} {warm:5.0f} MiB at min {warm_minutes} -> max {peak:5.0f} MiB"
                     f" (+{grown * 100:.1f} %) {verdict}")  # fmt: skip
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write-rules", type=Path, metavar="PATH", help="write the soak's dealers and exit")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--lead-rate", type=float, default=5.0)
    parser.add_argument("--deal-rate", type=float, default=2.0)
    parser.add_argument("--order-rate", type=float, default=10.0)
    parser.add_argument("--backfill-since", default="2024-11-01")
    parser.add_argument("--backfill-until", default="2026-10-31")
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--sims", default="http://127.0.0.1:8100")
    parser.add_argument("--drain-timeout", type=float, default=600)
    args = parser.parse_args()
    if args.write_rules:
        write_soak_rules(args.write_rules)
        return
    settings = Settings()
    client = await connect(settings)
    seconds = args.minutes * 60
    async with bench_client(200) as http:
        soak = Soak(args, settings, http)
        soak.deal_ids = await create_deals(http, args.sims, DEAL_POOL)
        since = datetime.now(UTC)
        print(f"Soaking for {args.minutes:g} min: leads {args.lead_rate}/s, deal changes {args.deal_rate}/s, "
              f"order hooks {args.order_rate}/s ...", flush=True)  # fmt: skip
        memory: dict[tuple[str, int], list[float]] = {}
        cached: dict[str, list[int]] = {}
        traffic = [
            open_loop(soak.leads, seconds, soak.send_lead),
            open_loop(soak.deals, seconds, soak.send_deal_change),
            open_loop(soak.orders, seconds, soak.send_order_hook),
            soak.make_orders(seconds + 5),
            soak.long_jobs(client, seconds),
        ]
        running = asyncio.gather(*traffic)
        minute = 0
        while not running.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(running), timeout=60)
            minute += 1
            await soak.report(minute, memory, cached)
        await running
        print("Traffic over; waiting for the work to drain ...", flush=True)
        token = settings.read_api_token.get_secret_value()
        missing = {
            "leads not delivered": await drained(
                lambda: missing_leads(client, since.isoformat(), soak.leads.accepted), args.drain_timeout
            ),
            "deals behind their last change": await drained(
                lambda: missing_deal_changes(http, args.api, token, soak.deals.accepted), args.drain_timeout
            ),
            "order changes not in bronze": await drained(
                lambda: missing_order_events(settings, since, soak.orders.accepted), args.drain_timeout
            ),
        }
    print("\nmemory growth after the first 5 minutes (goal: at most 10 %)")
    for line in growth(memory, 5):
        print("  " + line)
    print("cached runs per task queue at min 5 -> max (a full cache is the worker's working set, not a leak)")
    for queue, values in sorted(cached.items()):
        if len(values) > 5:
            print(f"  {queue:<16} {values[4]:5d} -> {max(values[4:]):5d}")
    print("answers")
    for stream in (soak.leads, soak.deals, soak.orders):
        print("  " + stream.line())
    print("nothing acknowledged missing")
    for what, count in missing.items():
        print(f"  {what:<32} {count}")


if __name__ == "__main__":
    asyncio.run(main())

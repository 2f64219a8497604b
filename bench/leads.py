"""Lead distribution benchmark against the running local stack (``python3 dev.py up``).

    .venv/bin/python bench/leads.py --count 500 --rate 50

    .venv/bin/python bench/leads.py --write-sla-rules var/bench-sla-dealers.yaml
    python3 dev.py up --rules var/bench-sla-dealers.yaml        # in another terminal
    .venv/bin/python bench/leads.py --count 5000 --rate 50 --accept-after 0 --no-skeleton

With ``--accept-after``, every dealer has a 60-minute SLA: the leads wait for acceptance, the worker's
memory is read with all of them waiting, then the dealers accept them (each acceptance is the dealer's
status webhook, fired by the simulator) and the bench prints how fast acceptances close the leads' runs
and how long after its acceptance (the dealer CRM's call to the hub) each lead reads ``accepted`` at
``GET /v1/leads/{id}``. The dealers accept as fast as 50 at a time allow (a closed loop: with 50 under
way, each waits for the others, so its time is about 50 / the rate), or ``--accept-rate`` a second (an
open loop: each time counts from the lead's turn, so a stack that falls behind shows in the p99).
An acceptance that fails (a connection cut, the hub answering the dealer other than 200) is not timed:
it is counted and printed with why.

Sends N Zoho lead webhooks at a fixed rate and prints: accepted per second, acknowledgement latency
p50/p99, leads delivered end to end per second, each hub process's resident and peak memory, and the
rate of a skeleton workflow with as many no-op activities and local activities as a delivered lead's
history recorded (counted from that history, not assumed), on the same Temporal server, its worker on
the event loop the hub's workers run on (``HUB_WORKER_EVENT_LOOP``).

With ``--partner-latency-ms N`` (and ``--no-skeleton``), Zoho and the example dealers answer N ms later
for the run, as partners far away do (the simulators' latency fault): the worker's concurrency then
matters more than its CPU.

With ``--to-bronze K``, it then follows K of the delivered leads into the warehouse: how long after
the portal recorded each one's ``delivered`` its row is in bronze ``lead_status_changes`` (the lead
warehouse sync's schedule lands it; the goal is 5 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
from google.cloud.bigquery import ArrayQueryParameter
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.clients import bench_client
from bench.cpu import CpuWindow, print_shares
from bench.memory import print_memory
from bench.quiet import warehouse_paused
from bench.rules import example_dealer_ids, example_rules, write_rules
from bench.skeleton import SkeletonInput, SkeletonWorkflow, no_op
from core.settings import Settings
from core.temporal import LOCAL_ACTIVITY_MARKER, connect
from simulators.faults import FaultSpec
from warehouse.landing import Warehouse
from warehouse.tables import LEAD_STATUS_CHANGES, day_start
from workers.main import run_on

SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
MARKER = EventType.EVENT_TYPE_MARKER_RECORDED

T = TypeVar("T")
# A lead at a dealer with an SLA shows "awaiting_acceptance" once delivered: its run follows the dealer.
DELIVERED = ("delivered", "awaiting_acceptance")
# One run per lead: its latest (a run continued as new keeps the status it handed on with).
LATEST_LEAD_RUNS = "WorkflowType = 'LeadDistributionWorkflow' AND ExecutionStatus != 'ContinuedAsNew'"
ENDED = (*DELIVERED, "awaiting_assignment", "unrouted", "failed")


def write_sla_rules(path: Path) -> None:
    """The example dealers, each with room for any bench and a 60-minute SLA, open all hours."""
    rules = example_rules()
    for dealer in rules["dealers"]:
        dealer["routing"]["daily_capacity"] = 1_000_000
        dealer.pop("hours", None)
        dealer["sla"] = {"accept_within_minutes": 60}
    write_rules(path, rules)


async def count(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


async def bench_acceptance(
    args: argparse.Namespace, settings: Settings, client: Client, since: str, lead_ids: list[str]
) -> None:
    """All leads wait for acceptance; memory then; then every dealer accepts, as fast as it can."""
    base = f"WorkflowType = 'LeadDistributionWorkflow' AND StartTime >= '{since}'"
    waiting_query = f"{base} AND LeadStatus = 'awaiting_acceptance' AND ExecutionStatus = 'Running'"
    deadline = time.perf_counter() + args.timeout
    await until(lambda: count(client, waiting_query), len(lead_ids), deadline)
    waiting = await count(client, waiting_query)
    print(f"waiting on their SLA  {waiting}/{len(lead_ids)} leads")
    print_memory()
    await asyncio.sleep(args.accept_after)
    headers = {"Authorization": f"Bearer {settings.read_api_token.get_secret_value()}"}
    async with bench_client(100, timeout=60) as http:
        dealers = await lead_dealers(http, args.api, headers, lead_ids)
        if len(dealers) < len(lead_ids):  # the timeout passed first: only the waiting ones accept
            print(f"accepting only the {len(dealers)} leads at a dealer (--timeout passed)")
        lead_ids = [lead_id for lead_id in lead_ids if lead_id in dealers]
        semaphore = asyncio.Semaphore(50)
        # Why an acceptance was not seen, counted and printed: not taken by the hub, or taken and not read.
        not_taken: Counter[str] = Counter()
        not_read: Counter[str] = Counter()

        async def accept(i: int) -> float | None:
            lead_id = lead_ids[i]
            # Paced (open loop), the dealer accepts when its turn comes, even if the stack lags behind
            # and the call waits for a free slot; otherwise when the call starts (50 under way at once).
            scheduled_at = time.perf_counter()
            async with semaphore:
                url = f"{args.sims}/_control/dealers/{dealers[lead_id]}/leads/{lead_id}/status"
                accepted_at = scheduled_at if args.accept_rate > 0 else time.perf_counter()
                try:
                    answer = (await http.post(url, json={"status": "accepted"})).json()
                except httpx.TransportError as error:
                    not_taken[f"the dealer's call (simulators): {type(error).__name__}"] += 1
                    return None
                if (hub := answer.get("hub", {}).get("status_code")) != 200:
                    not_taken[f"the hub answered the dealer {hub}"] += 1
                    return None
                try:
                    read = await http.get(f"{args.api}/v1/leads/{lead_id}", headers=headers)
                    while read.json().get("status") != "accepted":
                        await asyncio.sleep(0.05)
                        read = await http.get(f"{args.api}/v1/leads/{lead_id}", headers=headers)
                except httpx.TransportError as error:
                    not_read[f"GET /v1/leads/{{id}}: {type(error).__name__}"] += 1
                    return None
                return time.perf_counter() - accepted_at

        first = time.perf_counter()
        cpu = CpuWindow.start()
        visible = await paced(len(lead_ids), args.accept_rate, accept)
        sent = time.perf_counter() - first
    seen = [seconds for seconds in visible if seconds is not None]
    taken = len(lead_ids) - sum(not_taken.values())
    closed_query = f"{base} AND LeadStatus = 'accepted' AND ExecutionStatus = 'Completed'"
    await until(lambda: count(client, closed_query), taken, deadline)
    closed_in = time.perf_counter() - first
    closed = await count(client, closed_query)
    print(f"acceptances sent      {len(seen)}/{len(lead_ids)} in {sent:.1f} s ({len(seen) / sent:.1f}/s)")
    for why, times in (not_taken + not_read).most_common():
        print(f"  not seen            {times}: {why}")
    print(f"leads closed          {closed} in {closed_in:.1f} s ({closed / closed_in:.1f}/s)")
    if seen:
        print(
            f"acceptance to GET     p50 {percentile(seen, 50) * 1000:.0f} ms   "
            f"p99 {percentile(seen, 99) * 1000:.0f} ms   (accepted in GET /v1/leads/{{id}})"
        )
    cpu.print()  # from the first acceptance until every lead's run closed
    print_memory()


async def until(read: Callable[[], Awaitable[int]], target: int, deadline: float) -> None:
    """Poll ``read()`` every 2 s until it reaches ``target`` or the deadline passes (a visibility count
    over thousands of runs costs the dev server real work: polling faster slows what is measured)."""
    while time.perf_counter() < deadline:
        if await read() >= target:
            return
        await asyncio.sleep(2)


async def lead_dealers(
    http: httpx.AsyncClient, api: str, headers: dict[str, str], lead_ids: list[str]
) -> dict[str, str]:
    """The dealer of each lead that waits for its acceptance, from the read API."""
    dealers = {}
    for lead_id in lead_ids:
        lead = (await http.get(f"{api}/v1/leads/{lead_id}", headers=headers)).json()
        if lead.get("status") in DELIVERED and lead.get("dealer_id"):
            dealers[lead_id] = str(lead["dealer_id"])
    return dealers


@dataclass
class Ack:
    status: int
    seconds: float


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def activities_per_delivered_lead(client: Client, since: str, sample: int = 20) -> tuple[int, int]:
    """How many activities and local activities a delivered lead's history recorded: the medians over
    ``sample`` leads delivered since ``since`` (a lead whose first dealer refuses it runs more)."""
    # Runs that ended at delivery: completed (dealers without an SLA) or continued as new to wait for
    # the dealer (a waiting run shows "delivered" too until its dealer acts, with no activity yet).
    query = f"WorkflowType = 'LeadDistributionWorkflow' AND StartTime >= '{since}'"
    query += " AND LeadStatus = 'delivered' AND ExecutionStatus != 'Running'"
    counts, local_counts = [], []
    async for execution in client.list_workflows(query, limit=sample):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        counts.append(sum(1 for event in history.events if event.event_type == SCHEDULED))
        local_counts.append(sum(1 for event in history.events if local_activity(event)))
    if not counts:
        raise RuntimeError("no lead was delivered: nothing to count the activities of")
    return round(statistics.median(counts)), round(statistics.median(local_counts))


def local_activity(event: HistoryEvent) -> bool:
    """A local activity's record in a history: a marker the SDK core names ``core_local_activity``."""
    marker = event.marker_recorded_event_attributes.marker_name
    return event.event_type == MARKER and marker == LOCAL_ACTIVITY_MARKER


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
    """How many leads whose workflow started since ``since`` are in each status (visibility query).

    Each lead counts once, by its latest run: a lead delivered to a dealer with an SLA goes on waiting in
    a new run (continue-as-new), and the run that delivered it keeps its status too."""
    base = f"{LATEST_LEAD_RUNS} AND StartTime >= '{since}'"
    counts = {}
    for status in ENDED:
        counts[status] = (await client.count_workflows(f"{base} AND LeadStatus = '{status}'")).count
    return counts


@dataclass
class LeadRun:
    acks: list[Ack]
    seconds: float  # from the first webhook until every lead's run ended (or the last was sent)
    outcomes: dict[str, int]
    since: str
    lead_ids: list[str]
    cpu: tuple[float, dict[str, float]]  # CPU per process kind over those seconds


async def bench_leads(args: argparse.Namespace, settings: Settings, client: Client) -> LeadRun:
    async with bench_client(200) as http:
        lead_ids = await create_leads(http, args.sims, args.count)
        headers = {settings.zoho_webhook_secret_header: settings.zoho_webhook_secret.get_secret_value()}

        async def send(i: int) -> Ack:
            started = time.perf_counter()
            response = await http.post(
                f"{args.api}/webhooks/zoho/leads", data={"lead_id": lead_ids[i]}, headers=headers
            )
            return Ack(response.status_code, time.perf_counter() - started)

        since = datetime.now(UTC).isoformat()
        cpu = CpuWindow.start()
        acks = await paced(args.count, args.rate, send)
    if args.accept_after is not None:
        sent = time.perf_counter() - cpu.started
        return LeadRun(acks, sent, {"delivered": 0}, since, lead_ids, cpu.shares())
    # A lead has ended its run here when delivered, given up, or waiting for support's decision. Only
    # leads whose webhook was taken have a run.
    taken = sum(1 for ack in acks if ack.status == 202)
    deadline = time.perf_counter() + args.timeout
    while time.perf_counter() < deadline:
        counts = await outcomes(client, since)
        if sum(counts.values()) >= taken:
            break
        await asyncio.sleep(0.5)
    return LeadRun(acks, time.perf_counter() - cpu.started, counts, since, lead_ids, cpu.shares())


async def delivered_leads(client: Client, since: str) -> list[str]:
    """The ids of the leads delivered since ``since`` (visibility query), newest first."""
    statuses = " OR ".join(f"LeadStatus = '{status}'" for status in DELIVERED)
    query = f"{LATEST_LEAD_RUNS} AND StartTime >= '{since}' AND ({statuses})"
    return [found.id.removeprefix("lead-") async for found in client.list_workflows(query)]


async def delivered_to_bronze(settings: Settings, lead_ids: list[str], wait: float) -> list[float]:
    """Seconds from each lead's ``delivered`` (the portal's time of it) until its row is in bronze,
    polled every second; leads not there within ``wait`` seconds are left out (the caller says how many)."""
    warehouse = Warehouse.from_settings(settings)
    table = warehouse.table_id(warehouse.layers.bronze, LEAD_STATUS_CHANGES)
    waiting, seen = set(lead_ids), []
    deadline = time.monotonic() + wait
    since = day_start(datetime.now(UTC) - timedelta(days=1))  # a run may cross midnight UTC
    try:
        while waiting and time.monotonic() < deadline:
            rows = await warehouse.query(
                f"select lead_id, changed_at from `{table}` where ingested_at >= {since}"
                " and status = 'delivered' and lead_id in unnest(@ids)",
                [ArrayQueryParameter("ids", "STRING", sorted(waiting))],
            )
            now = datetime.now(UTC)
            for row in rows:
                if row["lead_id"] in waiting:
                    waiting.discard(row["lead_id"])
                    seen.append((now - row["changed_at"]).total_seconds())
            await asyncio.sleep(1)
    finally:
        await warehouse.aclose()
    return seen


async def bench_skeleton(
    args: argparse.Namespace, settings: Settings, client: Client, activities: tuple[int, int]
) -> tuple[float, dict[str, float]]:
    """Seconds from the first start until every skeleton ended, and the CPU per process kind meanwhile."""
    task_queue = f"bench-skeleton-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SkeletonWorkflow],
        activities=[no_op],
        # as many workflow tasks at once as the hub's workers take: like with like
        max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
    ):
        cpu = CpuWindow.start()

        async def start(i: int) -> None:
            await client.execute_workflow(
                SkeletonWorkflow.run,
                SkeletonInput(*activities),
                id=f"{task_queue}-{i}",
                task_queue=task_queue,
            )

        await paced(args.count, args.rate, start)
        return cpu.shares()


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
    parser.add_argument(
        "--accept-after", type=float, help="SLA mode (dealers from --write-sla-rules): accept after S seconds"
    )
    parser.add_argument(
        "--accept-rate", type=float, default=0, help="SLA mode: acceptances a second (default: 50 at a time)"
    )
    parser.add_argument("--write-sla-rules", type=Path, help="write the SLA mode's dealers here and exit")
    parser.add_argument(
        "--partner-latency-ms",
        type=partner_latency,
        default=0,
        help="Zoho and every example dealer answer this much later (the simulators' faults), as partners"
        " far away do: the worker's concurrency then matters more than its CPU",
    )
    parser.add_argument(
        "--with-warehouse",
        action="store_true",
        help="leave the warehouse's Schedules and dbt builds running while measuring (bench/quiet.py)",
    )
    parser.add_argument(
        "--to-bronze", type=int, default=0, help="follow this many delivered leads until they are in bronze"
    )
    args = parser.parse_args()
    if args.to_bronze and args.accept_after is not None:
        parser.error("--to-bronze follows the leads of a run without --accept-after")
    if args.partner_latency_ms and args.accept_after is None and not args.no_skeleton:
        # The skeleton calls no partner: its rate beside leads slowed by their partners compares unlike.
        parser.error("--partner-latency-ms measures the leads alone: add --no-skeleton")
    if args.write_sla_rules:
        write_sla_rules(args.write_sla_rules)
        return

    settings = Settings()
    client = await connect(Settings(temporal_address=args.temporal))
    async with partners_answering_after(args.sims, args.partner_latency_ms):
        await bench(args, settings, client)


def partner_latency(text: str) -> int:
    """Milliseconds, as the simulators' faults take them (their own model checks the range)."""
    try:
        return FaultSpec(target="zoho", latency_ms=int(text)).latency_ms
    except ValidationError as error:
        raise argparse.ArgumentTypeError(error.errors()[0]["msg"]) from None


@asynccontextmanager
async def partners_answering_after(sims: str, latency_ms: int) -> AsyncIterator[None]:
    """Zoho and the example dealers (their ids in config/dealers.example.yaml) answer ``latency_ms``
    later while the bench runs (none with 0). Each target's faults are replaced, then cleared after."""
    if not latency_ms:
        yield
        return
    dealers = example_dealer_ids()
    slowed: list[str] = []
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            for target in ["zoho", *dealers]:
                response = await http.post(
                    f"{sims}/_control/faults", json={"target": target, "latency_ms": latency_ms}
                )
                response.raise_for_status()
                slowed.append(target)
            print(f"partners answer       {latency_ms} ms later (Zoho and {len(dealers)} dealers)")
            yield
        finally:
            for target in slowed:
                try:
                    (await http.delete(f"{sims}/_control/faults/{target}")).raise_for_status()
                except httpx.HTTPError as error:
                    print(f"could not clear the latency of {target} at the simulators: {error!r}")


async def bench(args: argparse.Namespace, settings: Settings, client: Client) -> None:
    quiet = nullcontext() if args.with_warehouse else warehouse_paused(client, settings)
    if args.accept_after is not None:
        async with quiet:  # the whole run: the leads delivered, then accepted
            run = await send_leads(args, settings, client)
            # the leads whose webhook was taken (a 503 is Zoho's to resend)
            acks = zip(run.lead_ids, run.acks, strict=True)
            taken = [lead_id for lead_id, ack in acks if ack.status == 202]
            await bench_acceptance(args, settings, client, run.since, taken)
        return
    async with quiet:
        run = await send_leads(args, settings, client)
    delivered = sum(run.outcomes[status] for status in DELIVERED)
    lead_rate = delivered / run.seconds
    print(
        f"delivered end to end  {delivered} in {run.seconds:.1f} s ({lead_rate:.1f} leads/s); others: "
        + ", ".join(f"{k} {v}" for k, v in run.outcomes.items() if k not in DELIVERED)
    )
    print_shares(*run.cpu, per=(delivered, "lead"))
    print_memory()
    if args.to_bronze:
        sample = (await delivered_leads(client, run.since))[: args.to_bronze]
        seconds = await delivered_to_bronze(settings, sample, wait=600)
        figures = f"p50 {percentile(seconds, 50):.1f} s, max {max(seconds):.1f} s" if seconds else "none seen"
        print(f"delivered to bronze   {len(seconds)}/{len(sample)} leads; {figures} (goal: 300 s)")
    if not args.no_skeleton:
        activities = await activities_per_delivered_lead(client, run.since)
        quiet = nullcontext() if args.with_warehouse else warehouse_paused(client, settings)
        async with quiet:
            skeleton, cpu = await bench_skeleton(args, settings, client, activities)
        skeleton_rate = args.count / skeleton
        print(
            f"skeleton workflows    {args.count} in {skeleton:.1f} s ({skeleton_rate:.1f}/s, "
            f"{activities[0]} no-op activities and {activities[1]} local ones each: the medians a "
            "delivered lead's history recorded)"
        )
        print_shares(skeleton, cpu, per=(args.count, "skeleton"))
        print(f"end-to-end / skeleton {lead_rate / skeleton_rate:.2f}")


async def send_leads(args: argparse.Namespace, settings: Settings, client: Client) -> LeadRun:
    """Send the webhooks and wait for the leads' runs; print what the senders saw."""
    print(f"Sending {args.count} lead webhooks at {args.rate or 'max'}/s to {args.api} ...", flush=True)
    run = await bench_leads(args, settings, client)
    latencies = [a.seconds for a in run.acks]
    accepted = sum(1 for a in run.acks if a.status == 202)
    send_window = max(args.count / args.rate if args.rate else 0, max(latencies))
    print(f"accepted              {accepted}/{args.count} ({accepted / send_window:.1f}/s)")
    print(
        f"ack latency           p50 {percentile(latencies, 50) * 1000:.1f} ms   "
        f"p99 {percentile(latencies, 99) * 1000:.1f} ms   max {max(latencies) * 1000:.1f} ms"
    )
    return run


if __name__ == "__main__":
    # The skeleton's worker runs here: on the event loop the hub's workers run on, like with like.
    run_on(Settings().worker_event_loop, main())

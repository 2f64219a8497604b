"""Webhook burst benchmark against the running local stack (``python3 dev.py up``).

    .venv/bin/python bench/burst.py --kind deals --hooks 500

Sends ``hooks`` webhooks of one kind all at once (one connection each), as a sender's retry storm or a
bulk update in Zoho would, and prints: the answers by status, acknowledgement p50/p99 and the slowest
answer, and whether every acknowledged event reached its workflow (read back from each workflow's
history). Goals: slowest answer under 5 s; every answer 200/202 or 503 (shed, to be retried); every
acknowledged event in its workflow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.clients import bench_client
from bench.leads import create_leads, percentile
from bench.opportunities import STAGES, create_deals
from bench.orders import held_hooks
from core.settings import Settings
from core.temporal import connect

ACKNOWLEDGED = {200, 202}


@dataclass
class Hook:
    """One webhook to send, and the text that proves it reached its workflow."""

    path: str
    marker: str
    form: dict[str, str] | None = None
    json: Any = None


async def deal_hooks(http: httpx.AsyncClient, sims: str, count: int) -> list[Hook]:
    per_deal = 5
    base = datetime.now(UTC).replace(microsecond=0)
    deal_ids = await create_deals(http, sims, (count + per_deal - 1) // per_deal)
    hooks = []
    for n in range(count):
        deal_id, step = deal_ids[n % len(deal_ids)], n // len(deal_ids)
        when = (base + timedelta(seconds=step)).isoformat()
        form = {"deal_id": deal_id, "stage": STAGES[step % len(STAGES)], "modified_time": when}
        hooks.append(Hook("/webhooks/zoho/opportunities", when.replace("+00:00", "Z"), form=form))
    return hooks


async def order_hooks(http: httpx.AsyncClient, sims: str, count: int) -> list[Hook]:
    held = await held_hooks(http, sims, (count + 2) // 3)
    return [Hook("/webhooks/vtex/orders", hook["State"], json=hook) for hook in held[:count]]


async def lead_hooks(http: httpx.AsyncClient, sims: str, count: int) -> list[Hook]:
    return [
        Hook("/webhooks/zoho/leads", lead_id, form={"lead_id": lead_id})
        for lead_id in await create_leads(http, sims, count)
    ]


KINDS = {"deals": deal_hooks, "orders": order_hooks, "leads": lead_hooks}


def request_bytes(host: str, hook: Hook, headers: dict[str, str]) -> bytes:
    if hook.form is not None:
        body, content_type = urlencode(hook.form).encode(), "application/x-www-form-urlencoded"
    else:
        body, content_type = json.dumps(hook.json).encode(), "application/json"
    lines = [f"POST {hook.path} HTTP/1.1", f"Host: {host}", f"Content-Type: {content_type}"]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def burst(
    api: str, hooks: list[Hook], headers: dict[str, str]
) -> list[tuple[int, float, dict[str, Any]]]:
    """Every hook on its own connection, opened beforehand, then all requests written at once.

    Plain sockets rather than an HTTP client library: with hundreds of requests at once, a client's own
    overhead in this process would be measured as the server's.
    """
    url = urlsplit(api)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    connections = [await asyncio.open_connection(host, port) for _ in hooks]
    requests = [request_bytes(url.netloc, hook, headers) for hook in hooks]
    gate = asyncio.Event()

    async def send(request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        await gate.wait()
        started = time.perf_counter()
        writer.write(request)
        status_line = await reader.readline()
        seconds = time.perf_counter() - started
        raw = await reader.read()  # the server closes the connection after its answer
        writer.close()
        body = raw.split(b"\r\n\r\n", 1)[-1]
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        return int(status_line.split()[1]), seconds, answer if isinstance(answer, dict) else {}

    tasks = [asyncio.create_task(send(r, *c)) for r, c in zip(requests, connections, strict=True)]
    await asyncio.sleep(0.2)  # every task waiting at the gate
    gate.set()
    return await asyncio.gather(*tasks)


async def reached(client: Client, workflow_id: str, markers: set[str]) -> set[str]:
    """The markers found in the workflow's start input and signals (every run of it), decrypted."""
    codec = client.data_converter.payload_codec
    found: set[str] = set()
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        history = await client.get_workflow_handle(workflow_id, run_id=execution.run_id).fetch_history()
        for event in history.events:
            inputs = []
            if event.HasField("workflow_execution_started_event_attributes"):
                inputs = event.workflow_execution_started_event_attributes.input.payloads
            elif event.HasField("workflow_execution_signaled_event_attributes"):
                inputs = event.workflow_execution_signaled_event_attributes.input.payloads
            if codec is not None and inputs:
                inputs = await codec.decode(inputs)
            text = b"".join(payload.data for payload in inputs).decode(errors="replace")
            found |= {marker for marker in markers if marker in text}
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=sorted(KINDS), default="deals")
    parser.add_argument("--hooks", type=int, default=500)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--sims", default="http://127.0.0.1:8100")
    args = parser.parse_args()
    settings = Settings()
    headers = {
        settings.zoho_webhook_secret_header: settings.zoho_webhook_secret.get_secret_value(),
        settings.vtex_hook_secret_header: settings.vtex_hook_secret.get_secret_value(),
    }
    async with bench_client(100, timeout=60) as http:
        hooks = await KINDS[args.kind](http, args.sims, args.hooks)
    print(f"Sending {len(hooks)} {args.kind} webhooks at once to {args.api} ...", flush=True)
    answers = await burst(args.api, hooks, headers)

    codes = Counter(status for status, _, _ in answers)
    latencies = [seconds for _, seconds, _ in answers]
    print("answers               " + ", ".join(f"{code}: {n}" for code, n in sorted(codes.items())))
    print(
        f"ack latency           p50 {percentile(latencies, 50) * 1000:.0f} ms   "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms   slowest {max(latencies):.2f} s"
    )
    for code in sorted(codes):
        of_code = [seconds for status, seconds, _ in answers if status == code]
        print(f"  {code}                 p50 {percentile(of_code, 50):.2f} s   slowest {max(of_code):.2f} s")
    unexpected = sum(n for code, n in codes.items() if code not in ACKNOWLEDGED | {503})
    print(f"answers not 2xx/503   {unexpected}")

    expected: dict[str, set[str]] = {}
    for hook, (status, _, body) in zip(hooks, answers, strict=True):
        if status in ACKNOWLEDGED:
            expected.setdefault(body["workflow_id"], set()).add(hook.marker)
    client = await connect(settings)
    missing = 0
    for workflow_id, markers in expected.items():
        missing += len(markers - await reached(client, workflow_id, markers))
    acknowledged = sum(n for code, n in codes.items() if code in ACKNOWLEDGED)
    print(
        f"acknowledged events   {acknowledged - missing}/{acknowledged} found in their workflows' histories"
    )
    goals = max(latencies) < 5 and unexpected == 0 and missing == 0
    print(f"goals                 {'met' if goals else 'NOT met'} (slowest < 5 s, only 2xx/503, none lost)")


if __name__ == "__main__":
    asyncio.run(main())

"""Landing benchmark: rows/s through the warehouse layer and through a bare Storage Write API loop.

    .venv/bin/python bench/landing.py --rows 100000 --page 2000 --rounds 3

Starts its own BigQuery emulator (in memory, as the tests do) and lands the same bronze rows three ways,
interleaved round by round so the machine's noise hits them alike:

- bare: a loop over ``BigQueryWriteClient.append_rows`` on one COMMITTED stream, Arrow batches of
  ``--page`` rows at increasing offsets (what the Storage Write API gives at best from Python);
- exactly-once: ``Warehouse.land_at`` page after page, the cursor carried as a long job carries it;
- shared: ``Warehouse.land`` called once per row by ``--callers`` concurrent callers, gathered into
  shared appends on the default stream (how the order flow's activities land).

Prints the median rows/s of each and the layer's ratio to the bare loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import pyarrow as pa
from google.cloud.bigquery_storage_v1 import types

from core.settings import Settings
from devstack import emulator
from tests.support import free_port
from warehouse.landing import BronzeRecord, Warehouse, bronze_rows
from warehouse.streams import StreamCursor, arrow_schema, write_client
from warehouse.tables import BRONZE_SCHEMA, VTEX_ORDER_EVENTS


def records(count: int, run: str) -> list[BronzeRecord]:
    """Order-event-like records, about 300 bytes of payload each."""
    now = datetime.now(UTC)
    return [
        BronzeRecord(
            source="vtex",
            entity_id=f"{run}-{i:08d}-01",
            event_key=f"{run}-{i:08d}-01:handling@2026-11-24T10:00:00.{i % 10**7:07d}Z",
            payload={
                "Domain": "Marketplace", "OrderId": f"{run}-{i:08d}-01", "State": "handling",
                "LastState": "ready-for-handling", "LastChange": "2026-11-24T09:59:58.1234567Z",
                "CurrentChange": f"2026-11-24T10:00:00.{i % 10**7:07d}Z",
                "Origin": {"Account": "localstore", "Key": "vtexappkey-localstore-LOCAL"},
            },
            source_updated_at=now,
        )
        for i in range(count)
    ]  # fmt: skip


def bare_loop(settings: Settings, table: str, rows: list[dict[str, Any]], page: int) -> float:
    """Seconds to append ``rows`` with nothing but the client: one stream, Arrow pages, offsets."""
    client = write_client(settings.bigquery_write_endpoint)
    schema = arrow_schema(BRONZE_SCHEMA)
    serialized_schema = schema.serialize().to_pybytes()
    started = time.perf_counter()
    stream = client.create_write_stream(
        parent=table, write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED)
    ).name
    for offset in range(0, len(rows), page):
        batch = pa.RecordBatch.from_pylist(rows[offset : offset + page], schema=schema)
        request = types.AppendRowsRequest(
            write_stream=stream,
            offset=offset,
            arrow_rows=types.AppendRowsRequest.ArrowData(
                writer_schema=types.ArrowSchema(serialized_schema=serialized_schema),
                rows=types.ArrowRecordBatch(
                    serialized_record_batch=batch.serialize().to_pybytes(), row_count=batch.num_rows
                ),
            ),
        )
        for response in client.append_rows(iter([request])):
            assert not response.error.code, response.error.message
    elapsed = time.perf_counter() - started
    client.transport.close()
    return elapsed


async def exactly_once(warehouse: Warehouse, batch: list[BronzeRecord], page: int) -> float:
    started = time.perf_counter()
    cursor = StreamCursor()
    for offset in range(0, len(batch), page):
        cursor = await warehouse.land_at(VTEX_ORDER_EVENTS, cursor, batch[offset : offset + page])
    return time.perf_counter() - started


async def shared(warehouse: Warehouse, batch: list[BronzeRecord], callers: int) -> float:
    gate = asyncio.Semaphore(callers)

    async def one(record: BronzeRecord) -> None:
        async with gate:
            await warehouse.land(VTEX_ORDER_EVENTS, [record])

    started = time.perf_counter()
    await asyncio.gather(*(one(record) for record in batch))
    return time.perf_counter() - started


async def count_rows(warehouse: Warehouse) -> int:
    table = warehouse.table_id(warehouse.layers.bronze, VTEX_ORDER_EVENTS)
    return int((await warehouse.query(f"select count(*) as n from `{table}`"))[0]["n"])


async def run(args: argparse.Namespace, settings: Settings) -> None:
    warehouse = Warehouse.from_settings(settings)
    await warehouse.ensure_schema()
    table = (
        f"projects/{settings.bigquery_project}/datasets/{warehouse.layers.bronze}/tables/{VTEX_ORDER_EVENTS}"
    )
    timings: dict[str, list[float]] = {"bare": [], "exactly-once": [], "shared": []}
    for round_number in range(args.rounds):
        batch = records(args.rows, f"r{round_number}")
        rows = bronze_rows(batch)
        timings["bare"].append(await asyncio.to_thread(bare_loop, settings, table, rows, args.page))
        timings["exactly-once"].append(await exactly_once(warehouse, batch, args.page))
        timings["shared"].append(await shared(warehouse, batch, args.callers))
        print(
            f"round {round_number + 1}: "
            + ", ".join(f"{k} {args.rows / v[-1]:,.0f} rows/s" for k, v in timings.items()),
            flush=True,
        )
    landed = await count_rows(warehouse)
    await warehouse.aclose()
    rates = {name: args.rows / statistics.median(seconds) for name, seconds in timings.items()}
    print(f"\n{args.rows:,} rows a run, pages of {args.page}, {args.rounds} rounds, medians:")
    for name, rate in rates.items():
        print(f"  {name:<13} {rate:>10,.0f} rows/s   ratio to bare {rate / rates['bare']:.2f}")
    print(f"rows in the table: {landed:,} (expected {3 * args.rows * args.rounds:,})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--page", type=int, default=2_000, help="rows per append (bare loop and exactly-once)"
    )
    parser.add_argument("--callers", type=int, default=2_000, help="concurrent callers of the shared path")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-landing-"))
    emulator.prepare_home(home)
    rest, grpc = free_port(), free_port()
    log = (home / "emulator.log").open("wb")
    process = subprocess.Popen(
        emulator.command(rest, grpc), env={**os.environ, **emulator.environment(home)}, stdout=log, stderr=log
    )
    try:
        endpoint = f"http://127.0.0.1:{rest}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{endpoint}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        settings = Settings(
            environment="test",
            bigquery_endpoint=endpoint,
            bigquery_write_endpoint=f"127.0.0.1:{grpc}",
            bigquery_dataset_prefix="bench_",
            bigquery_timeout_seconds=120,
            warehouse_batch_rows=args.page,
        )
        asyncio.run(run(args, settings))
    finally:
        process.terminate()
        process.wait(timeout=15)


if __name__ == "__main__":
    main()

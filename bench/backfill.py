"""Order history backfill benchmark against the running local stack (``python3 dev.py up``).

    .venv/bin/python bench/backfill.py --since 2026-08-01 --until 2026-10-31 --rate 50

Backfills the simulator's generated order history for a range (the same range twice: the second run
must land nothing), and prints orders landed per second against the bound the rate budget allows:
``rate ÷ VTEX requests per order`` (one read per order, plus the list and count requests it shares),
the ratio of the two, and the worker's peak resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.memory import print_memory
from cli.times import moment
from core.settings import Settings
from core.temporal import connect
from workflows.vtex_order_backfill import BackfillProgress, OrderBackfillInput, start_order_backfill


async def backfill(args: argparse.Namespace, settings: Settings) -> tuple[BackfillProgress, float]:
    client = await connect(settings)
    params = OrderBackfillInput.for_range(
        settings, moment(args.since), moment(args.until, end_of_day=True), args.rate
    )
    started = time.perf_counter()
    progress = await (await start_order_backfill(client, settings, params)).result()
    return progress, time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--since", default="2026-08-01")
    parser.add_argument("--until", default="2026-10-31")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="VTEX requests per second the backfill may use"
    )
    args = parser.parse_args()
    settings = Settings()
    first, seconds = await backfill(args, settings)
    per_order = first.vtex_requests / max(1, first.orders_landed)
    bound = args.rate / per_order
    rate = first.orders_landed / seconds
    print(f"range                 {args.since} .. {args.until}, budget {args.rate:g} VTEX requests/s")
    counts = f"{first.windows_done} windows, {first.quarantined} quarantined, {first.missing} missing"
    print(f"orders landed         {first.orders_landed} in {seconds:.1f} s = {rate:.1f} orders/s ({counts})")
    print(f"rate-limit bound      {bound:.1f} orders/s ({per_order:.3f} VTEX requests per order)")
    print(f"ratio                 {rate / bound:.2f}")
    again, seconds_again = await backfill(args, settings)
    print(f"same range again      {again.orders_landed} landed, {again.already_landed} already there "
          f"({seconds_again:.1f} s)")  # fmt: skip
    print_memory()


if __name__ == "__main__":
    asyncio.run(main())

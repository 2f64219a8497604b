"""``hub``: support commands against a running system (its Temporal cluster and settings).

    hub backfill orders --since 2024-11-01 --until 2026-10-31 --rate 20

A command that starts long work prints its progress until the work ends (Ctrl-C stops watching; the
work goes on in Temporal), or returns at once with ``--detach``. ``--json`` prints what a script reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.settings import Settings, get_settings
from core.temporal import connect
from workflows.vtex_order_backfill import (
    PROGRESS_QUERY,
    BackfillProgress,
    OrderBackfillInput,
    OrderBackfillWorkflow,
    backfill_workflow_id,
    start_order_backfill,
)

PROGRESS_EVERY_SECONDS = 2.0


def moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A date (``2024-11-01``, the day's first or last millisecond) or an ISO 8601 time, in UTC."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            value = datetime.fromisoformat(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not a date or ISO 8601 time: {text!r}") from error
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) - timedelta(milliseconds=1) if end_of_day else start


def parser(settings: Settings) -> argparse.ArgumentParser:
    hub = argparse.ArgumentParser(
        prog="hub", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    hub.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    commands = hub.add_subparsers(dest="command", required=True)
    backfill = commands.add_parser("backfill", help="land history the live flows never saw")
    kinds = backfill.add_subparsers(dest="kind", required=True)
    orders = kinds.add_parser("orders", help="VTEX orders created in a range of dates (both inclusive)")
    orders.add_argument("--since", required=True, help="first creation date (2024-11-01) or ISO time")
    orders.add_argument("--until", required=True, help="last creation date (whole day) or ISO time")
    orders.add_argument(
        "--rate", type=float, default=settings.vtex_backfill_requests_per_second,
        help="VTEX requests per second the backfill may use (default %(default)s)",
    )  # fmt: skip
    orders.add_argument("--detach", action="store_true", help="start it and return; watch it in the UI")
    return hub


async def backfill_orders(args: argparse.Namespace, settings: Settings) -> int:
    since, until = moment(args.since), moment(args.until, end_of_day=True)
    if until < since:
        return fail(f"--until ({until.isoformat()}) is before --since ({since.isoformat()})")
    if args.rate <= 0:
        return fail("--rate must be above 0")
    client = await connect(settings)
    params = OrderBackfillInput.for_range(settings, since, until, args.rate)
    try:
        handle = await start_order_backfill(client, settings, params)
        say(args, f"started {handle.id} ({params.start} to {params.end}, {args.rate:g} VTEX requests/s)")
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(
            OrderBackfillWorkflow.run, backfill_workflow_id(params.start, params.end)
        )
        say(args, f"{handle.id} is already running: following it")
    if args.detach:
        return 0
    final = await follow(args, client, handle)
    return 0 if final.done else 1


async def follow(
    args: argparse.Namespace, client: Client, handle: WorkflowHandle[OrderBackfillWorkflow, BackfillProgress]
) -> BackfillProgress:
    """Print the progress every few seconds until the backfill ends; return its last progress."""
    result = asyncio.ensure_future(handle.result())
    while not result.done():
        progress = await handle.query(PROGRESS_QUERY, result_type=BackfillProgress)
        report(args, progress)
        await asyncio.wait([result], timeout=PROGRESS_EVERY_SECONDS)
    final = result.result()
    report(args, final)
    return final


def report(args: argparse.Namespace, p: BackfillProgress) -> None:
    if args.json:
        print(json.dumps(asdict(p)), flush=True)
        return
    state = "done" if p.done else p.window or "counting"
    print(
        f"{state:<40} windows {p.windows_done}/{p.windows_done + p.windows_left}  landed {p.orders_landed}"
        f"  already there {p.already_landed}  quarantined {p.quarantined}  missing {p.missing}"
        f"  {p.orders_per_second:.1f} orders/s",
        flush=True,
    )


def say(args: argparse.Namespace, text: str) -> None:
    print(json.dumps({"message": text}) if args.json else text, flush=True)


def fail(text: str) -> int:
    print(f"hub: {text}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    args = parser(settings).parse_args(argv)
    try:
        code = asyncio.run(backfill_orders(args, settings))
    except KeyboardInterrupt:
        print("stopped watching; the work goes on (see the Temporal UI)", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()

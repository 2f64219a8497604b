"""``hub backfill orders``: land the VTEX orders of a range of dates that the live flows never saw."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from functools import partial

from temporalio.exceptions import WorkflowAlreadyStartedError

from cli.command import Context, Subcommands, command
from cli.output import FAILED, Output
from cli.progress import follow
from cli.times import moment
from core.constants import PROGRESS_QUERY
from core.settings import LONG_JOB_MIN_RATE
from workflows.vtex_order_backfill import (
    BackfillProgress,
    OrderBackfillInput,
    OrderBackfillWorkflow,
    backfill_workflow_id,
    start_order_backfill,
)


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    backfill = commands.add_parser("backfill", help="land history the live flows never saw")
    kinds = backfill.add_subparsers(dest="kind", required=True)
    orders = command(
        kinds, "orders", "VTEX orders created in a range of dates (both inclusive)", common, backfill_orders
    )
    orders.add_argument(
        "--since",
        required=True,
        type=moment,
        help="first creation date (2024-11-01) or ISO time, in UTC unless it names an offset",
    )
    orders.add_argument(
        "--until", required=True, type=partial(moment, end_of_day=True),
        help="last creation date (whole day) or ISO time",
    )  # fmt: skip
    orders.add_argument(
        "--rate", type=float,
        help="VTEX requests per second the backfill may use (default: HUB_VTEX_BACKFILL_REQUESTS_PER_SECOND)",
    )  # fmt: skip
    orders.add_argument("--detach", action="store_true", help="start it and return; watch it in the UI")


async def backfill_orders(args: argparse.Namespace, ctx: Context) -> int:
    since, until = args.since, args.until
    if until < since:
        return ctx.out.fail(f"--until ({until.isoformat()}) is before --since ({since.isoformat()})")
    rate = ctx.settings.vtex_backfill_requests_per_second if args.rate is None else args.rate
    if not math.isfinite(rate) or rate < LONG_JOB_MIN_RATE:
        return ctx.out.fail(f"--rate must be at least {LONG_JOB_MIN_RATE:g} (one request every 10 s)")
    client, out = ctx.client, ctx.out
    params = OrderBackfillInput.for_range(ctx.settings, since, until, rate)
    try:
        handle = await start_order_backfill(client, ctx.settings, params)
        out.say(f"started {handle.id} ({params.start} to {params.end}, {rate:g} VTEX requests/s)")
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(
            OrderBackfillWorkflow.run, backfill_workflow_id(params.start, params.end)
        )
        out.say(f"{handle.id} is already running: following it")
    if args.detach:
        return 0
    final = await follow(handle, PROGRESS_QUERY, BackfillProgress, lambda p: report(out, p))
    return 0 if final.done else FAILED


def report(out: Output, p: BackfillProgress) -> None:
    state = "done" if p.done else p.window or "counting"
    out.show(
        "progress",
        asdict(p),
        f"{state:<40} windows {p.windows_done}/{p.windows_done + p.windows_left}  landed {p.orders_landed}"
        f"  already there {p.already_landed}  quarantined {p.quarantined}  missing {p.missing}"
        f"  {p.orders_per_second:.1f} orders/s",
    )

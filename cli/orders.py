"""``hub orders redrive``: deliver again the order changes of VTEX order runs that broke off."""

from __future__ import annotations

import argparse

from cli.command import Context, Subcommands, command
from cli.redrive import (
    BROKE_OFF,
    Ended,
    Flow,
    add_options,
    any_of,
    recorded_history,
    redrive,
    signals_received,
    started_with,
)
from contracts.orders import ORDER_CHANGED, VTEX_ORDER_WORKFLOW, VtexOrderInput, signal_order_event
from core.constants import ORDER_STATE
from core.vtex import OrderEvent


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    orders = commands.add_parser("orders", help="VTEX orders: redrive")
    actions = orders.add_subparsers(dest="action", required=True)
    again = command(
        actions, "redrive", "land again the orders whose workflow failed, timed out or was terminated",
        common, redrive_orders,
    )  # fmt: skip
    again.add_argument(
        "--status", action="append", choices=sorted(BROKE_OFF),
        help="how the run ended; repeat for several (default: all three)",
    )  # fmt: skip
    add_options(again)


async def redrive_orders(args: argparse.Namespace, ctx: Context) -> int:
    flow = Flow("order", VTEX_ORDER_WORKFLOW, ORDER_STATE, "order_state", restart_order, superseded_too=True)
    return await redrive(args, ctx, flow, any_of(args.status or list(BROKE_OFF)))


async def restart_order(ctx: Context, run: Ended) -> str:
    """Every change the ended run held (carried over or signalled), delivered again as a hook would be.

    The order's workflow (a new run, or one a later hook started) lands what it has not landed and reads
    the order once more; what the ended run had landed already may land a second time, which the silver
    layer's one row per event key absorbs.
    """
    history = await recorded_history(ctx.client, run)
    params = await started_with(ctx.client, history, VtexOrderInput)
    events = [*params.pending, *await signals_received(ctx.client, history, ORDER_CHANGED, OrderEvent)]
    if not events:
        return "skipped: the run held no order change"
    for event in events:
        await signal_order_event(ctx.client, ctx.settings, event)
    return f"redriven ({len(events)} change(s) delivered again)"

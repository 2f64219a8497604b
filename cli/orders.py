"""``hub orders redrive``: deliver again the order changes of VTEX order runs that broke off."""

from __future__ import annotations

import argparse

from cli.command import Context, Subcommands
from cli.redrive import BROKE_OFF, Ended, Flow, add_redrive_command, any_of, deliver_again, redrive
from contracts.orders import ORDER_CHANGED, VTEX_ORDER_WORKFLOW, VtexOrderInput, signal_order_event
from core.constants import ORDER_STATE
from core.vtex import OrderEvent


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    summary = "land again the orders whose workflow failed, timed out or was terminated"
    add_redrive_command(commands, common, "orders", "VTEX orders: redrive", summary, redrive_orders)


async def redrive_orders(args: argparse.Namespace, ctx: Context) -> int:
    flow = Flow("order", VTEX_ORDER_WORKFLOW, ORDER_STATE, "order_state", restart_order, superseded_too=True)
    return await redrive(args, ctx, flow, any_of(args.status or list(BROKE_OFF)))


async def restart_order(ctx: Context, run: Ended) -> str:
    """Every change the ended run held (carried over or signalled), delivered again as a hook would be.

    The order's workflow (a new run, or one a later hook started) lands what it has not landed and reads
    the order once more; what the ended run had landed already may land a second time, which the silver
    layer's one row per event key absorbs.
    """
    return await deliver_again(ctx, run, VtexOrderInput, ORDER_CHANGED, OrderEvent, signal_order_event)

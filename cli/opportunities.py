"""``hub opportunities redrive``: deliver again the deal changes of opportunity runs that broke off."""

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
from contracts.opportunities import (
    DEAL_CHANGED,
    OPPORTUNITY_SYNC_WORKFLOW,
    DealChange,
    OpportunitySyncInput,
    signal_deal_change,
)
from core.constants import DEAL_STAGE


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    opportunities = commands.add_parser("opportunities", help="Zoho deals: redrive")
    actions = opportunities.add_subparsers(dest="action", required=True)
    again = command(
        actions, "redrive", "replicate again the deal changes whose run failed, timed out or was terminated",
        common, redrive_deals,
    )  # fmt: skip
    again.add_argument(
        "--status", action="append", choices=sorted(BROKE_OFF),
        help="how the run ended; repeat for several (default: all three)",
    )  # fmt: skip
    add_options(again)


async def redrive_deals(args: argparse.Namespace, ctx: Context) -> int:
    flow = Flow(
        "deal", OPPORTUNITY_SYNC_WORKFLOW, DEAL_STAGE, "deal_stage", restart_deal, superseded_too=True
    )
    return await redrive(args, ctx, flow, any_of(args.status or list(BROKE_OFF)))


async def restart_deal(ctx: Context, run: Ended) -> str:
    """Every change the ended run held (carried over or signalled), delivered again as a webhook would be.

    The deal's workflow (a new run, or one a later webhook started) stores what the database does not
    hold yet; a change stored already is recognised ("repeated") and changes nothing. A later run of
    the same deal does not make the ended run's changes moot: it holds only its own.
    """
    history = await recorded_history(ctx.client, run)
    params = await started_with(ctx.client, history, OpportunitySyncInput)
    changes = [*params.pending, *await signals_received(ctx.client, history, DEAL_CHANGED, DealChange)]
    if not changes:
        return "skipped: the run held no deal change"
    for change in changes:
        await signal_deal_change(ctx.client, ctx.settings, change)
    return f"redriven ({len(changes)} change(s) delivered again)"

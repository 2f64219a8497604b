"""``hub opportunities redrive``: deliver again the deal changes of opportunity runs that broke off."""

from __future__ import annotations

import argparse

from cli.command import Context, Subcommands
from cli.redrive import BROKE_OFF, Ended, Flow, add_redrive_command, any_of, deliver_again, redrive
from contracts.opportunities import (
    DEAL_CHANGED,
    OPPORTUNITY_SYNC_WORKFLOW,
    DealChange,
    OpportunitySyncInput,
    signal_deal_change,
)
from core.constants import DEAL_STAGE


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    summary = "replicate again the deal changes whose run failed, timed out or was terminated"
    add_redrive_command(commands, common, "opportunities", "Zoho deals: redrive", summary, redrive_deals)


async def redrive_deals(args: argparse.Namespace, ctx: Context) -> int:
    flow = Flow(
        "deal", OPPORTUNITY_SYNC_WORKFLOW, DEAL_STAGE, "deal_stage", restart_deal, superseded_too=True
    )
    return await redrive(args, ctx, flow, any_of(args.status or list(BROKE_OFF)))


async def restart_deal(ctx: Context, run: Ended) -> str:
    """Every change the ended run held (carried over or signalled), delivered again as a webhook would be.

    The deal's workflow (a new run, or one a later webhook started) stores what the database does not
    hold yet; a change stored already is recognised and changes nothing. A later run of
    the same deal does not make the ended run's changes moot: it holds only its own.
    """
    return await deliver_again(ctx, run, OpportunitySyncInput, DEAL_CHANGED, DealChange, signal_deal_change)

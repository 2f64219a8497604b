"""``hub parked``: the runs holding an event a partner refused for good, and their redrive.

A run parks an event when Zoho or VTEX refuses it in a way retrying cannot change (revoked credentials,
a record the hub cannot read). Once the cause is fixed, ``hub parked redrive`` signals each such run to
try again; a run whose cause is not fixed parks the event again.
"""

from __future__ import annotations

import argparse
from typing import Any

from temporalio.service import RPCError

from cli.command import Context, Subcommands, command
from cli.redrive import confirmed
from core.constants import PARKED, PARTNERS, REDRIVE_PARKED_SIGNAL


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    parked = commands.add_parser("parked", help="events a partner refused for good: list, redrive")
    actions = parked.add_subparsers(dest="action", required=True)
    listed = command(actions, "list", "the runs holding a refused event, and why", common, list_parked)
    again = command(actions, "redrive", "try the parked events again (the cause is fixed)", common, redrive)
    for each in (listed, again):
        each.add_argument("--partner", choices=PARTNERS, help="only events this partner refused")
        each.add_argument("--limit", type=int, default=500, help="at most this many runs (default 500)")
    again.add_argument(
        "--yes", action="store_true", help="redrive without asking (needed without a terminal)"
    )


def parked_query(partner: str | None) -> str:
    wanted = [partner] if partner else list(PARTNERS)
    names = ", ".join(f"'{name}'" for name in wanted)
    return f"ExecutionStatus = 'Running' AND {PARKED.name} IN ({names})"


async def find(ctx: Context, args: argparse.Namespace) -> tuple[list[dict[str, Any]], bool]:
    """The parked runs, at most ``--limit``, and whether more are parked (then the command says so)."""
    rows: list[dict[str, Any]] = []
    async for execution in ctx.client.list_workflows(parked_query(args.partner), limit=args.limit + 1):
        if len(rows) == args.limit:
            ctx.out.say(f"more than {args.limit} runs are parked: raise --limit, or name --partner")
            return rows, True
        memo = await execution.memo()
        rows.append(
            {
                "workflow_id": execution.id,
                "workflow_type": execution.workflow_type,
                "partner": execution.typed_search_attributes.get(PARKED),
                "reason": str(memo.get("parked") or ""),
            }
        )
    return rows, False


COLUMNS = {"workflow_id": "WORKFLOW ID", "workflow_type": "TYPE", "partner": "PARTNER", "reason": "WHY"}


async def list_parked(args: argparse.Namespace, ctx: Context) -> int:
    rows, more = await find(ctx, args)
    if not rows:
        ctx.out.say("no parked events")
        return 0
    ctx.out.table("parked", rows, COLUMNS)
    return 1 if more else 0


async def redrive(args: argparse.Namespace, ctx: Context) -> int:
    out = ctx.out
    rows, more = await find(ctx, args)
    if not rows:
        out.say("no parked events")
        return 0
    if not args.yes:
        out.table("parked", rows, COLUMNS)
        if not confirmed(out, len(rows), "parked run"):
            return 1
    failed = 0
    for row in rows:
        try:
            await ctx.client.get_workflow_handle(row["workflow_id"]).signal(REDRIVE_PARKED_SIGNAL)
            row["action"] = "redriven"
        except RPCError as error:  # ended meanwhile, say: the others still go
            row["action"] = f"failed: {error.status.name if error.status else error}"
            failed += 1
    out.table("parked", rows, {**COLUMNS, "action": "ACTION"})
    out.say(f"{len(rows) - failed} redriven, {failed} failed")
    return 1 if failed or more else 0

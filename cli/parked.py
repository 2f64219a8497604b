"""``hub parked``: what a partner refused for good, and its redrive.

A run parks an event when Zoho or VTEX refuses it in a way retrying cannot change (revoked credentials,
a record the hub cannot read). A lead's run does not wait on Zoho (its dealer's SLA clock runs), so the
lead fields Zoho refused, and the lead events a subscriber refused, are parked in the portal database
instead (``db.zoho_writebacks``, ``db.refused_events``). Once the cause is fixed, ``hub parked redrive``
signals each parked run to try again, writes each lead's parked fields once more (a
``ZohoWritebackWorkflow`` run per lead) and sends each parked event again (an ``EventRedriveWorkflow``
run per event); what is still refused stays parked.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError
from temporalio.service import RPCError

from cli.command import Context, Subcommands, command
from cli.redrive import confirmed, positive
from contracts.leads import (
    WRITEBACK_DROPPED,
    event_redrive_workflow_id,
    start_event_redrive,
    start_zoho_writeback_redrive,
    zoho_writeback_workflow_id,
)
from core.constants import PARKED, PARTNERS, REDRIVE_PARKED_SIGNAL
from db import refused_events, zoho_writebacks
from db.engine import one_off_sessions


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    parked = commands.add_parser("parked", help="events a partner refused for good: list, redrive")
    actions = parked.add_subparsers(dest="action", required=True)
    listed = command(actions, "list", "the runs holding a refused event, and why", common, list_parked)
    again = command(actions, "redrive", "try the parked events again (the cause is fixed)", common, redrive)
    for each in (listed, again):
        each.add_argument("--partner", choices=CLI_PARTNERS, help="only events this partner refused")
        each.add_argument("--limit", type=positive, default=500, help="at most this many runs (default 500)")
    again.add_argument(
        "--yes", action="store_true", help="redrive without asking (needed without a terminal)"
    )
    drop = command(
        actions, "discard", "drop a lead's parked Zoho write-back Zoho will never take", common, discard
    )
    drop.add_argument("lead_id", help="the Zoho lead id (its write-back is listed as zoho-writeback-<id>)")
    drop_event = command(
        actions, "discard-event", "drop a lead event no subscriber will take", common, discard_event
    )
    drop_event.add_argument("event_id", help="the event's id (it is listed as event-redrive-<id>)")


# Who refuses what ``hub parked`` lists: the partners of parked runs, and the lead events' subscribers.
SUBSCRIBERS = "subscribers"
CLI_PARTNERS = (*PARTNERS, SUBSCRIBERS)


def parked_query(partner: str | None) -> str:
    wanted = [partner] if partner in PARTNERS else list(PARTNERS)
    names = ", ".join(f"'{name}'" for name in wanted)
    return f"ExecutionStatus = 'Running' AND {PARKED.name} IN ({names})"


async def find(ctx: Context, args: argparse.Namespace) -> tuple[list[dict[str, Any]], bool]:
    """The parked runs, at most ``--limit``, and whether more are parked (then the command says so)."""
    rows: list[dict[str, Any]] = []
    if args.partner == SUBSCRIBERS:
        return rows, False
    async for execution in ctx.client.list_workflows(parked_query(args.partner), limit=args.limit + 1):
        if len(rows) == args.limit:
            ctx.out.say(f"more than {args.limit} runs are parked: raise --limit, or name --partner")
            return rows, True
        memo = await execution.memo()
        rows.append(
            {
                "workflow_id": execution.id,
                "run_id": execution.run_id,  # the run listed: a redrive signals it, not a later one
                "workflow_type": execution.workflow_type,
                "partner": execution.typed_search_attributes.get(PARKED),
                "reason": str(memo.get("parked") or ""),
            }
        )
    return rows, False


class DatabaseAway(Exception):
    """The portal database could not be read: the parked write-backs and events are unknown."""


async def find_writebacks(
    ctx: Context, args: argparse.Namespace, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The leads whose fields Zoho refused, oldest first, at most ``limit``; and whether more are."""
    if args.partner not in (None, "zoho"):
        return [], False
    try:
        async with one_off_sessions(ctx.settings.database_url) as sessions:
            parked, total = await zoho_writebacks.parked(sessions, limit)
    except SQLAlchemyError as error:
        raise DatabaseAway(type(error).__name__) from error
    if total > len(parked):
        ctx.out.say(f"{total} leads' Zoho write-backs are parked, {len(parked)} shown: raise --limit")
    rows = [
        {
            "workflow_id": zoho_writeback_workflow_id(each.lead_id),  # the run a redrive starts
            "workflow_type": WRITEBACK,
            "partner": "zoho",
            # Field names only: their values are the lead's (a redrive writes them).
            "reason": f"{each.reason} ({', '.join(sorted(each.fields))}; redriven {each.redrives} times)",
            "lead_id": each.lead_id,
            "refused_at": each.refused_at.isoformat(),
        }
        for each in parked
    ]
    return rows, total > len(parked)


async def find_events(
    ctx: Context, args: argparse.Namespace, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The lead events a subscriber refused, oldest first, at most ``limit`` (one row per event, naming
    every subscriber it is parked for); and whether more are."""
    if args.partner not in (None, SUBSCRIBERS):
        return [], False
    try:
        async with one_off_sessions(ctx.settings.database_url) as sessions:
            parked, total = await refused_events.parked(sessions, limit)
    except SQLAlchemyError as error:
        raise DatabaseAway(type(error).__name__) from error
    rows: dict[str, dict[str, Any]] = {}
    for each in parked:  # one row per event: its redrive sends to every subscriber it is parked for
        row = rows.setdefault(
            each.event_id,
            {
                "workflow_id": event_redrive_workflow_id(each.event_id),  # the run a redrive starts
                "workflow_type": EVENT,
                "partner": SUBSCRIBERS,
                "reason": "",
                "event_id": each.event_id,
                "event_type": each.event_type,
                "lead_id": each.lead_id,
                "refused_at": each.refused_at.isoformat(),
            },
        )
        why = f"{each.subscriber}: {each.reason} (redriven {each.redrives} times)"
        row["reason"] = f"{row['reason']}; {why}" if row["reason"] else f"{each.event_type}, {why}"
    if total > len(rows):
        ctx.out.say(f"{total} lead events are parked for a subscriber, {len(rows)} shown: raise --limit")
    return list(rows.values()), total > len(rows)


async def find_all(ctx: Context, args: argparse.Namespace) -> tuple[list[dict[str, Any]], bool]:
    """The parked runs, then the parked write-backs, then the parked events, at most ``--limit`` in
    all; and whether more are. A portal database that cannot be read is said, and counts as more (the
    command exits 1)."""
    runs, more_runs = await find(ctx, args)
    try:
        writebacks, more_writebacks = await find_writebacks(ctx, args, args.limit - len(runs))
        events, more_events = await find_events(ctx, args, args.limit - len(runs) - len(writebacks))
    except DatabaseAway as error:
        ctx.out.say(
            f"the portal database could not be read ({error}): Zoho write-backs and events not listed"
        )
        return runs, True
    return runs + writebacks + events, more_runs or more_writebacks or more_events


# Not a run: a lead's fields Zoho refused, kept in the portal database.
WRITEBACK = "Zoho write-back"
# Not a run either: a lead event a subscriber refused, kept in the portal database.
EVENT = "lead event"
COLUMNS = {"workflow_id": "WORKFLOW ID", "workflow_type": "TYPE", "partner": "PARTNER", "reason": "WHY"}
# How long the command waits for each write-back's redrive; one still trying shows in the Web UI.
REDRIVE_WAIT = timedelta(seconds=60)
# How long it waits for a worker to take a parked run's redrive signal, and then watches the run for a
# refusal that comes again at once (the cause not fixed) before it reports the run redriven.
PICKUP_WAIT = timedelta(seconds=10)
UNPARK_WAIT = timedelta(seconds=5)
# Redrives at once: their writes share the leads queue with deliveries, and Zoho's API credits.
REDRIVES_AT_ONCE = 10


async def list_parked(args: argparse.Namespace, ctx: Context) -> int:
    rows, more = await find_all(ctx, args)
    if not rows:
        ctx.out.say("no parked events")
        return 1 if more else 0
    ctx.out.table("parked", rows, COLUMNS)
    return 1 if more else 0


async def redrive(args: argparse.Namespace, ctx: Context) -> int:
    out = ctx.out
    rows, more = await find_all(ctx, args)
    if not rows:
        out.say("no parked events")
        return 1 if more else 0
    if not args.yes:
        out.table("parked", rows, COLUMNS)
        if not confirmed(out, len(rows), "parked event"):
            return 1
    turns = asyncio.Semaphore(REDRIVES_AT_ONCE)

    async def in_turn(row: dict[str, Any]) -> str:
        async with turns:
            return await redrive_one(ctx, row)

    outcomes = await asyncio.gather(*(in_turn(row) for row in rows))
    for row, outcome in zip(rows, outcomes, strict=True):
        row["action"] = outcome
    failed = sum(1 for outcome in outcomes if outcome not in REDRIVEN)
    out.table("parked", rows, {**COLUMNS, "action": "ACTION"})
    out.say(f"{len(rows) - failed} redriven, {failed} failed or still parked")
    return 1 if failed or more else 0


# What a redrive that did its part answers; anything else counts as failed.
REDRIVEN = frozenset({"redriven", "written", "delivered", "nothing parked", WRITEBACK_DROPPED})


async def redrive_one(ctx: Context, row: dict[str, Any]) -> str:
    """Signal a parked run to try again, write a lead's parked fields once more, or send a parked event
    again; what came of it."""
    try:
        if row["workflow_type"] == WRITEBACK:
            handle = await start_zoho_writeback_redrive(ctx.client, ctx.settings, row["lead_id"])
        elif row["workflow_type"] == EVENT:
            handle = await start_event_redrive(ctx.client, ctx.settings, row["event_id"], row["lead_id"])
        else:
            return await redrive_run(ctx, row["workflow_id"], row["run_id"])
    except RPCError as error:  # ended meanwhile, say: the others still go
        return f"failed: {error.status.name if error.status else error}"
    try:
        return await asyncio.wait_for(handle.result(), REDRIVE_WAIT.total_seconds())
    except TimeoutError:
        return f"still trying: workflow {handle.id} in the Web UI"
    except WorkflowFailureError as error:  # the activity's own failure, not "Activity task failed"
        cause = error.cause
        return f"failed: {cause.cause if isinstance(cause, ActivityError) and cause.cause else cause}"
    except RPCError as error:
        return f"failed: {error.status.name if error.status else error}"


async def redrive_run(ctx: Context, workflow_id: str, run_id: str) -> str:
    """Signal the parked run listed to try again, then say what came of it within the watch:
    ``redriven`` (a worker took the signal and the run is not parked again: it is trying the refused
    step, which may still fail and park it later), ``still parked: <why>`` (it failed the same way at
    once: the cause is not fixed), ``not taken yet`` (no worker took the signal in time), or the way
    the run ended meanwhile."""
    handle = ctx.client.get_workflow_handle(workflow_id, run_id=run_id)
    await handle.signal(REDRIVE_PARKED_SIGNAL)
    clock = asyncio.get_running_loop()
    pickup_by = clock.time() + PICKUP_WAIT.total_seconds()
    taken_at: float | None = None
    while True:
        # Whether the signal was taken first, then the run's state: a state read before would be older.
        if taken_at is None and await _signal_taken(handle):
            taken_at = clock.time()
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            ended = described.status.name.lower() if described.status else "unknown"
            # A run that went on as a new one (after its changes per run) took the redrive with it.
            going_on = ("completed", "continued_as_new")
            return "redriven" if ended in going_on else f"failed: the run {ended}"
        parked = described.typed_search_attributes.get(PARKED)
        if taken_at is not None and parked:
            return f"still parked: {(await described.memo()).get('parked') or 'see the Web UI'}"
        if taken_at is not None and clock.time() >= taken_at + UNPARK_WAIT.total_seconds():
            return "redriven"
        if taken_at is None and clock.time() >= pickup_by:
            return f"not taken yet: no worker took the signal within {PICKUP_WAIT.seconds} s"
        await asyncio.sleep(0.5)


async def _signal_taken(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether a workflow task completed after the run's last redrive signal (the run acted on it)."""
    signalled = False
    taken = False
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            if event.workflow_execution_signaled_event_attributes.signal_name == REDRIVE_PARKED_SIGNAL:
                signalled, taken = True, False
        elif signalled and event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            taken = True
    return taken


async def discard(args: argparse.Namespace, ctx: Context) -> int:
    """Drop a lead's parked write-back: the lead is gone from Zoho, say, so no redrive can write it."""
    async with one_off_sessions(ctx.settings.database_url) as sessions:
        fields = await zoho_writebacks.discard(sessions, args.lead_id)
    if fields is None:
        ctx.out.say(f"no Zoho write-back of lead {args.lead_id} is parked")
        return 1
    ctx.out.say(f"lead {args.lead_id}: parked Zoho write-back of {', '.join(sorted(fields))} discarded")
    return 0


async def discard_event(args: argparse.Namespace, ctx: Context) -> int:
    """Drop a parked lead event: its subscriber is gone for good, say, so no redrive can deliver it."""
    async with one_off_sessions(ctx.settings.database_url) as sessions:
        subscribers = await refused_events.discard(sessions, args.event_id)
    if not subscribers:
        ctx.out.say(f"no event {args.event_id} is parked")
        return 1
    ctx.out.say(f"event {args.event_id}: parked for {', '.join(subscribers)}, discarded")
    return 0

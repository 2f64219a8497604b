"""Redrive: start again the runs of a flow that ended badly, found by their search attributes.

``hub leads redrive`` and ``hub orders redrive`` share this; each gives its list filter and how to
restart one run. For leads only a workflow's latest run is redriven: when a later run exists (redriven
already, or started again by a webhook), the old one is skipped, so running a redrive twice restarts
nothing twice. An order's run is redriven whatever came after it: the changes it held were acknowledged,
and a later run (the order's next hook) holds only its own; delivered twice, a change lands once.
At most ``--limit`` runs are redriven, oldest first; where more match, the command says so, names the
``--since`` that takes the rest, and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowExecution, WorkflowHistory
from temporalio.common import SearchAttributeKey

from cli.command import Context, Handler, Subcommands, command
from cli.output import FAILED, Output
from cli.times import since, visibility_time
from core.settings import Settings

T = TypeVar("T")

# ExecutionStatus values of a run that broke off (as Temporal's list filter spells them). The hub cancels
# no run itself: a canceled one was cancelled by hand (the Web UI's "Request Cancellation") with what it
# held, as a terminated one was.
BROKE_OFF = {"failed": "Failed", "terminated": "Terminated", "timed-out": "TimedOut", "canceled": "Canceled"}
WOULD = "would redrive"


@dataclass
class Ended:
    """A run that ended (for leads, still the latest run of its workflow id)."""

    workflow_id: str
    run_id: str
    ended: str  # how the run ended: completed, failed, terminated, timed_out, canceled
    closed_at: datetime | None
    status: str | None  # the flow's own status in its search attributes (a lead's LeadStatus, ...)


@dataclass
class Flow:
    """What one redrive command works on."""

    noun: str  # "lead", "order": the rows' JSON type
    workflow_type: str
    status_key: SearchAttributeKey[str]
    status_field: str  # the JSON name of ``status_key``'s value, e.g. "lead_status"
    restart: Callable[[Context, Ended], Awaitable[str]]  # restarts one run; says what it did
    superseded_too: bool = False  # also runs a later run of the same workflow followed


def add_redrive_command(
    commands: Subcommands,
    common: argparse.ArgumentParser,
    group: str,
    about: str,
    summary: str,
    handler: Handler,
) -> None:
    """``hub <group> redrive`` for a flow whose runs broke off (``--status``, then the common options)."""
    parser = commands.add_parser(group, help=about)
    actions = parser.add_subparsers(dest="action", required=True)
    again = command(actions, "redrive", summary, common, handler)
    again.add_argument(
        "--status", action="append", choices=sorted(BROKE_OFF),
        help="how the run ended; repeat for several (default: all four)",
    )  # fmt: skip
    add_options(again)


async def deliver_again(
    ctx: Context,
    run: Ended,
    started: type[Any],
    signal: str,
    change: type[T],
    send: Callable[[Client, Settings, T], Awaitable[object]],
) -> str:
    """Every change the ended run held (``pending``, carried into it, and each ``signal`` it received),
    delivered again as its webhook would be (``send``). The flow's workflow recognises one it has."""
    history = await recorded_history(ctx.client, run)
    params = await started_with(ctx.client, history, started)
    changes = [*params.pending, *await signals_received(ctx.client, history, signal, change)]
    if not changes:
        return "skipped: the run held no change"
    for held in changes:
        await send(ctx.client, ctx.settings, held)
    return f"redriven ({len(changes)} change(s) delivered again)"


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        default="24h",
        type=since,
        help="runs that ended since: 30m, 24h, 7d, a date or an ISO time, in UTC unless it names an offset"
        " (default 24h)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be redriven; change nothing")
    parser.add_argument(
        "--yes", action="store_true", help="redrive without asking (needed without a terminal)"
    )
    parser.add_argument(
        "--limit",
        type=positive,
        default=500,
        help="redrive at most this many, oldest first (default 500)",
    )


def positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return number


def query(flow: Flow, args: argparse.Namespace, condition: str) -> str:
    """The list filter: runs of the flow's type that ended since ``--since`` and meet ``condition``."""
    ended_since = visibility_time(args.since)
    return f"WorkflowType = '{flow.workflow_type}' AND CloseTime >= '{ended_since}' AND {condition}"


def any_of(statuses: Sequence[str]) -> str:
    return "ExecutionStatus IN ({})".format(", ".join(f"'{BROKE_OFF[s]}'" for s in statuses))


async def redrive(args: argparse.Namespace, ctx: Context, flow: Flow, condition: str) -> int:
    out = ctx.out
    listed = query(flow, args, condition)
    out.say(f"searching: {listed}")
    found, superseded, more = await find(ctx.client, flow, listed, args.limit)
    if superseded:
        out.say(f"{superseded} skipped: a later run of the same workflow exists")
    if more:  # the next call goes on where this one stops: an order's runs are redriven again otherwise
        rest = found[-1].closed_at.isoformat() if found and found[-1].closed_at else "a later time"
        out.say(f"more than {args.limit} {flow.noun}s match: redrive the rest with --since {rest}")
    if not found:
        out.say(f"no {flow.noun}s to redrive")
        return 0
    if args.dry_run or not args.yes:
        show(out, flow, found, [WOULD] * len(found))
    if args.dry_run:
        out.say(f"{len(found)} {flow.noun}(s) would be redriven (dry run: nothing was changed)")
        return FAILED if more else 0
    if not args.yes and not confirmed(out, len(found), flow.noun):
        return FAILED
    actions = [await restart(ctx, flow, run) for run in found]
    show(out, flow, found, actions)
    tally = Counter(action.split()[0].rstrip(":") for action in actions)
    out.say(f"{tally['redriven']} redriven, {tally['skipped']} skipped, {tally['failed']} failed")
    return FAILED if tally["failed"] or more else 0


async def find(client: Client, flow: Flow, listed: str, limit: int) -> tuple[list[Ended], int, bool]:
    """The matching runs to redrive, oldest first, at most ``limit``; how many were skipped because a
    later run of the same workflow exists; and whether more would match beyond ``limit``."""
    executions = [execution async for execution in client.list_workflows(listed)]
    if not flow.superseded_too:
        latest: dict[str, WorkflowExecution] = {}
        for execution in executions:
            known = latest.get(execution.id)
            if known is None or _closed(execution) > _closed(known):
                latest[execution.id] = execution
        executions = list(latest.values())
    found: list[Ended] = []
    superseded = 0
    for execution in sorted(executions, key=_closed):
        if not flow.superseded_too:
            current = await client.get_workflow_handle(execution.id).describe()
            if current.run_id != execution.run_id:
                superseded += 1
                continue
        if len(found) == limit:  # one more to redrive than the limit (superseded runs are not)
            return found, superseded, True
        found.append(
            Ended(
                workflow_id=execution.id,
                run_id=execution.run_id,
                ended=execution.status.name.lower() if execution.status else "unknown",
                closed_at=execution.close_time,
                status=execution.typed_search_attributes.get(flow.status_key),
            )
        )
    return found, superseded, False


async def restart(ctx: Context, flow: Flow, run: Ended) -> str:
    try:
        return await flow.restart(ctx, run)
    except Exception as error:  # one run that cannot be restarted must not stop the others
        return f"failed: {type(error).__name__}: {error}"


def confirmed(out: Output, count: int, noun: str) -> bool:
    if out.json_lines or not sys.stdin.isatty():
        out.fail(f"{count} {noun}(s) match: add --yes to redrive them, or --dry-run to only list them")
        return False
    return input(f"Redrive these {count} {noun}(s)? [y/N] ").strip().lower() in ("y", "yes")


def show(out: Output, flow: Flow, runs: list[Ended], actions: list[str]) -> None:
    rows: list[dict[str, Any]] = [
        {
            "workflow_id": run.workflow_id,
            "run_id": run.run_id,
            "ended": run.ended,
            "closed_at": run.closed_at,
            flow.status_field: run.status,
            "action": action,
        }
        for run, action in zip(runs, actions, strict=True)
    ]
    columns = {
        "workflow_id": "WORKFLOW ID",
        "run_id": "RUN ID",
        "ended": "ENDED",
        "closed_at": "CLOSED AT",
        flow.status_field: flow.status_field.replace("_", " ").upper(),
        "action": "ACTION",
    }
    out.table(flow.noun, rows, columns)


async def recorded_history(client: Client, run: Ended) -> WorkflowHistory:
    return await client.get_workflow_handle(run.workflow_id, run_id=run.run_id).fetch_history()


async def started_with(client: Client, history: WorkflowHistory, input_type: type[T]) -> T:
    """The input the run was started with."""
    started = history.events[0].workflow_execution_started_event_attributes
    (value,) = await client.data_converter.decode(started.input.payloads, [input_type])
    return value  # type: ignore[no-any-return]


async def signals_received(client: Client, history: WorkflowHistory, name: str, arg_type: type[T]) -> list[T]:
    """The argument of every ``name`` signal the run received, in the order it received them."""
    received = []
    for event in history.events:
        signaled = event.workflow_execution_signaled_event_attributes
        if event.HasField("workflow_execution_signaled_event_attributes") and signaled.signal_name == name:
            (value,) = await client.data_converter.decode(signaled.input.payloads, [arg_type])
            received.append(value)
    return received


def _closed(execution: WorkflowExecution) -> datetime:
    return execution.close_time or datetime.min.replace(tzinfo=UTC)

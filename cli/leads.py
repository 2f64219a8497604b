"""``hub leads``: redrive leads that ended failed or unrouted; decide the dealer of a waiting lead."""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from cli.command import Context, Subcommands, command
from cli.redrive import BROKE_OFF, Ended, Flow, add_options, any_of, recorded_history, redrive, started_with
from cli.routing import add_explain
from contracts.leads import (
    ASSIGN_DEALER_UPDATE,
    DEALER_STATUS_SIGNAL,
    LEAD_DISTRIBUTION_WORKFLOW,
    NOT_REASSIGNED,
    SUPPORT_LOGIN,
    AssignDealerInput,
    AssignDealerResult,
    LeadDistributionInput,
    LeadDistributionResult,
    Reassignment,
    start_lead_distribution,
)
from core.constants import DEALER_STATUSES, LEAD_STATUS, LeadStatus, lead_workflow_id
from core.timeutil import CLOCK_SKEW, utcnow
from db import deliveries, feedback, routing
from db.engine import one_off_sessions
from db.models import Delivery

# What ``--status`` finds. A lead that ended failed or unrouted completed its run; a run that broke off
# (its workflow failed, timed out or was terminated) left the lead undecided, so it counts as failed too.
REDRIVABLE = {
    LeadStatus.FAILED.value: f"(LeadStatus = '{LeadStatus.FAILED}' OR {any_of(list(BROKE_OFF))})",
    LeadStatus.UNROUTED.value: f"LeadStatus = '{LeadStatus.UNROUTED}'",
}


# How long ``reassign`` watches the new run for the move in the portal database, and ``assign`` waits for
# a worker to take the decision, before saying it is not confirmed (the Web UI shows the run).
CONFIRM_WAIT = timedelta(seconds=30)
# How long a move has, from ending the run that reads an accepted lead to starting its new run and
# looking at what reached the ended one, before the dealer's newest report is handed on anyway (the
# command died in between; a copy handed on is dropped by its event id): feedback.guard.
MOVE_GUARD = timedelta(minutes=2)
POLL_STEP = "poll_dealer_status"  # the activity that reads a dealer's CRM for the lead's status


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    leads = commands.add_parser("leads", help="lead distribution: redrive, assign, reassign, explain")
    actions = leads.add_subparsers(dest="action", required=True)
    again = command(
        actions, "redrive", "distribute again the leads that ended failed or unrouted", common, redrive_leads
    )
    again.add_argument(
        "--status", required=True, choices=sorted(REDRIVABLE),
        help="failed: no dealer could be reached, Zoho did not know the lead, or its workflow broke off;"
        " unrouted: no dealer took it before the assignment deadline",
    )  # fmt: skip
    add_options(again)
    assign = command(
        actions, "assign", "deliver a lead waiting for assignment to a dealer", common, assign_lead
    )
    add_explain(actions, common)
    assign.add_argument("lead_id", help="the Zoho lead id")
    assign.add_argument("dealer_id", help="the dealer's id in the routing rules")
    assign.add_argument(
        "--by", required=True, type=support_login, help="who decides (a support login), kept in the history"
    )
    move = command(
        actions,
        "reassign",
        "move a lead to another dealer, even one a dealer already has (its workflow must have ended,"
        " or only read an accepted lead's statuses)",
        common,
        reassign_lead,
    )
    move.add_argument("lead_id", help="the Zoho lead id")
    move.add_argument("dealer_id", help="the dealer that takes the lead now")
    move.add_argument("--reason", required=True, help="why (kept in the lead's status history)")
    move.add_argument(
        "--by", required=True, type=support_login, help="who decides (a support login), kept in the history"
    )


LeadHandle = WorkflowHandle[Any, LeadDistributionResult]


def support_login(value: str) -> str:
    if not SUPPORT_LOGIN.fullmatch(value):
        raise argparse.ArgumentTypeError("a support login: letters, digits and . _ @ + - only, 64 at most")
    return value


async def lead_workflow(ctx: Context, lead_id: str) -> tuple[LeadHandle, WorkflowExecutionDescription] | None:
    """The lead's workflow and where its latest run stands; None when there is no such workflow."""
    handle: LeadHandle = ctx.client.get_workflow_handle(
        lead_workflow_id(lead_id), result_type=LeadDistributionResult
    )
    try:
        return handle, await handle.describe()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        return None


async def reassign_lead(args: argparse.Namespace, ctx: Context) -> int:
    """A new run of the lead's workflow that first moves its delivery decision to ``dealer_id``.

    Only a lead whose workflow ended can be moved: a running one is still acting on its decision (one
    waiting for a dealer takes ``hub leads assign``). The exception is a run that only reads an accepted
    lead's later statuses from its dealer's CRM: it is ended first (terminated, with the reason). Redrive
    and resent webhooks never move a lead.
    """
    out = ctx.out
    found = await lead_workflow(ctx, args.lead_id)
    if found is None:
        return out.fail(f"unknown lead {args.lead_id}: there is no workflow {lead_workflow_id(args.lead_id)}")
    handle, described = found
    refused, holder = await dealer_refused(ctx, args.lead_id, args.dealer_id)
    if refused:
        return out.fail(f"lead {args.lead_id} not reassigned: {refused}")
    if holder == args.dealer_id:
        fields = {"lead_id": args.lead_id, "dealer_id": args.dealer_id, "reassigned_by": None}
        out.show("reassignment", fields, f"lead {args.lead_id} is at {args.dealer_id} already: nothing moved")
        return 0
    guarded: str | None = None  # the dealer whose reports the move guards
    if described.status == WorkflowExecutionStatus.RUNNING:
        status = described.typed_search_attributes.get(LEAD_STATUS)
        if status not in DEALER_STATUSES:
            return out.fail(
                f"lead {args.lead_id} is still being distributed (lead {status}): reassign it once its"
                " workflow ended, or use 'hub leads assign' while it waits for a dealer"
            )
        # The dealer accepted and the run only reads its CRM for what comes next. A status it is still
        # passing on to Zoho or the subscribers would be lost with the run: wait for that first. It does
        # so in activities, or in local activities within a workflow task (none in the description).
        raw = described.raw_description
        steps = [a.activity_type.name for a in raw.pending_activities]
        # A task past its first attempt is failing, not passing anything on: support may still move it.
        if raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt <= 1:
            steps.append("a workflow task")
        if steps:
            return out.fail(
                f"lead {args.lead_id} is passing a status on ({', '.join(steps)}): try again once it is done"
            )
        reading = ctx.client.get_workflow_handle(handle.id, run_id=described.run_id)  # not a newer run
        guarded = holder
        guarded_at = utcnow()
        if guarded:  # should this command die before it looks at the ended run (below)
            async with one_off_sessions(ctx.settings.database_url) as sessions:
                await feedback.guard(sessions, args.lead_id, guarded, guarded_at + MOVE_GUARD)
        try:
            # A terminate's reason is plain text in the history (no codec): support's words about the
            # customer stay in the encrypted input of the new run and the portal's history.
            await reading.terminate(
                reason=f"reassigned to {args.dealer_id} by support (why: the lead's history)"
            )
        except RPCError as error:
            if guarded and error.status == RPCStatusCode.NOT_FOUND:
                # Another move's command ended it since this one wrote the guard, relying on the guard
                # too: it stays for that command to settle. Closed by itself, or ended before (the
                # other command settled then): no report died with it that this guard covers.
                closed = await reading.describe()
                by_another_move = closed.status == WorkflowExecutionStatus.TERMINATED and (
                    closed.close_time is None or closed.close_time >= guarded_at - CLOCK_SKEW
                )
                if not by_another_move:
                    await settle_guard(ctx, args.lead_id, guarded, died=False)
                return out.fail(
                    f"lead {args.lead_id} not reassigned: its workflow ended meanwhile (by itself, or by"
                    " another move): run the command again"
                )
            raise
    # The run the command looked at (a new run may have started meanwhile), else the ended latest one.
    ended = await (reading if guarded else handle).fetch_history()
    move = Reassignment(args.dealer_id, reason=args.reason, by=args.by)
    run_id = await start_again(ctx, ended, move)
    if guarded:
        # A report that reached the reading run after the look above died with it: the sweep hands the
        # dealer's newest on to the lead's run now (the new one), which passes it on to the subscribers.
        length = described.raw_description.workflow_execution_info.history_length
        await settle_guard(ctx, args.lead_id, guarded, died=reported_after(ended, length))
    if run_id is None:
        return out.fail(f"lead {args.lead_id} not reassigned: its workflow started again meanwhile")
    moving = ctx.client.get_workflow_handle(handle.id, run_id=run_id, result_type=LeadDistributionResult)
    not_moved = await moved_or_why_not(ctx, moving, args.lead_id, args.dealer_id, holder)
    if not_moved:
        return out.fail(f"lead {args.lead_id}: {not_moved}")
    fields = {"lead_id": args.lead_id, "dealer_id": args.dealer_id, "reassigned_by": args.by}
    out.show(
        "reassignment",
        fields,
        f"lead {args.lead_id} reassigned to {args.dealer_id} by {args.by}; its workflow delivers it now",
    )
    return 0


async def settle_guard(ctx: Context, lead_id: str, holder: str, *, died: bool) -> None:
    """Clear the guard over the holder's reports, handing its newest on now where one ``died`` with the
    run the command ended."""
    async with one_off_sessions(ctx.settings.database_url) as sessions:
        await feedback.unguard(sessions, lead_id, holder, rehand_at=utcnow() if died else None)


def reported_after(history: WorkflowHistory, length: int) -> bool:
    """Whether a dealer's status reached the run past the first ``length`` events of its history: a
    signal, or a read of the dealer's CRM (which records what it read before the run hears of it)."""
    return any(_brings_a_status(event) for event in history.events if event.event_id > length)


def _brings_a_status(event: HistoryEvent) -> bool:
    if event.HasField("workflow_execution_signaled_event_attributes"):
        return event.workflow_execution_signaled_event_attributes.signal_name == DEALER_STATUS_SIGNAL
    if event.HasField("activity_task_scheduled_event_attributes"):
        return event.activity_task_scheduled_event_attributes.activity_type.name == POLL_STEP
    return False


async def dealer_refused(ctx: Context, lead_id: str, dealer_id: str) -> tuple[str, str | None]:
    """Why support may not give the lead to ``dealer_id`` (``""``: it may), and which dealer holds the
    lead's decision now. A dealer whose CRM still owes a drop of the lead may hold a copy of it: a new
    delivery there would be a second one (routing passes such a dealer over too)."""
    async with one_off_sessions(ctx.settings.database_url) as sessions:
        if await routing.dealer_config(sessions, dealer_id) is None:
            return f"no active dealer {dealer_id}", None
        owed = {drop.dealer_id for drop in (await deliveries.losses(sessions, lead_id)).pending}
        async with sessions() as session:
            decision = await session.get(Delivery, lead_id)
    if dealer_id in owed:
        return (
            f"{dealer_id}'s CRM has not yet answered a drop of this lead (it may hold a copy): try again"
            " once a run of the lead made that drop (hub leads redrive, or Zoho's next webhook)",
            None,
        )
    return "", decision.dealer_id if decision is not None else None


async def moved_or_why_not(
    ctx: Context, handle: LeadHandle, lead_id: str, dealer_id: str, holder: str | None
) -> str:
    """Watch the new run (``handle``, that run's) until the portal database has the lead's decision at
    ``dealer_id``: ``""``, or why the move is not confirmed (the run ended without it, or it did not
    happen in time). ``holder``: the dealer that had the lead."""
    clock = asyncio.get_running_loop()
    until = clock.time() + CONFIRM_WAIT.total_seconds()
    async with one_off_sessions(ctx.settings.database_url) as sessions:
        while True:
            async with sessions() as session:
                decision = await session.get(Delivery, lead_id, populate_existing=True)
            if decision is not None and decision.dealer_id == dealer_id:
                return ""
            described = await handle.describe()
            if described.status == WorkflowExecutionStatus.COMPLETED:
                result = await handle.result(follow_runs=False)  # not a run a dealer's report started since
                if result.status == NOT_REASSIGNED:
                    where = f"it stays at {holder}" if holder else "it stays where it was"
                    return f"not reassigned: Zoho no longer has the lead (deleted, or converted); {where}"
            if described.status != WorkflowExecutionStatus.RUNNING:
                ended = described.status.name.lower() if described.status else "closed"
                return f"not reassigned: its new run {ended} before moving it (the Web UI says why)"
            if clock.time() >= until:
                return (
                    f"reassignment to {dealer_id} started, not applied within {CONFIRM_WAIT.seconds} s:"
                    f" see workflow {handle.id} in the Web UI"
                )
            await asyncio.sleep(0.5)


async def redrive_leads(args: argparse.Namespace, ctx: Context) -> int:
    flow = Flow("lead", LEAD_DISTRIBUTION_WORKFLOW, LEAD_STATUS, "lead_status", restart_lead)
    return await redrive(args, ctx, flow, REDRIVABLE[args.status])


async def restart_lead(ctx: Context, run: Ended) -> str:
    started = await start_again(ctx, await recorded_history(ctx.client, run))
    return "redriven" if started else "skipped: running again already"


async def start_again(
    ctx: Context, history: WorkflowHistory, reassignment: Reassignment | None = None
) -> str | None:
    """A new run of the lead's workflow with the webhook's event its ended run was started with: its run
    id, None when a run is under way already."""
    previous = await started_with(ctx.client, history, LeadDistributionInput)
    return await start_lead_distribution(
        ctx.client, ctx.settings, previous.lead_id, previous.event, redrive=True, reassignment=reassignment
    )


async def assign_lead(args: argparse.Namespace, ctx: Context) -> int:
    out = ctx.out
    found = await lead_workflow(ctx, args.lead_id)
    if found is None:
        return out.fail(f"unknown lead {args.lead_id}: there is no workflow {lead_workflow_id(args.lead_id)}")
    handle, described = found
    if described.status != WorkflowExecutionStatus.RUNNING:
        status = described.typed_search_attributes.get(LEAD_STATUS)
        ended = described.status.name.lower() if described.status else "closed"
        return out.fail(
            f"lead {args.lead_id} is not waiting for a dealer: its workflow {ended} (lead {status})"
        )
    refused, _ = await dealer_refused(ctx, args.lead_id, args.dealer_id)
    if refused:
        return out.fail(f"lead {args.lead_id} not assigned: {refused}")
    try:
        assigned = await handle.execute_update(
            ASSIGN_DEALER_UPDATE,
            AssignDealerInput(args.dealer_id, assigned_by=args.by),
            result_type=AssignDealerResult,
            rpc_timeout=CONFIRM_WAIT,
        )
    except WorkflowUpdateFailedError as error:  # refused: not waiting (any more), or no such dealer
        return out.fail(f"lead {args.lead_id} not assigned: {error.cause or error}")
    except WorkflowUpdateRPCTimeoutOrCancelledError:  # no worker took it in time, or Ctrl-C
        return out.fail(
            f"lead {args.lead_id}: the assignment is not confirmed (no worker took it within"
            f" {CONFIRM_WAIT.seconds} s): see its workflow in the Web UI before trying again"
        )
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:  # its run ended between the check and the update
            return out.fail(f"lead {args.lead_id} is not waiting for a dealer: its workflow ended meanwhile")
        return out.fail(f"lead {args.lead_id} not assigned: {error}")
    fields = {
        "lead_id": args.lead_id,
        "dealer_id": assigned.dealer_id,
        "dealer_name": assigned.dealer_name,
        "assigned_by": args.by,
    }
    out.show(
        "assignment",
        fields,
        f"lead {args.lead_id} assigned to {assigned.dealer_id} ({assigned.dealer_name}) by {args.by};"
        " its workflow delivers it now",
    )
    return 0

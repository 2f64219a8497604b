"""``hub replay``: does a workflow's history still replay with the current workflow code?"""

from __future__ import annotations

import argparse

from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import NondeterminismError

from cli.command import Context, Subcommands, command
from cli.output import FAILED
from workflows.replay import replay


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    replay_cmd = command(
        commands,
        "replay",
        "replay a workflow's history against the current workflow code",
        common,
        replay_run,
    )
    replay_cmd.add_argument("--workflow-id", required=True, help="e.g. lead-5725767000000412001")
    replay_cmd.add_argument("--run-id", help="one run of it (default: its latest run)")


async def replay_run(args: argparse.Namespace, ctx: Context) -> int:
    handle = ctx.client.get_workflow_handle(args.workflow_id, run_id=args.run_id)
    try:
        history = await handle.fetch_history()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        run = f" run {args.run_id}" if args.run_id else ""
        return ctx.out.fail(f"no workflow {args.workflow_id}{run} in namespace {ctx.client.namespace}")
    workflow_type = history.events[0].workflow_execution_started_event_attributes.workflow_type.name
    failure = await replay(history, ctx.settings)
    nondeterministic = isinstance(failure, NondeterminismError)
    fields = {
        "workflow_id": history.workflow_id,
        "run_id": history.run_id,
        "workflow_type": workflow_type,
        "events": len(history.events),
        "replays": failure is None,
        "nondeterministic": nondeterministic,
        "error": None if failure is None else f"{type(failure).__name__}: {failure}",
    }
    run = f"{history.workflow_id} (run {history.run_id}, {workflow_type}, {len(history.events)} events)"
    if failure is None:
        ctx.out.show("replay", fields, f"{run} replays with the current code")
        return 0
    verdict = "is NOT deterministic with the current code" if nondeterministic else "does not replay"
    ctx.out.show("replay", fields, f"{run} {verdict}: {fields['error']}")
    return FAILED

"""``hub syncs``: run a catalog, customer or lead warehouse sync now through its Schedule; how every
schedule is doing."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, WorkflowFailureError

from cli.command import Context, Subcommands, command
from cli.output import FAILED
from cli.progress import follow
from contracts.schedules import (
    LEAD_WAREHOUSE_SYNC,
    VTEX_CATALOG_SYNC,
    VTEX_CUSTOMER_SYNC,
    scheduled,
    trigger_run,
)
from core.constants import PROGRESS_QUERY
from db.engine import one_off_sessions
from db.watermarks import read_watermark
from workflows import lead_warehouse_sync, vtex_customer_sync
from workflows.lead_warehouse_sync import LeadSyncResult
from workflows.vtex_catalog_sync import CatalogSyncResult
from workflows.vtex_customer_sync import CustomerSyncResult

SyncResult = CatalogSyncResult | CustomerSyncResult | LeadSyncResult


@dataclass
class Sync:
    schedule_id: str
    result_type: type[SyncResult]
    progress_query: str


SYNCS = {
    "catalog": Sync(VTEX_CATALOG_SYNC, CatalogSyncResult, PROGRESS_QUERY),
    "customers": Sync(VTEX_CUSTOMER_SYNC, CustomerSyncResult, PROGRESS_QUERY),
    "leads": Sync(LEAD_WAREHOUSE_SYNC, LeadSyncResult, PROGRESS_QUERY),
}
# The syncs that read changes since a watermark, and its name in the central database.
WATERMARKS = {
    VTEX_CUSTOMER_SYNC: vtex_customer_sync.WATERMARK,
    LEAD_WAREHOUSE_SYNC: lead_warehouse_sync.WATERMARK,
}
STATUS_COLUMNS = {
    "schedule_id": "SCHEDULE",
    "started_at": "LAST RUN",
    "outcome": "OUTCOME",
    "next_run_at": "NEXT RUN",
    "watermark": "WATERMARK",
    "counts": "COUNTS",
}


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    syncs = commands.add_parser("syncs", help="the scheduled syncs: trigger one, see how each is doing")
    actions = syncs.add_subparsers(dest="action", required=True)
    trigger = command(actions, "trigger", "run a sync now through its schedule", common, trigger_sync)
    trigger.add_argument("sync", choices=sorted(SYNCS))
    trigger.add_argument("--detach", action="store_true", help="start it and return; watch it in the UI")
    command(
        actions, "status", "each schedule's last run, its outcome and counts, its next run", common, status
    )


async def trigger_sync(args: argparse.Namespace, ctx: Context) -> int:
    sync, out = SYNCS[args.sync], ctx.out
    workflow_id, started = await trigger_run(ctx.client, sync.schedule_id)
    text = f"{args.sync} sync {workflow_id} started"
    if not started:  # the schedule runs one at a time and would skip this trigger
        text = f"{args.sync} sync {workflow_id} is still running: following it"
    out.show(
        "trigger", {"schedule_id": sync.schedule_id, "workflow_id": workflow_id, "started": started}, text
    )
    if args.detach:
        return 0
    handle = ctx.client.get_workflow_handle(workflow_id, result_type=sync.result_type)

    def show(progress: SyncResult) -> None:
        fields = {"sync": args.sync, **asdict(progress)}
        out.show("progress", fields, f"{args.sync}: {progress.summary()}")

    try:
        final = await follow(handle, sync.progress_query, sync.result_type, show)
    except WorkflowFailureError as error:
        return out.fail(f"{workflow_id} ended without finishing: {error.cause or error}")
    return 0 if final.done else FAILED


async def status(args: argparse.Namespace, ctx: Context) -> int:
    """The schedules' table; exits 1 when a watermark could not be read (the rest is still shown)."""
    rows = []
    unread = False
    for flow in scheduled(ctx.settings):
        row = await schedule_status(ctx.client, flow.schedule_id)
        name = WATERMARKS.get(flow.schedule_id)
        row["watermark"] = await watermark(ctx, name) if name else None
        unread = unread or (name is not None and row["watermark"] is None)
        rows.append(row)
    ctx.out.table("schedule", rows, STATUS_COLUMNS)
    return FAILED if unread else 0


async def schedule_status(client: Client, schedule_id: str) -> dict[str, Any]:
    """The schedule's next run and its latest run: when it started, how it is or ended, what it counted."""
    info = (await client.get_schedule_handle(schedule_id).describe()).info
    row: dict[str, Any] = {
        "schedule_id": schedule_id,
        "next_run_at": info.next_action_times[0] if info.next_action_times else None,
        "workflow_id": None,
        "started_at": None,
        "outcome": "never run",
        "closed_at": None,
        "counts": None,
        "result": None,
    }
    latest = info.recent_actions[-1] if info.recent_actions else None
    if latest is None or not isinstance(latest.action, ScheduleActionExecutionStartWorkflow):
        return row
    workflow_id = latest.action.workflow_id
    handle = client.get_workflow_handle(workflow_id)  # its latest run, past any continue-as-new
    described = await handle.describe()
    row.update(
        workflow_id=workflow_id,
        started_at=latest.started_at,
        outcome=described.status.name.lower() if described.status else "unknown",
        closed_at=described.close_time,
    )
    if row["outcome"] == "completed":
        row["result"] = await handle.result()
    # The syncs keep a one-line account in their memo as they go; the small flows only have a result.
    row["counts"] = (await described.memo()).get("progress") or _numbers(row["result"])
    return row


async def watermark(ctx: Context, name: str) -> datetime | str | None:
    """Where a sync has landed up to (its next run reads from there, less the overlap)."""
    try:
        async with one_off_sessions(ctx.settings.database_url) as sessions:
            moment = await read_watermark(sessions, name)
    except Exception as error:  # the status of the schedules is worth showing without the database
        ctx.out.fail(f"the {name} watermark could not be read: {type(error).__name__}: {error}")
        return None
    return moment or "none yet (the next run reads everything)"


def _numbers(result: Any) -> str | None:
    if not isinstance(result, dict):
        return None
    counts = [f"{name} {value}" for name, value in result.items() if type(value) is int]  # not the flags
    return ", ".join(counts) or None

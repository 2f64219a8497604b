"""``hub dbt build``: build silver and gold now, from where support runs the command; ``hub dbt status``.

It holds the lease of the warehouse's scheduled builds (``activities.dbt``): it waits for a build under
way, and the scheduled builds wait for it, so two builds never write the same tables at once (an
upgrade's ``--full-refresh`` beside an hourly build, say). It runs dbt as a child process, as the worker
does (``warehouse.dbt_child``), and prints dbt's lines as they come; Ctrl-C stops the build (dbt cancels
its BigQuery jobs).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from cli.command import Context, Subcommands, command
from cli.output import FAILED, Output
from contracts.dbt_build import STATUS_QUERY, DbtBuildStatus, DbtBuildSummary, dbt_build_workflow_id
from core.settings import Settings
from db.engine import database_unavailable, one_off_sessions
from db.leases import Holding, held, holding
from warehouse.dbt import build_command, parse_summary
from warehouse.dbt_child import BIGQUERY_JOB_TIMEOUT, LeaseLost, child_environment, lease_holder, run_child

# A status query waits for a warehouse worker to answer; none up is said after this.
STATUS_TIMEOUT = timedelta(seconds=10)


def add_commands(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    dbt = commands.add_parser("dbt", help="build silver and gold now, never beside a scheduled build")
    actions = dbt.add_subparsers(dest="action", required=True)
    build = command(
        actions, "build", "run dbt build under the scheduled builds' lease; its summary", common, build_now
    )
    build.add_argument(
        "--full-refresh", action="store_true", help="rebuild the incremental models from all of bronze"
    )
    build.add_argument("--select", nargs="+", default=[], metavar="MODEL", help="dbt's node selection")
    build.add_argument("--fast", action="store_true", help="leave out unit tests and what is tagged hourly")
    command(
        actions,
        "status",
        "the build workflow's state and last builds, and who holds the build lease",
        common,
        show_status,
    )


async def build_now(args: argparse.Namespace, ctx: Context) -> int:
    """Take the lease (waiting for another holder), build, let go; exit 1 unless the build passed."""
    out, settings = ctx.out, ctx.settings
    holder = lease_holder("hub dbt build")
    length = timedelta(seconds=settings.dbt_build_lease_seconds)

    def waiting(other: str, free_by: datetime) -> None:
        out.show(
            "waiting",
            {"holder": other, "free_by": free_by},
            f"waiting for the build holding the lease to end ({other}; were it to stop renewing now,"
            f" the lease would be free at {free_by:%H:%M:%S} UTC)",
        )

    async def echo(line: str) -> None:
        # A paused terminal holds dbt's output back, not the loop that renews the lease.
        await asyncio.to_thread(out.show, "dbt", {"line": line}, line)

    build, environment = child_command(args, settings), child_environment(settings)
    async with one_off_sessions(settings.database_url) as sessions:
        lease_name = dbt_build_workflow_id(settings)
        try:
            async with held(
                sessions, lease_name, holder, length, drain=BIGQUERY_JOB_TIMEOUT, waiting=waiting
            ) as lease:
                output = await run_child(build, environment, lease, echo)
        except LeaseLost:
            return out.fail(
                "the build lost its lease (the portal database did not answer its renewals, or another"
                " holder took it) and was stopped"
            )
    return report(out, parse_summary(output.decode(errors="replace")))


async def show_status(args: argparse.Namespace, ctx: Context) -> int:
    """What the build workflow says (a build under way, requests waiting, the last builds, the models
    fast builds leave out) and the lease. Each part is shown when the other cannot be read; exit 1 when
    one could not."""
    out, settings = ctx.out, ctx.settings
    workflow_id = dbt_build_workflow_id(settings)
    problems = []
    lease: LeaseView | None = None
    lease_line = f"lease {workflow_id}: not read"
    try:
        async with one_off_sessions(settings.database_url) as sessions:
            lease = lease_view(await holding(sessions, workflow_id))
        lease_line = describe_lease(workflow_id, lease)
    except SQLAlchemyError as error:
        if not database_unavailable(error):
            raise
        problems.append(
            f"the lease could not be read: the portal database did not answer ({type(error).__name__})"
        )
    workflow, status, problem = await read_status(ctx.client, workflow_id)
    problems += [problem] if problem else []
    fields = {
        "workflow_id": workflow_id,
        "workflow": workflow,
        "status": status and asdict(status),
        "lease": lease and asdict(lease),
    }
    text = [*describe_status(workflow_id, workflow, status), lease_line]
    out.show("dbt_status", fields, "\n".join(text))
    for problem in problems:
        out.fail(problem)
    return FAILED if problems else 0


async def read_status(client: Client, workflow_id: str) -> tuple[str, DbtBuildStatus | None, str | None]:
    """The build workflow's ``status`` query: ``answered``, ``not_found`` (no build asked for yet),
    ``no_answer`` or ``cannot_answer``, with the answer and what went wrong."""
    try:
        status = await client.get_workflow_handle(workflow_id).query(
            STATUS_QUERY, result_type=DbtBuildStatus, rpc_timeout=STATUS_TIMEOUT
        )
        return "answered", status, None
    except WorkflowQueryFailedError as error:  # its query handler failed, or its task did
        return "cannot_answer", None, f"{workflow_id} cannot answer: {error}"
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return "not_found", None, None
        if error.status == RPCStatusCode.FAILED_PRECONDITION:  # its workflow task keeps failing
            return "cannot_answer", None, f"{workflow_id} cannot answer: {error}"
        # The client's own time-out ("Timeout expired") is CANCELLED; the server's DEADLINE_EXCEEDED.
        if error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            waited = f"{STATUS_TIMEOUT.total_seconds():g} s"
            why = "no warehouse worker polling, or Temporal slow"
            return "no_answer", None, f"{workflow_id} did not answer in {waited}: {why}"
        raise


def describe_status(workflow_id: str, workflow: str, status: DbtBuildStatus | None) -> list[str]:
    if status is None:
        said = {"not_found": "no build workflow yet (no build asked for)"}
        return [f"{workflow_id}: {said.get(workflow, 'its state could not be read (see below)')}"]
    if status.building:
        doing = "building"
    elif status.pending and status.last_started_at:  # waiting out the spacing since the last start
        due = datetime.fromisoformat(status.last_started_at) + timedelta(seconds=status.spacing_seconds)
        doing = f"next build due at {when(due)}"
    else:
        doing = "next build starting" if status.pending else "idle"
    if status.pending:
        doing += f"; {len(status.pending)} request(s) waiting: {', '.join(status.pending)}"
    lines = [
        f"{workflow_id}: {doing}",
        f"builds: {status.builds} ({status.failed_builds} failed); last started"
        f" {when(status.last_started_at)}, last passed {when(status.last_success_at)}, last full build"
        f" started {when(status.last_full_at)}",
    ]
    if status.last is not None:
        *details, outcome = describe(status.last).splitlines()
        lines.append("last build: " + "; ".join([outcome, *details]))  # the outcome first
    if status.blocked:
        lines.append(f"left out of fast builds until a full build passes: {', '.join(status.blocked)}")
    return lines


@dataclass
class LeaseView:
    """The build lease as support reads it: ``held`` (renewed while its build runs), ``draining`` (its
    holder ended, or stopped renewing: what it left may still run), or ``free`` (by ``free_by``)."""

    state: str
    holder: str
    expires_at: datetime
    free_by: datetime


def lease_view(lease: Holding | None) -> LeaseView | None:
    """The lease as of when it was read, on the database's clock."""
    if lease is None:
        return None
    free_by = lease.expires_at + BIGQUERY_JOB_TIMEOUT  # ``take`` gives it to another from then on
    now = lease.as_of
    state = "held" if now < lease.expires_at else "draining" if now < free_by else "free"
    return LeaseView(state, lease.holder, lease.expires_at, free_by)


def describe_lease(name: str, lease: LeaseView | None) -> str:
    if lease is None:
        return f"lease {name}: free"
    if lease.state == "held":
        return (
            f"lease {name}: held by {lease.holder}, renewed while its build runs (were it to stop now,"
            f" free at {when(lease.free_by)})"
        )
    if lease.state == "draining":
        return (
            f"lease {name}: {lease.holder} ended or stopped renewing; free at {when(lease.free_by)}, once"
            " what it left running has had time to end"
        )
    return f"lease {name}: free (last held by {lease.holder}, free since {when(lease.free_by)})"


def when(moment: datetime | str | None) -> str:
    """A time as the hub command's tables show it."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def child_command(args: argparse.Namespace, settings: Settings) -> list[str]:
    work_dir = Path(settings.dbt_work_dir).resolve()  # where the child keeps dbt's target and logs
    return build_command(work_dir, select=args.select, full_refresh=args.full_refresh, fast=args.fast)


def report(out: Output, summary: DbtBuildSummary) -> int:
    out.show("summary", asdict(summary), describe(summary))
    return 0 if summary.success else FAILED


def describe(summary: DbtBuildSummary) -> str:
    """The build's outcome in a few lines: what failed, then the counts."""
    if summary.error:
        return f"dbt build could not run: {summary.error}"
    lines = [*(f"failed: {failure}" for failure in summary.failures)]
    lines += [f"warning: {warning}" for warning in summary.warnings]
    outcome = "dbt build passed" if summary.success else "dbt build FAILED"
    lines.append(
        f"{outcome} in {summary.seconds:.0f} s: {summary.models_built} models built, {summary.models_failed}"
        f" failed; tests {summary.tests_passed} passed, {summary.tests_failed} failed,"
        f" {summary.tests_warned} warned; {summary.skipped} skipped"
    )
    return "\n".join(lines)

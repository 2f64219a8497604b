"""``hub dbt build``: build silver and gold now, from where support runs the command.

It holds the same lease as the scheduled builds of the warehouse (``activities.dbt``): it waits for a
build under way, and the scheduled builds wait for it, so two builds never write the same tables at
once (after an upgrade's ``--full-refresh``, say). It runs dbt as a child process, as the worker does,
and prints dbt's lines as they come; Ctrl-C stops the build (dbt cancels its BigQuery jobs).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from activities.dbt import build_by_hand
from cli.command import Context, Subcommands, command
from cli.output import FAILED
from contracts.dbt_build import DbtBuildSummary
from core.settings import Settings
from db.engine import one_off_sessions
from db.leases import Holding
from warehouse.dbt import build_command


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


async def build_now(args: argparse.Namespace, ctx: Context) -> int:
    out, settings = ctx.out, ctx.settings
    build = child_command(args, settings)

    def waiting(holding: Holding) -> None:
        out.show(
            "waiting",
            {"holder": holding.holder, "expires_at": holding.expires_at},
            f"waiting: another build holds the lease ({holding.holder}, until {holding.expires_at:%H:%M:%S}"
            " UTC, or until it ends)",
        )

    def echo(line: str) -> None:
        out.show("dbt", {"line": line}, line)

    async with one_off_sessions(settings.database_url) as sessions:
        summary = await build_by_hand(settings, sessions, build, echo, waiting)
    out.show("summary", asdict(summary), describe(summary))
    return 0 if summary.success else FAILED


def child_command(args: argparse.Namespace, settings: Settings) -> list[str]:
    work_dir = Path(settings.dbt_work_dir).resolve()  # where the child keeps dbt's target and logs
    return build_command(work_dir, select=args.select, full_refresh=args.full_refresh, fast=args.fast)


def describe(summary: DbtBuildSummary) -> str:
    """The build's outcome in a few lines: what failed first, then the counts."""
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

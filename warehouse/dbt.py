"""dbt builds of the silver and gold layers: run in a child process, summarised for Temporal.

``python -m warehouse.dbt build`` runs ``dbt build`` through dbt's programmatic runner (``dbtRunner``) on
the project in ``dbt/`` and prints a JSON summary on its last line. The build runs in a process of its
own because dbt keeps global state between invocations and its BigQuery adapter costs a worker about
200 MiB; the child gives both back when it exits. :func:`dbt_environment` names everything the profile
reads, from the hub's settings.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts.dbt_build import DbtBuildSummary
from core.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt"
SUMMARY_PREFIX = "DBT-SUMMARY "
TEST_TYPES = {"test", "unit_test"}
# A fast build (the 30-second path, after landings) leaves out what does not change with new rows or
# reads whole tables: dbt's unit tests (they check the models' logic on fixed rows) and everything
# tagged "hourly" (daily_sales, product_performance, and the tests that scan whole tables). A full
# build runs everything; the build workflow runs one at least hourly (README, "Silver and gold").
FAST_BUILD_EXCLUDES = ["--exclude-resource-type", "unit_test", "--exclude", "tag:hourly"]
# How far back a source freshness check reads bronze: longer than any source's error_after (72 hours),
# so a table stale enough to matter still shows when it last landed, up to a week back.
FRESHNESS_LOOKBACK = timedelta(days=7)


def dbt_environment(settings: Settings) -> dict[str, str]:
    """The variables ``dbt/profiles.yml`` and the models read, from the hub's settings."""
    environment = {
        "HUB_BIGQUERY_PROJECT": settings.bigquery_project,
        "HUB_BIGQUERY_LOCATION": settings.bigquery_location,
        "HUB_BIGQUERY_DATASET_PREFIX": settings.bigquery_dataset_prefix,
        "HUB_BIGQUERY_CREDENTIALS_FILE": settings.bigquery_credentials_file,
        "HUB_DBT_TARGET": settings.dbt_target or ("emulator" if settings.bigquery_endpoint else "bigquery"),
        "HUB_DBT_MAXIMUM_BYTES_BILLED": str(settings.dbt_maximum_bytes_billed),
        "HUB_BUSINESS_TIMEZONE": settings.business_timezone,  # the marts' days, as the API's
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    if settings.bigquery_endpoint:
        environment["BIGQUERY_EMULATOR_HOST"] = settings.bigquery_endpoint
    return environment


def build_command(
    work_dir: Path,
    select: Sequence[str] = (),
    full_refresh: bool = False,
    fast: bool = False,
    blocked: Sequence[str] = (),
) -> list[str]:
    """The child process that builds: this module, with where dbt keeps its target and logs."""
    command = [sys.executable, "-m", "warehouse.dbt", "build", "--work-dir", str(work_dir)]
    if select:
        command += ["--select", *select]
    if full_refresh:
        command.append("--full-refresh")
    if fast:
        command.append("--fast")
    if blocked:
        command += ["--blocked", *blocked]
    return command


def parse_summary(output: str) -> DbtBuildSummary:
    """The summary the child printed, or one that says it printed none (it crashed)."""
    for line in reversed(output.splitlines()):
        if line.startswith(SUMMARY_PREFIX):
            return DbtBuildSummary(**json.loads(line[len(SUMMARY_PREFIX) :]))
    return DbtBuildSummary(error=f"dbt printed no summary; last output: {output[-500:]}")


def summarise(results: Sequence[Any]) -> DbtBuildSummary:
    """Count dbt's run results by kind and status; name each failure."""
    summary = DbtBuildSummary()
    tested: dict[str, set[str]] = {}  # model -> the statuses of its tests in this build
    for result in results:
        kind, status, name = str(result.node.resource_type), str(result.status), result.node.name
        message = f"{name}: {result.message or status}"
        models = models_under_test(result.node) if kind in TEST_TYPES else []
        if kind == "test":
            for model in models:
                tested.setdefault(model, set()).add(status)
        if kind in TEST_TYPES:
            if status == "pass":
                summary.tests_passed += 1
            elif status == "warn":
                summary.tests_warned += 1
                summary.warnings.append(message)
            elif status in ("fail", "error"):
                summary.tests_failed += 1
                summary.failures.append(message)
                summary.blocked += [model for model in models if model not in summary.blocked]
            else:
                summary.skipped += 1
        elif kind == "operation":  # an on-run-start/-end hook: it builds nothing, but its failure counts
            if status == "error":
                summary.failures.append(message)
        elif status == "success":
            summary.models_built += 1
        elif status == "error":
            summary.models_failed += 1
            summary.failures.append(message)
        else:
            summary.skipped += 1
    summary.success = not summary.failures
    summary.cleared = sorted(model for model, seen in tested.items() if seen <= {"pass", "warn"})
    return summary


def models_under_test(node: Any) -> list[str]:
    """The models a test checks: the one a generic test is attached to, or those a singular one reads."""
    attached = getattr(node, "attached_node", None)
    depends_on = getattr(getattr(node, "depends_on", None), "nodes", None) or []
    ids = [attached] if attached else [n for n in depends_on if str(n).startswith("model.")]
    return [str(unique_id).rsplit(".", 1)[-1] for unique_id in ids]


def fast_build_excludes(blocked: Sequence[str]) -> list[str]:
    """dbt's arguments that leave out of a fast build what it does not build (``FAST_BUILD_EXCLUDES``),
    and each blocked model with everything that reads it (``orders+``)."""
    return [*FAST_BUILD_EXCLUDES, *(f"{model}+" for model in blocked)]


def run_build(
    work_dir: Path, select: Sequence[str], full_refresh: bool, fast: bool = False, blocked: Sequence[str] = ()
) -> DbtBuildSummary:
    """Run ``dbt build`` in this process (the child's side)."""
    from dbt.cli.main import dbtRunner  # heavy: only the child process loads dbt
    from dbt.exceptions import ParsingError
    from dbt_common.exceptions import CompilationError, DbtConfigError

    started = time.monotonic()
    # Set for the build too: dbt's saved parse records the sources' filter, and a value that changed
    # between the build and the freshness check would have each of them parse the project again.
    since = os.environ["HUB_FRESHNESS_SINCE"] = freshness_since(datetime.now(UTC))
    arguments = ["build", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    arguments += ["--target-path", str(work_dir / "target"), "--log-path", str(work_dir / "logs")]
    if select:
        arguments += ["--select", *select]
    if full_refresh:
        arguments.append("--full-refresh")
    if fast:
        arguments += fast_build_excludes(blocked)
    runner = dbtRunner()
    outcome = runner.invoke(arguments)
    results = getattr(outcome.result, "results", None)
    if results is None:
        failure = outcome.exception
        summary = DbtBuildSummary(error=str(failure or "dbt did not run") or type(failure).__name__)
        if isinstance(outcome.exception, DbtConfigError | ParsingError | CompilationError):
            summary.error_kind = "project"
    else:
        summary = summarise(results)
        summary.success = summary.success and outcome.success
        if not fast and not select:
            check_freshness(runner, work_dir, summary, since)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def check_freshness(runner: Any, work_dir: Path, summary: DbtBuildSummary, since: str) -> None:
    """Run ``dbt source freshness`` and note each bronze table's status and newest landing in ``summary``.

    It only reads ``max(ingested_at)``; a stale table is a warning of the build (and the
    ``hub_bronze_freshness`` metric), not a failure: the models built from what is there are right.
    The sources' filter reads ``HUB_FRESHNESS_SINCE``, ``since`` (``run_build`` sets it): a literal,
    which BigQuery prunes partitions by.
    """
    arguments = ["source", "freshness", "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    arguments += ["--target-path", str(work_dir / "target"), "--log-path", str(work_dir / "logs")]
    arguments += ["--output", str(work_dir / "target" / "sources.json")]
    outcome = runner.invoke(arguments)
    for result in getattr(outcome.result, "results", None) or []:
        if str(result.node.resource_type) != "source":  # the project's on-run-start/-end hooks run too
            continue
        table, status = result.node.name, str(result.status)
        summary.freshness[table] = "error" if status == "runtime error" else status
        loaded = getattr(result, "max_loaded_at", None)
        if loaded is not None and loaded.year > 1:  # dbt says year 1 for a table with no rows
            summary.loaded_at[table] = loaded.isoformat()
        else:
            loaded = None
        if status == "runtime error":  # the check's query failed
            why = str(getattr(result, "message", "") or "no answer").splitlines()[0]
            summary.warnings.append(f"source {table}: freshness error, checked since {since}: {why}")
        elif status != "pass":
            newest = loaded or f"none since {since}"  # the check reads the week from ``since``
            summary.warnings.append(f"source {table}: freshness {status}, newest row landed {newest}")


def freshness_since(now: datetime) -> str:
    """The start of the day ``FRESHNESS_LOOKBACK`` before ``now``, as a BigQuery timestamp literal: the
    same value all day, so dbt re-parses the sources once a day, not at every check."""
    day = (now.astimezone(UTC) - FRESHNESS_LOOKBACK).date()
    return f"{day.isoformat()} 00:00:00+00"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m warehouse.dbt", description="Build silver and gold.")
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--work-dir", type=Path, default=Path("var/dbt"))
    parser.add_argument("--select", nargs="*", default=[])
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument("--fast", action="store_true", help="leave out unit tests and what is tagged hourly")
    parser.add_argument(
        "--blocked", nargs="*", default=[], help="with --fast: models to leave out, with what reads them"
    )
    args = parser.parse_args(argv)
    # SIGINT is how the build activity stops a build: dbt then cancels its BigQuery jobs. A process
    # started with SIGINT ignored (a shell's background job) would run on to its end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not os.environ.get("HUB_DBT_TARGET"):  # run by hand (the build activity names everything)
        sys.stderr.write(
            "warning: a build run this way takes no lease and may run beside a scheduled build;"
            " `hub dbt build` waits for one under way, and they wait for it\n"
        )
        # What the environment sets stands; an empty value (.env.example's HUB_DBT_TARGET=) does not.
        given = {name: value for name, value in os.environ.items() if value}
        os.environ.update({**dbt_environment(Settings()), **given})
    summary = run_build(args.work_dir, args.select, args.full_refresh, args.fast, args.blocked)
    sys.stdout.write(SUMMARY_PREFIX + json.dumps(asdict(summary)) + "\n")
    sys.exit(0 if summary.success else 1)


if __name__ == "__main__":
    main()

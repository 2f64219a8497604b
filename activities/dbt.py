"""Activities that build silver and gold with dbt, and that ask for such a build.

The build runs ``python -m warehouse.dbt build`` as a child process and heartbeats while it waits: a
cancelled or timed-out activity kills the child, and a worker killed outright takes it along. Asking for
a build is a signal-with-start of the one ``DbtBuildWorkflow`` (``contracts.dbt_build``), which
coalesces the requests that arrive while it builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeats import heartbeating
from contracts.dbt_build import BuildRequest, BuildRequester, DbtBuildSummary
from core.metrics import ORDER_CHANGE_LATENCY
from core.settings import Settings
from core.timeutil import seconds_since
from warehouse.dbt import build_command, dbt_environment, parse_summary

log = logging.getLogger("activities.dbt")
# The build must not outlive its worker. A worker killed outright (SIGKILL, the OOM killer on a bare host)
# runs no ``finally``, and its orphaned build would go on beside the one Temporal's retry starts on
# another worker, both writing the same tables. setpriv (util-linux, in the image) has the kernel kill the
# child with its parent (PR_SET_PDEATHSIG). In a container the two die together anyway.
DIES_WITH_WORKER: tuple[str, ...] = (
    ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") else ()
)
# A build that cannot run until someone fixes the dbt project or profile (parse, compile, configuration).
DBT_PROJECT_BROKEN = "DbtProjectBroken"


@dataclass
class DbtBuildInput:
    fast: bool = False  # leave out unit tests and what is tagged hourly (warehouse.dbt.FAST_BUILD_EXCLUDES)
    # The oldest order change this build brings to gold (``BuildRequest.oldest_received_at``).
    oldest_received_at: str | None = None
    # Fast builds: models the last full build's error-level tests failed on, left out with what reads them.
    blocked: list[str] = field(default_factory=list)


class DbtActivities:
    """Runs dbt builds for this worker's settings."""

    def __init__(self, settings: Settings) -> None:
        self._environment = {**os.environ, **dbt_environment(settings)}
        self._work_dir = Path(settings.dbt_work_dir).resolve()

    @activity.defn
    async def dbt_build(self, params: DbtBuildInput) -> DbtBuildSummary:
        """Run ``dbt build``; failed tests come back in the summary (a build that could not run raises)."""
        command = build_command(
            self._work_dir, fast=params.fast, blocked=params.blocked if params.fast else ()
        )
        process = await asyncio.create_subprocess_exec(
            *DIES_WITH_WORKER,
            *command,
            env=self._environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with heartbeating():
                output, _ = await process.communicate()
        finally:
            if process.returncode is None:  # cancelled or timed out: the build must not outlive us
                process.kill()
                with contextlib.suppress(ProcessLookupError):
                    await process.wait()
        text = output.decode(errors="replace")
        summary = parse_summary(text)
        if summary.error:
            log.error("dbt build could not run: %s", summary.error)
            if summary.error_kind == "project":  # a broken profile or model: retrying cannot help
                raise ApplicationError(
                    f"dbt project or profile broken: {summary.error}"[:2000],
                    type=DBT_PROJECT_BROKEN,
                    non_retryable=True,
                )
            raise RuntimeError(f"dbt build could not run: {summary.error}")
        if not summary.success:
            log.warning("dbt build failed: %s", "; ".join(summary.failures)[:2000])
        elif params.oldest_received_at:
            ORDER_CHANGE_LATENCY.labels("gold").observe(seconds_since(params.oldest_received_at))
        return summary


class BuildRequestActivities:
    """The activity through which a workflow that landed something asks for a build."""

    def __init__(self, requester: BuildRequester) -> None:
        self._requester = requester

    @activity.defn
    async def request_dbt_build(self, params: BuildRequest) -> None:
        """Ask for a build (a sync or backfill that landed something); coalesced with others."""
        await self._requester.request(params)

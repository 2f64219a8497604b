"""Activities that build silver and gold with dbt, and that ask for such a build.

The build runs ``python -m warehouse.dbt build`` as a child process (``warehouse.dbt_child``) and
heartbeats while it waits: a cancelled or timed-out activity stops the child (SIGINT, then a kill), and
a worker killed outright takes it along. A worker cut off from Temporal hears of neither, so each build
also holds a lease in the portal database (``db.leases``): Temporal's retry on another worker waits for
it, and a build that loses it stops. Asking for a build is a signal-with-start of the one
``DbtBuildWorkflow`` (``contracts.dbt_build``), which coalesces the requests that arrive while it builds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeats import heartbeating
from contracts.dbt_build import BuildRequest, BuildRequester, DbtBuildSummary
from core.metrics import ORDER_CHANGE_LATENCY
from core.settings import Settings
from core.timeutil import seconds_since
from db.leases import held
from warehouse.dbt import build_command, parse_summary
from warehouse.dbt_child import BIGQUERY_JOB_TIMEOUT, LeaseLost, child_environment, lease_holder, run_child

log = logging.getLogger("activities.dbt")
# A build that cannot run until someone fixes the dbt project or profile (parse, compile, configuration).
DBT_PROJECT_BROKEN = "DbtProjectBroken"  # or could not run in CANNOT_RUN_ATTEMPTS: not retried
# Attempts of a build that cannot run (the workflow's RETRY: 5 s doubling to 5 min, about 20 minutes)
# before it is recorded as failed.
CANNOT_RUN_ATTEMPTS = 10
# A build stopped because it lost its lease: another may be building; the retry waits for the lease.
DBT_BUILD_LEASE_LOST = "DbtBuildLeaseLost"


@dataclass
class DbtBuildInput:
    fast: bool = False  # leave out unit tests and what is tagged hourly (warehouse.dbt.FAST_BUILD_EXCLUDES)
    # The oldest order change this build brings to gold (``BuildRequest.oldest_received_at``).
    oldest_received_at: str | None = None
    # Fast builds: models the last full build's error-level tests failed on, left out with what reads them.
    blocked: list[str] = field(default_factory=list)


class DbtActivities:
    """Runs dbt builds for this worker's settings."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._environment = child_environment(settings)
        self._work_dir = Path(settings.dbt_work_dir).resolve()
        self._sessions = sessions
        self._lease = timedelta(seconds=settings.dbt_build_lease_seconds)

    @activity.defn
    async def dbt_build(self, params: DbtBuildInput) -> DbtBuildSummary:
        """Run ``dbt build``; failed tests come back in the summary (a build that could not run raises)."""
        command = build_command(
            self._work_dir, fast=params.fast, blocked=params.blocked if params.fast else ()
        )
        # One lease per build workflow (per warehouse dataset prefix): the builds that write the same tables.
        name = activity.info().workflow_id or "dbt-build"
        async with (
            heartbeating(),
            held(self._sessions, name, _holder(), self._lease, drain=BIGQUERY_JOB_TIMEOUT) as lease,
        ):
            try:
                output = await run_child(command, self._environment, lease)
            except LeaseLost as lost:  # retried like any build: the retry waits for the lease
                raise ApplicationError(str(lost), type=DBT_BUILD_LEASE_LOST) from None
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
            if activity.info().attempt >= CANNOT_RUN_ATTEMPTS:
                # Not a warehouse away for a while (revoked credentials, a child that crashes): recorded
                # as a failed build, named and alerted on, so the requests waiting behind it go on; the
                # next request tries again.
                raise ApplicationError(
                    f"dbt build could not run in {CANNOT_RUN_ATTEMPTS} attempts: {summary.error}"[:2000],
                    type=DBT_PROJECT_BROKEN,
                    non_retryable=True,
                )
            raise RuntimeError(f"dbt build could not run: {summary.error}")
        if not summary.success:
            log.warning("dbt build failed: %s", "; ".join(summary.failures)[:2000])
            return summary
        log.info(
            "dbt %s build passed in %.0f s: %d models, %d tests passed, %d warned",
            "fast" if params.fast else "full",
            summary.seconds,
            summary.models_built,
            summary.tests_passed,
            summary.tests_warned,
        )
        if params.oldest_received_at:
            ORDER_CHANGE_LATENCY.labels("gold").observe(seconds_since(params.oldest_received_at))
        return summary


def _holder() -> str:
    """This attempt, in this process."""
    info = activity.info()
    return lease_holder(f"{info.workflow_run_id} {info.activity_id}#{info.attempt}")


class BuildRequestActivities:
    """The activity through which a workflow that landed something asks for a build."""

    def __init__(self, requester: BuildRequester) -> None:
        self._requester = requester

    @activity.defn
    async def request_dbt_build(self, params: BuildRequest) -> None:
        """Ask for a build (a sync or backfill that landed something); coalesced with others."""
        await self._requester.request(params)

"""DbtBuildWorkflow: the one place silver and gold are built, one build at a time.

Flows that landed something signal ``request_build`` (with signal-with-start, so the workflow starts if
it is not running). Requests that arrive while a build runs are coalesced into one more build after it:
a build reads bronze when it starts, so rows landed during a build are picked up by the next. A build
starts no sooner than the requests' spacing after the last one started (BigQuery's daily writes per
table; ``dbt_build_spacing_seconds``), requests meanwhile joining it. Each
build's summary (models built, tests passed, failed and warned, each failure by name) is in the history,
the memo and the ``last_build`` query; a build with failures is logged as a warning and counted in the
``dbt_build_failures`` metric. The workflow continues as new after a number of builds.

Builds that requests ask for are fast: they leave out the unit tests and what is tagged ``hourly`` (the
gold tables that read all of history, the tests that scan whole tables; ``warehouse.dbt``). At least
once an hour a full build runs everything, asked for or not: its checks and its source freshness.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import error_type

with workflow.unsafe.imports_passed_through():
    from activities.dbt import DBT_PROJECT_BROKEN, DbtActivities, DbtBuildInput
    from contracts.dbt_build import STATUS_QUERY, BuildRequest, DbtBuildStatus, DbtBuildSummary, earliest
    from core.constants import DBT_BUILD_WORKFLOW, REQUEST_BUILD_SIGNAL

BUILD_TIMEOUT = timedelta(minutes=60)
HEARTBEAT_TIMEOUT = timedelta(seconds=60)
BUILDS_PER_RUN = 100  # then continue-as-new
# dbt could not run (the warehouse away): try again, but never more than one at a time. A broken project
# or profile is not retried: the build is recorded as failed, and the next request tries again.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[DBT_PROJECT_BROKEN],
)
# Patch: the run continues as new as soon as Temporal suggests it (request signals grow its history),
# not only after BUILDS_PER_RUN builds.
CONTINUE_WHEN_SUGGESTED = "continue-as-new-when-suggested"
# Patch: requests get fast builds, and a full build runs at least every FULL_BUILD_EVERY (before it,
# every build was full, and only when asked for).
FAST_AND_HOURLY_FULL = "fast-builds-and-hourly-full-builds"
FULL_BUILD_EVERY = timedelta(hours=1)
# Patch: a fast build leaves out the models an error-level test failed on in the last full build, and
# what reads them (fast builds run no such test, so they would build gold from the failing rows). Runs
# started before it built them anyway.
FAST_BUILDS_KEEP_BLOCKS = "fast-builds-leave-out-blocked-models"
# Patch: a build starts no sooner than the requests' spacing after the last one started (requests
# meanwhile coalesce into it), so however steady the landings, each table is written at most 86,400 /
# spacing times a day: BigQuery allows 1,500. Runs started before it built back to back.
SPACED_BUILDS = "builds-spaced-by-the-requests-spacing"


@workflow.defn(name=DBT_BUILD_WORKFLOW)
class DbtBuildWorkflow:
    def __init__(self) -> None:
        self._pending: list[str] = []
        self._oldest_received: str | None = None  # the pending requests' oldest order change
        self._status = DbtBuildStatus()
        self._full_asked = False  # a pending request asked for a full build
        self._spacing: float | None = None  # the newest request's spacing, in seconds

    @workflow.signal(name=REQUEST_BUILD_SIGNAL)
    def request_build(self, request: BuildRequest) -> None:
        if request.reason not in self._pending:
            self._pending.append(request.reason)
        self._oldest_received = earliest(self._oldest_received, request.oldest_received_at)
        self._full_asked = self._full_asked or request.full
        if request.spacing_seconds is not None:
            self._spacing = request.spacing_seconds

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> DbtBuildStatus:
        return replace(
            self._status,
            pending=list(self._pending),
            oldest_received_at=self._oldest_received,
            full_asked=self._full_asked,
            spacing_seconds=self._spacing or 0.0,
        )

    @workflow.run
    async def run(self, params: DbtBuildStatus) -> None:
        self._pending = [*params.pending, *self._pending]
        self._oldest_received = earliest(params.oldest_received_at, self._oldest_received)
        self._status = DbtBuildStatus(
            params.builds,
            params.failed_builds,
            last=params.last,
            last_success_at=params.last_success_at,
            last_full_at=params.last_full_at,
            last_full=params.last_full,
            blocked=list(params.blocked),
            last_started_at=params.last_started_at,
        )
        self._full_asked = self._full_asked or params.full_asked
        if self._spacing is None:  # no request came with the start: the last run's
            self._spacing = params.spacing_seconds
        when_suggested = workflow.patched(CONTINUE_WHEN_SUGGESTED)
        cadence = workflow.patched(FAST_AND_HOURLY_FULL)
        spaced = workflow.patched(SPACED_BUILDS)

        def suggested() -> bool:
            return when_suggested and workflow.info().is_continue_as_new_suggested()

        for _ in range(BUILDS_PER_RUN):
            with contextlib.suppress(TimeoutError):  # on time out, a full build is due, asked for or not
                await workflow.wait_condition(
                    lambda: bool(self._pending) or suggested(),
                    timeout=self._until_full() if cadence else None,
                )
            if suggested():
                break
            if spaced:
                await self._wait_for_spacing()
            full = not cadence or self._full_asked or self._full_due()
            self._full_asked = False
            reasons, self._pending = self._pending or ["hourly full build"], []
            oldest_received, self._oldest_received = self._oldest_received, None
            self._status.building = True
            if spaced:
                self._status.last_started_at = workflow.now().isoformat(timespec="microseconds")
            if cadence and full:
                self._status.last_full_at = workflow.now().isoformat(timespec="microseconds")
            self._record(await self._build(oldest_received, fast=not full), reasons, cadence, full)
        # Requests that arrived meanwhile go on with the next run.
        workflow.continue_as_new(replace(self.status(), building=False))

    async def _wait_for_spacing(self) -> None:
        """Until the spacing since the last build's start has passed; requests meanwhile join this build."""
        last = self._status.last_started_at
        if last is None or not self._spacing:
            return
        wait = datetime.fromisoformat(last) + timedelta(seconds=self._spacing) - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait)

    def _full_due(self) -> bool:
        """Whether the next build runs everything: none ran yet, or the last one is an hour old."""
        last = self._status.last_full_at
        return last is None or workflow.now() - datetime.fromisoformat(last) >= FULL_BUILD_EVERY

    def _until_full(self) -> timedelta | None:
        """How long until a full build is due on its own. Also when nothing was asked for since: its
        freshness check is what notices that landings stopped."""
        if self._status.last_full_at is None:
            return None
        due = datetime.fromisoformat(self._status.last_full_at) + FULL_BUILD_EVERY
        return max(due - workflow.now(), timedelta(seconds=1))

    def _blocked(self, fast: bool) -> list[str]:
        """What a fast build leaves out: the models a full build's blocking tests failed on, which no
        full build since ran and passed."""
        if not fast or not self._status.blocked:
            return []
        return list(self._status.blocked) if workflow.patched(FAST_BUILDS_KEEP_BLOCKS) else []

    def _update_blocked(self, summary: DbtBuildSummary) -> None:
        """After a full build: what it failed on is blocked, what it passed is not; a model whose tests
        did not run (skipped, or a build that could not run) keeps its state."""
        was = self._status.blocked
        if not (summary.blocked or was) or not workflow.patched(FAST_BUILDS_KEEP_BLOCKS):
            return
        if summary.error:
            return
        kept = [model for model in was if model not in summary.cleared and model not in summary.blocked]
        self._status.blocked = sorted({*kept, *summary.blocked})

    async def _build(self, oldest_received: str | None, fast: bool) -> DbtBuildSummary:
        try:
            return await workflow.execute_activity_method(
                DbtActivities.dbt_build,
                DbtBuildInput(oldest_received_at=oldest_received, fast=fast, blocked=self._blocked(fast)),
                start_to_close_timeout=BUILD_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RETRY,
            )
        except ActivityError as error:
            if error_type(error) != DBT_PROJECT_BROKEN:
                raise
            # Recorded as a failed build (memo, metric, alert); waiting requests go on with the next.
            message = cast(ApplicationError, error.cause).message
            return DbtBuildSummary(error=message, error_kind="project", failures=[message[:500]])

    def _record(self, summary: DbtBuildSummary, reasons: list[str], cadence: bool, full: bool) -> None:
        status = self._status
        status.building = False
        status.last = summary
        if full:
            status.last_full = summary
            self._update_blocked(summary)
        status.builds += 1
        meter = workflow.metric_meter()
        meter.create_counter("dbt_builds", "dbt builds run").add(1)
        if summary.success:
            status.last_success_at = workflow.now().isoformat(timespec="microseconds")
        else:
            status.failed_builds += 1
            meter.create_counter("dbt_build_failures", "dbt builds with a failed model or test").add(1)
            workflow.logger.warning("dbt build failed: %s", "; ".join(summary.failures)[:2000])
        outcome = "passed" if summary.success else f"FAILED: {'; '.join(summary.failures)[:1500]}"
        kind = ("full build, " if full else "fast build, ") if cadence else ""
        held = [] if full else self._blocked(fast=True)
        if held:
            kind += f"left out until a full build passes them: {', '.join(held)} and what reads them; "
        workflow.upsert_memo(
            {
                "last_build": (
                    f"{outcome} ({kind}{summary.models_built} models, {summary.tests_passed} tests passed,"
                    f" {summary.tests_failed} failed, {summary.tests_warned} warned; {summary.seconds:.0f} s;"
                    f" asked by {', '.join(reasons)})"
                ),
                "builds": f"{status.builds} builds, {status.failed_builds} failed",
            }
        )

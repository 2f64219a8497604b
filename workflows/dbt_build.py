"""DbtBuildWorkflow: the one place silver and gold are built, one build at a time.

Flows that landed something signal ``request_build`` (with signal-with-start, so the workflow starts if
it is not running). Requests that arrive while a build runs are coalesced into one more build after it:
a build reads bronze when it starts, so rows landed during a build are picked up by the next. Each
build's summary (models built, tests passed, failed and warned, each failure by name) is in the history,
the memo and the ``last_build`` query; a build with failures is logged as a warning and counted in the
``dbt_build_failures`` metric. The workflow continues as new after a number of builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import error_type

with workflow.unsafe.imports_passed_through():
    from activities.dbt import (
        DBT_PROJECT_BROKEN,
        BuildRequest,
        DbtActivities,
        DbtBuildInput,
        DbtBuildWorkflowInput,
        earliest,
    )
    from core.constants import DBT_BUILD_WORKFLOW, REQUEST_BUILD_SIGNAL
    from warehouse.dbt import DbtBuildSummary

STATUS_QUERY = "status"
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


@dataclass
class DbtBuildStatus:
    """What support reads in the ``status`` query: builds so far, the last one, requests waiting."""

    builds: int = 0
    failed_builds: int = 0
    building: bool = False
    pending: list[str] = field(default_factory=list)
    last: DbtBuildSummary | None = None
    last_success_at: str | None = None  # when the last build that passed ended (ISO 8601 UTC)


@workflow.defn(name=DBT_BUILD_WORKFLOW)
class DbtBuildWorkflow:
    def __init__(self) -> None:
        self._pending: list[str] = []
        self._oldest_received: str | None = None  # the pending requests' oldest order change
        self._status = DbtBuildStatus()

    @workflow.signal(name=REQUEST_BUILD_SIGNAL)
    def request_build(self, request: BuildRequest) -> None:
        if request.reason not in self._pending:
            self._pending.append(request.reason)
        self._oldest_received = earliest(self._oldest_received, request.oldest_received_at)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> DbtBuildStatus:
        return replace(self._status, pending=list(self._pending))

    @workflow.run
    async def run(self, params: DbtBuildWorkflowInput) -> None:
        self._pending = [*params.pending, *self._pending]
        self._oldest_received = earliest(params.oldest_received_at, self._oldest_received)
        self._status = DbtBuildStatus(
            params.builds, params.failed_builds, last=params.last, last_success_at=params.last_success_at
        )
        when_suggested = workflow.patched(CONTINUE_WHEN_SUGGESTED)

        def suggested() -> bool:
            return when_suggested and workflow.info().is_continue_as_new_suggested()

        for _ in range(BUILDS_PER_RUN):
            await workflow.wait_condition(lambda: bool(self._pending) or suggested())
            if suggested():
                break
            reasons, self._pending = self._pending, []
            oldest_received, self._oldest_received = self._oldest_received, None
            self._status.building = True
            self._record(await self._build(oldest_received), reasons)
        # Requests that arrived meanwhile go on with the next run.
        status = self._status
        workflow.continue_as_new(
            DbtBuildWorkflowInput(
                self._pending,
                status.builds,
                status.failed_builds,
                status.last,
                status.last_success_at,
                self._oldest_received,
            )
        )

    async def _build(self, oldest_received: str | None) -> DbtBuildSummary:
        try:
            return await workflow.execute_activity_method(
                DbtActivities.dbt_build,
                DbtBuildInput(oldest_received_at=oldest_received),
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

    def _record(self, summary: DbtBuildSummary, reasons: list[str]) -> None:
        status = self._status
        status.building = False
        status.last = summary
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
        workflow.upsert_memo(
            {
                "last_build": (
                    f"{outcome} ({summary.models_built} models, {summary.tests_passed} tests passed,"
                    f" {summary.tests_failed} failed, {summary.tests_warned} warned; {summary.seconds:.0f} s;"
                    f" asked by {', '.join(reasons)})"
                ),
                "builds": f"{status.builds} builds, {status.failed_builds} failed",
            }
        )

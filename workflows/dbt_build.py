"""DbtBuildWorkflow: the one place silver and gold are built, one build at a time.

Flows that landed something signal ``request_build`` (with signal-with-start, so the workflow starts if
it is not running). Requests that arrive while a build runs are coalesced into one more build after it:
a build reads bronze when it starts, so rows landed during a build are picked up by the next. Each
build's summary (models built, tests passed, failed and warned, each failure by name) is in the history,
the memo and the ``last_build`` query; a build with failures is logged as a warning and counted in the
``dbt_build_failures`` metric. The workflow continues as new after a number of builds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.dbt import BuildRequest, DbtActivities, DbtBuildInput, DbtBuildWorkflowInput
    from core.constants import DBT_BUILD_WORKFLOW, REQUEST_BUILD_SIGNAL
    from warehouse.dbt import DbtBuildSummary

LAST_BUILD_QUERY = "last_build"
BUILD_TIMEOUT = timedelta(minutes=60)
HEARTBEAT_TIMEOUT = timedelta(seconds=60)
BUILDS_PER_RUN = 100  # then continue-as-new
# dbt could not run (warehouse away, broken profile): try again, but never more than one at a time.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5))


@workflow.defn(name=DBT_BUILD_WORKFLOW)
class DbtBuildWorkflow:
    def __init__(self) -> None:
        self._pending: list[str] = []
        self._last: DbtBuildSummary | None = None

    @workflow.signal(name=REQUEST_BUILD_SIGNAL)
    def request_build(self, request: BuildRequest) -> None:
        if request.reason not in self._pending:
            self._pending.append(request.reason)

    @workflow.query(name=LAST_BUILD_QUERY)
    def last_build(self) -> DbtBuildSummary | None:
        return self._last

    @workflow.run
    async def run(self, params: DbtBuildWorkflowInput) -> None:
        self._pending = [*params.pending, *self._pending]
        self._last = params.last
        state = params
        for _ in range(BUILDS_PER_RUN):
            await workflow.wait_condition(lambda: bool(self._pending))
            reasons, self._pending = self._pending, []
            summary = await workflow.execute_activity_method(
                DbtActivities.dbt_build,
                DbtBuildInput(),
                start_to_close_timeout=BUILD_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RETRY,
            )
            state = self._record(state, summary, reasons)
        # Requests that arrived meanwhile go on with the next run.
        workflow.continue_as_new(replace(state, pending=self._pending, last=self._last))

    def _record(
        self, state: DbtBuildWorkflowInput, summary: DbtBuildSummary, reasons: list[str]
    ) -> DbtBuildWorkflowInput:
        self._last = summary
        state = replace(
            state, builds=state.builds + 1, failed_builds=state.failed_builds + (not summary.success)
        )
        meter = workflow.metric_meter()
        meter.create_counter("dbt_builds", "dbt builds run").add(1)
        if not summary.success:
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
                "builds": f"{state.builds} builds, {state.failed_builds} failed",
            }
        )
        return state

"""The sandbox every worker and replayer runs the workflows in."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# Each workflow run re-executes, inside the sandbox, every module its workflow module imports unless
# it is passed through; with hundreds of runs in the cache, those copies dominate the worker's memory.
# The workflow modules import only deterministic code (dataclasses, constants, the activity
# contracts), so they share the modules the worker loaded; the sandbox still checks every call.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
)

"""The sandbox every worker and replayer runs the workflows in."""

from __future__ import annotations

from typing import Any

from temporalio.converter import SerializationContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._runner import _Instance as SdkSandboxedInstance

# Where the SDK's sandboxed instance keeps the workflow's instance inside the sandbox (its globals).
IN_SANDBOX = "__temporal_in_sandbox"


class SandboxedInstance(SdkSandboxedInstance):
    """A workflow run in the sandbox whose payload bookkeeping does not go through the sandbox.

    For every payload it encodes or decodes, the worker asks the run which serialization context (and
    which external-storage context) applies. The SDK answers both through the sandbox: it compiles a
    snippet and runs it under the sandbox's import and builtins overrides. That was about a fifth of
    the ``flows`` worker's CPU while dealers accepted leads, for two lookups that read the run's own
    state and run no workflow code. They are asked of the run directly; workflow code (activations)
    still runs in the sandbox. Where an SDK release no longer keeps the run where this expects it, the
    SDK's own way is taken (``tests/workflows/test_sandbox.py`` tells which one runs).
    """

    def direct(self) -> Any | None:
        """The run inside the sandbox, where this SDK keeps it; None elsewhere."""
        globals_and_locals = getattr(self, "globals_and_locals", None)
        return globals_and_locals.get(IN_SANDBOX) if isinstance(globals_and_locals, dict) else None

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        run = self.direct()
        if run is None:
            return super().get_serialization_context(command_info)
        context: SerializationContext | None = run.get_serialization_context(command_info)
        return context

    def get_external_store_context(self, command_info: Any) -> Any:
        run = self.direct()
        if run is None:
            return super().get_external_store_context(command_info)
        return run.get_external_store_context(command_info)


class WorkflowSandbox(SandboxedWorkflowRunner):
    """The SDK's sandbox, with its runs' payload bookkeeping asked directly (``SandboxedInstance``)."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return SandboxedInstance(det, self.runner_class, self.restrictions)


# Each workflow run re-executes, inside the sandbox, every module its workflow module imports unless
# it is passed through; with hundreds of runs in the cache, those copies dominate the worker's memory.
# The workflow modules import only deterministic code (dataclasses, constants, the activity
# contracts), so they share the modules the worker loaded. What the sandbox still checks is workflow
# code's use of builtins (open, input, ...) and of modules it imports while it runs
# (tests/workflows/test_sandbox.py). What a workflow module imports at its top is the worker's own and
# unchecked: determinism there rests on review and on the saved histories CI replays.
WORKFLOW_RUNNER = WorkflowSandbox(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())

"""The workers' sandbox: workflow code still runs checked, and payload bookkeeping skips the sandbox."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workflows.sandbox import WORKFLOW_RUNNER, SandboxedInstance, SdkSandboxedInstance


@activity.defn(name="sandbox_echo")
async def echo(word: str) -> str:
    return word


@workflow.defn(name="SandboxProbe")
class SandboxProbe:
    """An activity's argument and result, a signal and a result: payloads of every kind."""

    def __init__(self) -> None:
        self.heard = ""

    @workflow.signal
    def hear(self, word: str) -> None:
        self.heard = word

    @workflow.run
    async def run(self, name: str) -> str:
        echoed = await workflow.execute_activity(echo, name, start_to_close_timeout=timedelta(seconds=10))
        await workflow.wait_condition(lambda: bool(self.heard))
        return f"{echoed} {self.heard}"


@workflow.defn(name="SandboxClockReader")
class ClockReader:
    @workflow.run
    async def run(self) -> str:
        import datetime as imported_in_the_run  # imported inside the sandbox: checked

        return imported_in_the_run.datetime.now().isoformat()  # the machine's clock: differs on replay


@workflow.defn(name="SandboxFileReader")
class FileReader:
    @workflow.run
    async def run(self) -> str:
        with open("/etc/hostname") as file:  # I/O in workflow code: refused
            return file.read()


def worker(env: WorkflowEnvironment, queue: str) -> Worker:
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[SandboxProbe, ClockReader, FileReader],
        activities=[echo],
        workflow_runner=WORKFLOW_RUNNER,
        workflow_failure_exception_types=[workflow.NondeterminismError],  # fail the run, not retry the task
        max_cached_workflows=0,  # every task replays the run in a new sandboxed instance
    )


async def test_payloads_are_encoded_with_contexts_asked_of_the_run_not_of_the_sandbox(
    temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = {"directly": 0, "through the sandbox": 0}

    def counted(way: str, ask: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            asked[way] += 1
            return ask(*args)

        return wrapper

    monkeypatch.setattr(SandboxedInstance, "direct", counted("directly", SandboxedInstance.direct))
    sdk_ask = SdkSandboxedInstance.get_serialization_context
    monkeypatch.setattr(
        SdkSandboxedInstance, "get_serialization_context", counted("through the sandbox", sdk_ask)
    )
    queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    async with worker(temporal_env, queue):
        handle = await temporal_env.client.start_workflow(
            SandboxProbe.run, "Marina", id=f"sandbox-probe-{uuid.uuid4()}", task_queue=queue
        )
        await handle.signal(SandboxProbe.hear, "accepted")
        assert await handle.result() == "Marina accepted"
    assert asked["directly"] > 0
    assert asked["through the sandbox"] == 0  # with this SDK, the run is found where expected


@pytest.mark.parametrize(
    ("refused", "access"), [(ClockReader.run, "datetime.datetime.now"), (FileReader.run, "__builtins__.open")]
)
async def test_workflow_code_still_runs_checked_by_the_sandbox(
    temporal_env: WorkflowEnvironment, refused: Any, access: str
) -> None:
    queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    async with worker(temporal_env, queue):
        with pytest.raises(WorkflowFailureError) as failed:
            await temporal_env.client.execute_workflow(
                refused, id=f"sandbox-refused-{uuid.uuid4()}", task_queue=queue
            )
    assert f"Cannot access {access}" in str(failed.value.cause)

"""``hub replay``: a run replays with the code that ran it; a run of changed code does not, and says why."""

from __future__ import annotations

import uuid

from temporalio.worker import Worker

from tests.cli.conftest import HubCli
from tests.hub import Hub
from tests.workflows.changed_workflows import HookConfigWithAPauseFirst
from tests.workflows.record_histories import start_hook_config
from workflows.sandbox import WORKFLOW_RUNNER
from workflows.vtex_hook_config import VtexHookConfigWorkflow


async def test_a_run_of_the_current_code_replays(hub: Hub, hub_cli: HubCli) -> None:
    handle = await start_hook_config(hub.client, hub.settings, VtexHookConfigWorkflow.run)
    await handle.result()
    ran = await hub_cli(hub.settings, "replay", "--workflow-id", handle.id, "--json")
    assert ran.code == 0, ran.out + ran.err
    [replayed] = ran.lines("replay")
    assert replayed["workflow_type"] == "VtexHookConfigWorkflow"
    assert (replayed["replays"], replayed["nondeterministic"], replayed["error"]) == (True, False, None)


async def test_a_run_of_other_code_is_reported_non_deterministic(hub: Hub, hub_cli: HubCli) -> None:
    # The same workflow type, run by a definition with a timer before its activity (on a queue of its own).
    queue = f"changed-{uuid.uuid4().hex[:8]}"
    async with Worker(
        hub.client, task_queue=queue, workflows=[HookConfigWithAPauseFirst], workflow_runner=WORKFLOW_RUNNER
    ):
        handle = await start_hook_config(hub.client, hub.settings, HookConfigWithAPauseFirst.run, queue)
        await handle.result()
    assert handle.result_run_id
    ran = await hub_cli(hub.settings, "replay", "--workflow-id", handle.id, "--run-id", handle.result_run_id)
    assert ran.code == 1
    assert f"{handle.id} (run " in ran.out and "is NOT deterministic with the current code" in ran.out
    assert "NondeterminismError" in ran.out


async def test_an_unknown_workflow_is_said_to_be_unknown(hub: Hub, hub_cli: HubCli) -> None:
    unknown = f"lead-{uuid.uuid4().hex}"  # the server is shared: other tests' ids are taken
    ran = await hub_cli(hub.settings, "replay", "--workflow-id", unknown)
    assert ran.code == 1 and f"no workflow {unknown}" in ran.err

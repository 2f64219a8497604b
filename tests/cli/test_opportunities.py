"""``hub opportunities redrive``: the deal changes a broken-off run held are delivered again and stored."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from temporalio.testing import WorkflowEnvironment

from core.constants import opportunity_workflow_id
from tests.cli.conftest import HubCli
from tests.hub import running_hub
from tests.support import eventually
from tests.workflows.test_opportunity_sync import change, history_of
from workers.main import role_workers


async def test_redrive_stores_the_changes_of_a_terminated_deal_run(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, hub_cli: HubCli
) -> None:
    since = datetime.now(UTC).isoformat()
    client = temporal_env.client
    # No worker yet: the change is acknowledged (a signal in the deal's run), then the run is terminated.
    async with running_hub(client, sqlite_url, task_queue, worker=False) as hub:
        deal_id = await hub.create_deal(Deal_Name="Frota 12 Tracker - Locadora Norte")
        first = change(deal_id, 1, "Qualification")
        assert (await hub.post_deal_webhook(first)).status_code == 202
        workflow_id = opportunity_workflow_id(deal_id)
        await client.get_workflow_handle(workflow_id).terminate("stuck, say")
        # The deal's next change opens a new run, which holds only its own.
        second = change(deal_id, 2, "Needs Analysis")
        assert (await hub.post_deal_webhook(second)).status_code == 202

        redrive = ("opportunities", "redrive", "--since", since, "--json")
        listed = await hub_cli(hub.settings, *redrive, "--status", "terminated", "--dry-run")
        assert listed.code == 0, listed.err
        [row] = [r for r in listed.lines("deal") if r["workflow_id"] == workflow_id]
        assert (row["ended"], row["action"]) == ("terminated", "would redrive")
        done = await hub_cli(hub.settings, *redrive, "--status", "terminated", "--yes")
        assert done.code == 0, done.err
        [row] = [r for r in done.lines("deal") if r["workflow_id"] == workflow_id]
        assert row["action"] == "redriven (1 change(s) delivered again)"
        assert await hub.count_workflows(f"WorkflowId = '{workflow_id}'") == 2  # into the open run

        async with AsyncExitStack() as stack:
            workers = await stack.enter_async_context(role_workers(client, hub.settings, "flows"))
            for worker in workers:
                await stack.enter_async_context(worker)

            async def both_stages() -> dict[str, Any] | None:
                deal = await hub.opportunity(deal_id)
                return deal if deal and len(deal["stage_history"]) == 2 else None

            deal = await eventually(both_stages)
        assert history_of(deal) == [(None, "Qualification"), ("Qualification", "Needs Analysis")]
        assert deal["stage"] == "Needs Analysis"

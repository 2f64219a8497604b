"""``hub orders redrive``: the changes an order's broken-off run held are delivered again and land."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from temporalio.testing import WorkflowEnvironment

from core.constants import vtex_order_workflow_id
from tests.cli.conftest import HubCli
from tests.hub import running_hub
from tests.workflows.test_vtex_order import landed
from warehouse.tables import VTEX_ORDER_EVENTS, VTEX_ORDERS
from workers.main import role_workers


async def test_redrive_lands_the_changes_of_a_terminated_order_run(
    temporal_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    warehouse_settings: dict[str, Any],
    hub_cli: HubCli,
) -> None:
    since = datetime.now(UTC).isoformat()
    client = temporal_env.client
    # No worker yet: the hook is acknowledged (a signal in the order's run), then the run is terminated.
    async with running_hub(client, sqlite_url, task_queue, worker=False, **warehouse_settings) as hub:
        order_id = await hub.create_order()
        moved = await hub.move_order(order_id, "payment-approved")
        assert [d["status_code"] for d in moved["deliveries"]] == [200]
        workflow_id = vtex_order_workflow_id(order_id)
        await client.get_workflow_handle(workflow_id).terminate("stuck, say")
        # The order's next hook opens a new run, which holds only its own change.
        handling = await hub.move_order(order_id, "handling")
        assert [d["status_code"] for d in handling["deliveries"]] == [200]

        redrive = ("orders", "redrive", "--since", since, "--json")
        failed_only = await hub_cli(hub.settings, *redrive, "--status", "failed", "--dry-run")
        assert failed_only.code == 0 and not [
            r for r in failed_only.lines("order") if r["workflow_id"] == workflow_id
        ]
        listed = await hub_cli(hub.settings, *redrive, "--status", "terminated", "--dry-run")
        [row] = [r for r in listed.lines("order") if r["workflow_id"] == workflow_id]
        assert (row["ended"], row["action"]) == ("terminated", "would redrive")

        done = await hub_cli(hub.settings, *redrive, "--yes")
        assert done.code == 0, done.err
        [row] = [r for r in done.lines("order") if r["workflow_id"] == workflow_id]
        assert row["action"] == "redriven (1 change(s) delivered again)"

        # The change went to the run the next hook opened: no third run.
        assert await hub.count_workflows(f"WorkflowId = '{workflow_id}'") == 2

        async with AsyncExitStack() as stack:
            workers = await stack.enter_async_context(role_workers(client, hub.settings, "all"))
            for worker in workers:
                await stack.enter_async_context(worker)
            events = await landed(hub, order_id, VTEX_ORDER_EVENTS, 2)
            versions = await landed(hub, order_id, VTEX_ORDERS, 1)
        assert sorted(row["payload"]["State"] for row in events) == ["handling", "payment-approved"]
        assert versions[-1]["payload"]["status"] == "handling"

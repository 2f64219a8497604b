"""VTEX orders end to end: simulator hooks → API → VtexOrderWorkflow → OMS simulator → BigQuery emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from contracts.orders import STATUS_QUERY, VtexOrderStatus
from core.constants import vtex_order_workflow_id
from tests.conftest import BigQueryEmulator
from tests.hub import Hub, running_hub
from tests.support import TcpProxy, eventually
from warehouse.errors import WarehouseUnavailable
from warehouse.tables import QUARANTINE, VTEX_ORDER_EVENTS, VTEX_ORDERS
from workflows.vtex_feed_reconcile import VtexFeedReconcileInput, VtexFeedReconcileWorkflow
from workflows.vtex_hook_config import VtexHookConfigInput, VtexHookConfigWorkflow
from workflows.vtex_order import VtexOrderWorkflow

LIFECYCLE = ("payment-pending", "payment-approved", "ready-for-handling", "handling", "invoiced")


async def order_status(hub: Hub, order_id: str) -> VtexOrderStatus:
    handle = hub.client.get_workflow_handle_for(VtexOrderWorkflow.run, vtex_order_workflow_id(order_id))
    return await handle.query(STATUS_QUERY, result_type=VtexOrderStatus)


async def landed(
    hub: Hub, order_id: str, table: str, count: int, timeout: float = 60
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        rows = await hub.bronze(table, order_id)
        return rows if len(rows) >= count else None

    return await eventually(check, timeout=timeout)


def all_delivered(moved: dict[str, Any]) -> None:
    assert [d["status_code"] for d in moved["deliveries"]] == [200] * len(moved["deliveries"])


async def test_repeated_out_of_order_hooks_land_every_state_once(hub: Hub) -> None:
    order_id = await hub.create_order()
    moved = await hub.move_order(order_id, *LIFECYCLE, delivery="repeated_reversed")
    assert len(moved["deliveries"]) == 2 * len(LIFECYCLE)
    all_delivered(moved)

    events = await landed(hub, order_id, VTEX_ORDER_EVENTS, len(LIFECYCLE))
    assert [row["payload"]["State"] for row in events] == list(LIFECYCLE)  # each once, in change order
    assert len({row["event_key"] for row in events}) == len(LIFECYCLE)
    versions = await landed(hub, order_id, VTEX_ORDERS, 1)
    assert versions[-1]["payload"]["status"] == "invoiced"  # the latest state, recognised as latest
    assert versions[-1]["payload"]["orderId"] == order_id

    status = await order_status(hub, order_id)
    assert status.state == "invoiced"
    assert status.events_landed == len(LIFECYCLE)
    query = f"OrderId = '{order_id}' AND OrderState = 'invoiced'"
    assert await eventually(lambda: _count(hub, query)) == 1
    # A final state ends the workflow once late hooks had their chance.
    handle = hub.client.get_workflow_handle(vtex_order_workflow_id(order_id))
    result = await handle.result()
    assert result["state"] == "invoiced"
    assert len(await hub.bronze(VTEX_ORDER_EVENTS, order_id)) == len(LIFECYCLE)  # repeats not landed


async def test_late_older_hook_is_landed_but_does_not_move_the_state_back(hub: Hub) -> None:
    order_id = await hub.create_order()
    all_delivered(await hub.move_order(order_id, "payment-pending", "payment-approved", delivery="none"))
    all_delivered(await hub.move_order(order_id, "handling"))
    await landed(hub, order_id, VTEX_ORDERS, 1)
    # The hooks VTEX failed to deliver earlier arrive now, after the newer one.
    hooks = (await hub.http.get(f"{hub.sims_url}/_control/vtex/orders/{order_id}")).json()["hooks"]
    for payload in hooks[:2]:
        assert (await hub.post_order_hook(payload)).status_code == 200
    events = await landed(hub, order_id, VTEX_ORDER_EVENTS, 3)
    assert [row["payload"]["State"] for row in events] == ["payment-pending", "payment-approved", "handling"]

    async def ignored() -> VtexOrderStatus | None:
        status = await order_status(hub, order_id)
        return status if status.ignored == 2 else None

    status = await eventually(ignored)
    assert status.state == "handling"
    assert len(await hub.bronze(VTEX_ORDERS, order_id)) == 1  # no OMS read for older news


async def test_reconciler_recovers_hooks_that_were_lost(hub: Hub) -> None:
    order_id = await hub.create_order()
    moved = await hub.move_order(order_id, "payment-approved", "ready-for-handling", delivery="none")
    assert moved["deliveries"] == [] or all(d["status_code"] is None for d in moved["deliveries"])
    assert await hub.count_workflows(f"WorkflowId = '{vtex_order_workflow_id(order_id)}'") == 0

    result = await hub.client.execute_workflow(
        VtexFeedReconcileWorkflow.run,
        VtexFeedReconcileInput(api_task_queue=hub.settings.vtex_api_task_queue),
        id=f"reconcile-{order_id}",
        task_queue=hub.settings.vtex_orders_task_queue,
    )
    assert result.delivered == 2
    versions = await landed(hub, order_id, VTEX_ORDERS, 1)
    assert versions[-1]["payload"]["status"] == "ready-for-handling"
    events = await landed(hub, order_id, VTEX_ORDER_EVENTS, 2)
    assert {row["payload"]["state"] for row in events} == {"payment-approved", "ready-for-handling"}
    feed = (await hub.http.get(f"{hub.sims_url}/_control/vtex/feed")).json()
    items = feed["items"] if isinstance(feed, dict) else feed
    assert all(item["committed"] for item in items)


async def test_rate_limited_oms_read_waits_as_told(hub: Hub) -> None:
    await hub.fault(target="vtex", rate_limit_count=1, retry_after_seconds=2)
    order_id = await hub.create_order()
    all_delivered(await hub.move_order(order_id, "payment-approved"))
    await landed(hub, order_id, VTEX_ORDERS, 1)
    times = (await hub.http.get(f"{hub.sims_url}/_control/vtex/orders/{order_id}/requests")).json()["times"]
    assert len(times) == 2
    assert times[1] - times[0] >= 1.9  # Retry-After: 2, not the 1 s initial backoff


async def test_invalid_order_goes_to_quarantine(hub: Hub) -> None:
    order_id = await hub.create_order(value=-100)
    all_delivered(await hub.move_order(order_id, "payment-approved"))

    async def quarantined() -> list[dict[str, Any]] | None:
        warehouse = hub.warehouse()
        try:
            rows = await warehouse.query(
                f"select * from `{warehouse.table_id(warehouse.layers.bronze, QUARANTINE)}`"
            )
        except WarehouseUnavailable:
            return None  # nothing landed yet
        finally:
            await warehouse.aclose()
        return [row for row in rows if row["entity_id"] == order_id] or None

    rows = await eventually(quarantined)
    assert "value" in rows[0]["reason"]
    assert rows[0]["payload"]["value"] == -100
    assert await hub.bronze(VTEX_ORDERS, order_id) == []
    assert (await order_status(hub, order_id)).quarantined == 1


async def test_hook_configuration_is_reasserted(hub: Hub) -> None:
    result = await hub.client.execute_workflow(
        VtexHookConfigWorkflow.run,
        VtexHookConfigInput(
            hook_url=hub.settings.vtex_hook_url, api_task_queue=hub.settings.vtex_api_task_queue
        ),
        id=f"hook-config-{hub.settings.vtex_api_task_queue}",
        task_queue=hub.settings.vtex_orders_task_queue,
    )
    assert result.hook_url == hub.settings.vtex_hook_url
    hook = (await hub.http.get(f"{hub.sims_url}/_control/vtex/hook")).json()
    assert hook["saves"] == 1  # VTEX pinged our API and got its 200
    assert hook["config"]["hook"]["url"] == hub.settings.vtex_hook_url
    assert hook["config"]["hook"]["headers"] == {
        hub.settings.vtex_hook_secret_header: hub.settings.vtex_hook_secret.get_secret_value()
    }


@pytest.fixture
async def proxied_hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, bigquery_emulator: BigQueryEmulator,
    warehouse_prefix: str,
) -> AsyncIterator[tuple[Hub, Proxies]]:  # fmt: skip
    """A hub whose warehouse connections (REST and Storage Write) go through proxies the test can cut."""
    proxies = Proxies(
        TcpProxy("127.0.0.1", int(bigquery_emulator.rest.rsplit(":", 1)[1])),
        TcpProxy("127.0.0.1", int(bigquery_emulator.grpc.rsplit(":", 1)[1])),
    )
    await proxies.start()
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        bigquery_endpoint=f"http://127.0.0.1:{proxies.rest.port}",
        bigquery_write_endpoint=f"127.0.0.1:{proxies.grpc.port}",
        bigquery_dataset_prefix=warehouse_prefix,
        bigquery_timeout_seconds=1.0,
    ) as hub:
        yield hub, proxies
    await proxies.stop()


@dataclass
class Proxies:
    rest: TcpProxy
    grpc: TcpProxy

    async def start(self) -> None:
        await self.rest.start()
        await self.grpc.start()

    async def stop(self) -> None:
        await self.rest.stop()
        await self.grpc.stop()


async def test_warehouse_outage_loses_nothing(proxied_hub: tuple[Hub, Proxies]) -> None:
    hub, proxy = proxied_hub
    await proxy.stop()  # the warehouse is gone
    order_id = await hub.create_order()
    all_delivered(await hub.move_order(order_id, "payment-approved", "ready-for-handling"))
    handle = hub.client.get_workflow_handle(vtex_order_workflow_id(order_id))

    async def retrying() -> int | None:
        pending = (await handle.describe()).raw_description.pending_activities
        return pending[0].attempt if pending and pending[0].attempt >= 2 else None

    await eventually(retrying)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await proxy.start()  # back
    events = await landed(hub, order_id, VTEX_ORDER_EVENTS, 2)
    assert [row["payload"]["State"] for row in events] == ["payment-approved", "ready-for-handling"]
    versions = await landed(hub, order_id, VTEX_ORDERS, 1)
    assert versions[-1]["payload"]["status"] == "ready-for-handling"


async def _count(hub: Hub, query: str) -> int | None:
    return await hub.count_workflows(query) or None

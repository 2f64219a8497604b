"""VTEX orders end to end: simulator hooks → API → VtexOrderWorkflow → OMS simulator → BigQuery emulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.vtex import (
    ORDER_NOT_FOUND,
    LandEventsInput,
    LandOrderInput,
    LandOrderResult,
    VtexOrderActivities,
)
from clients.errors import PermanentError
from contracts.orders import ORDER_CHANGED, STATUS_QUERY, VtexOrderInput, VtexOrderStatus
from core.constants import REDRIVE_PARKED_SIGNAL, vtex_order_workflow_id
from core.vtex import OrderEvent, change_key, order_event_key
from simulators.vtex_orders import generate_order
from tests.conftest import BigQueryEmulator
from tests.hub import Hub, running_hub
from tests.support import TcpProxy, eventually, skip_time
from warehouse.errors import WarehouseUnavailable
from warehouse.tables import QUARANTINE, VTEX_ORDER_EVENTS, VTEX_ORDERS
from workflows.sandbox import WORKFLOW_RUNNER
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


async def untimed_invoiced_hook(hub: Hub) -> str:
    """An order read at handling, then invoiced, whose invoiced hook arrives without CurrentChange."""
    order_id = await hub.create_order()
    all_delivered(await hub.move_order(order_id, "payment-approved", "handling"))
    await landed(hub, order_id, VTEX_ORDERS, 1)
    all_delivered(await hub.move_order(order_id, "invoiced", delivery="none"))
    invoiced = (await hub.http.get(f"{hub.sims_url}/_control/vtex/orders/{order_id}")).json()["hooks"][-1]
    assert invoiced["State"] == "invoiced"
    del invoiced["CurrentChange"]
    assert (await hub.post_order_hook(invoiced)).status_code == 200
    return order_id


async def test_a_hook_without_current_change_still_reads_the_order(hub: Hub) -> None:
    """Some hooks carry no CurrentChange: their LastChange is when the state before began, so by its
    time the change looks no newer than the state already read. The order is read all the same."""
    order_id = await untimed_invoiced_hook(hub)
    versions = await landed(hub, order_id, VTEX_ORDERS, 2)
    assert versions[-1]["payload"]["status"] == "invoiced"
    assert (await order_status(hub, order_id)).state == "invoiced"


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


class RefusingBronze:
    """Bronze as a warehouse that refuses the events' append for good until ``fixed`` (a permission taken
    away), for the real ``land_order_events``; the OMS read is a stand-in."""

    def __init__(self) -> None:
        self.fixed = False
        self.refused = 0
        self.landed: list[str] = []

    async def land(self, table: str, records: list[Any]) -> None:
        if not self.fixed:
            self.refused += 1
            raise PermanentError("bigquery", "PERMISSION_DENIED: bigquery.tables.updateData denied")
        self.landed += [record.event_key for record in records]

    async def request_soon(self, reason: str, oldest_received_at: str | None = None) -> None:
        return None

    @activity.defn(name="land_order_version")
    async def land_order_version(self, params: LandOrderInput) -> LandOrderResult:
        return LandOrderResult(
            status=None, last_change=None, event_key=f"{params.order_id}@k"
        )  # the hook's state


def order_worker(env: WorkflowEnvironment, task_queue: str, events: Any, version: Any) -> Worker:
    """A worker for order workflows with these two steps (stand-ins, or the real ones over stand-ins)."""
    return Worker(
        env.client,
        task_queue=task_queue,
        workflows=[VtexOrderWorkflow],
        activities=[events, version],
        workflow_runner=WORKFLOW_RUNNER,
    )


@asynccontextmanager
async def refusing_bronze(env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[RefusingBronze]:
    """A worker for order workflows whose bronze refuses appends until ``fixed``."""
    bronze = RefusingBronze()
    real = VtexOrderActivities(cast(Any, None), cast(Any, bronze), cast(Any, bronze))
    async with order_worker(env, task_queue, real.land_order_events, bronze.land_order_version):
        yield bronze


async def start_refused_order(
    env: WorkflowEnvironment, task_queue: str
) -> tuple[WorkflowHandle[Any, VtexOrderStatus], OrderEvent]:
    """An order run and the first state change it was told of (its landing is refused)."""
    order_id = f"refused-{uuid.uuid4().hex[:8]}"
    handle = await env.client.start_workflow(
        VtexOrderWorkflow.run,
        VtexOrderInput(order_id=order_id, api_task_queue=task_queue, final_linger_seconds=0),
        id=vtex_order_workflow_id(order_id),
        task_queue=task_queue,
    )
    event = OrderEvent(order_id, "handling", change_key("2026-12-05T10:00:00Z"))
    await handle.signal(ORDER_CHANGED, event)
    return handle, event


INVOICED_AT = change_key("2026-12-05T11:00:00Z")


async def park_then_redrive(
    env: WorkflowEnvironment,
    handle: WorkflowHandle[Any, VtexOrderStatus],
    event: OrderEvent,
    bronze: RefusingBronze,
) -> VtexOrderStatus:
    """Wait for the run to park the refused landing, fix bronze, redrive, and invoice the order."""
    query = f"WorkflowId = '{handle.id}' AND Parked = 'bigquery' AND ExecutionStatus = 'Running'"
    await eventually(lambda: parked(env, query))
    bronze.fixed = True
    await handle.signal(REDRIVE_PARKED_SIGNAL)
    await handle.signal(ORDER_CHANGED, replace(event, state="invoiced", change=INVOICED_AT))
    return await handle.result()


async def test_events_bronze_refuses_for_good_are_parked_until_redriven(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Acknowledged state changes are never dropped: a refused append parks the run (Parked =
    'bigquery', the memo says why); redriven once the cause is fixed, the same events land."""
    async with refusing_bronze(temporal_env, task_queue) as bronze:
        handle, event = await start_refused_order(temporal_env, task_queue)
        query = f"WorkflowId = '{handle.id}' AND Parked = 'bigquery' AND ExecutionStatus = 'Running'"
        await eventually(lambda: parked(temporal_env, query))
        memo = await (await handle.describe()).memo_value("parked")
        assert "bronze refused the append" in memo and "PERMISSION_DENIED" in memo
        assert bronze.refused == 1 and bronze.landed == []  # refused for good: not retried in a loop
        result = await park_then_redrive(temporal_env, handle, event, bronze)
    invoiced = order_event_key(event.order_id, "invoiced", INVOICED_AT)
    assert bronze.landed == [event.key, invoiced]  # the parked change first, then the next
    assert (result.events_landed, result.state) == (2, "invoiced")


class RefusingOrderVersions(RefusingBronze):
    """Bronze that takes the state changes but refuses order versions for good until ``fixed``, behind
    the real ``land_order_version``; the OMS answers every read with a valid order."""

    async def land(self, table: str, records: list[Any]) -> None:
        if table == VTEX_ORDER_EVENTS:
            self.landed += [record.event_key for record in records]
            return
        await super().land(table, records)

    async def get_order(self, order_id: str) -> dict[str, Any]:
        status = "invoiced" if self.fixed else "handling"  # (invoiced by the time bronze is mended)
        changed = "2026-12-05T11:00:00.0000000Z" if self.fixed else "2026-12-05T10:00:00.0000000Z"
        return generate_order(1, order_id=order_id, overrides={"status": status, "lastChange": changed})


async def version_parked_then_redriven(env: WorkflowEnvironment, task_queue: str) -> tuple[str, str]:
    """An order run whose version BigQuery refuses until fixed: parked, fixed, redriven, landed; its
    workflow id and the memo the park left."""
    bronze = RefusingOrderVersions()
    real = VtexOrderActivities(cast(Any, bronze), cast(Any, bronze), cast(Any, bronze))
    async with order_worker(env, task_queue, real.land_order_events, real.land_order_version):
        handle, event = await start_refused_order(env, task_queue)
        query = f"WorkflowId = '{handle.id}' AND Parked = 'bigquery' AND ExecutionStatus = 'Running'"
        await eventually(lambda: parked(env, query))
        memo = await (await handle.describe()).memo_value("parked")
        assert bronze.landed == [event.key] and bronze.refused == 1
        bronze.fixed = True
        await handle.signal(REDRIVE_PARKED_SIGNAL)
        result = await handle.result()  # the OMS read again: invoiced meanwhile, the run's last state
        assert (result.versions_landed, result.state) == (1, "invoiced")
        assert bronze.landed[-1] == f"{event.order_id}@{INVOICED_AT}"
    return handle.id, str(memo)


async def test_an_order_version_bronze_refuses_for_good_is_parked_as_bigquery(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """The OMS answered; BigQuery refused the version's append: the run parks it as BigQuery's refusal,
    which `hub parked redrive --partner bigquery` finds, not as the OMS's."""
    _, memo = await version_parked_then_redriven(temporal_env, task_queue)
    assert "bronze refused the order version" in memo and "PERMISSION_DENIED" in memo


async def parked(env: WorkflowEnvironment, query: str) -> bool:
    return (await env.client.count_workflows(query)).count == 1


class StandInOms:
    """Stand-ins for an order run's two steps: its state changes land; its reads, as a subclass says."""

    reads = 0

    @activity.defn(name="land_order_events")
    async def land_order_events(self, params: LandEventsInput) -> None:
        return None


class OmsWithoutTheOrder(StandInOms):
    """The order's reads answered 404 until ``found``; its state changes land."""

    def __init__(self) -> None:
        self.found = False

    @activity.defn(name="land_order_version")
    async def land_order_version(self, params: LandOrderInput) -> LandOrderResult:
        self.reads += 1
        if not self.found:
            raise ApplicationError(
                f"the OMS has no order {params.order_id}", type=ORDER_NOT_FOUND, non_retryable=True
            )
        return LandOrderResult(status="invoiced", last_change=INVOICED_AT, event_key=f"{params.order_id}@v")


async def test_an_order_the_oms_does_not_know_is_read_again_then_parked(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """A hook said the order changed, the OMS answers 404: read again after 30 s, 2, 5 and 10 min, then
    parked as "vtex" where support sees it; redriven once the OMS serves it, the version lands. (Before,
    the version was given up on until the order's next event, which a final state never has.)"""
    oms = OmsWithoutTheOrder()
    _, result = await order_not_found_then_found(skipping_env, task_queue, oms)
    assert (oms.reads, result.versions_landed, result.state) == (6, 1, "invoiced")


class OmsBehindItsHooks(StandInOms):
    """An OMS that serves the order's previous version (handling, changed before the invoiced hook)
    until ``caught_up``; its state changes land."""

    def __init__(self, *, caught_up_after: int | None = None) -> None:
        self.caught_up_after = caught_up_after  # reads served behind, then the hook's version

    @activity.defn(name="land_order_version")
    async def land_order_version(self, params: LandOrderInput) -> LandOrderResult:
        self.reads += 1
        if self.caught_up_after is None or self.reads <= self.caught_up_after:
            return LandOrderResult("handling", HANDLING_AT, event_key=f"{params.order_id}@h")
        return LandOrderResult("invoiced", INVOICED_AT, event_key=f"{params.order_id}@i")


HANDLING_AT = change_key("2026-12-05T10:00:00Z")


async def told_it_was_invoiced(
    env: WorkflowEnvironment, task_queue: str, *, timed: bool = True, **params: Any
) -> WorkflowHandle[Any, VtexOrderStatus]:
    """A new order run (``params`` for its input), and the invoiced hook it was told of: with
    CurrentChange (``timed``), or without, its change then LastChange, when the state before (handling)
    began."""
    order_id = f"invoiced-{uuid.uuid4().hex[:8]}"
    handle = await env.client.start_workflow(
        VtexOrderWorkflow.run,
        VtexOrderInput(order_id=order_id, api_task_queue=task_queue, **params),
        id=vtex_order_workflow_id(order_id),
        task_queue=task_queue,
    )
    change = INVOICED_AT if timed else HANDLING_AT
    await handle.signal(ORDER_CHANGED, OrderEvent(order_id, "invoiced", change, timed=timed))
    return handle


async def invoiced_behind_the_oms(
    env: WorkflowEnvironment, task_queue: str, oms: OmsBehindItsHooks, *, timed: bool = True
) -> tuple[str, VtexOrderStatus]:
    """An order run told it was invoiced while the OMS still serves it handling, for 20 minutes; then
    the OMS catches up and support redrives the run. Its workflow id and its result. ``timed``: the
    hook carried CurrentChange."""
    async with order_worker(env, task_queue, oms.land_order_events, oms.land_order_version):
        handle = await told_it_was_invoiced(env, task_queue, timed=timed, final_linger_seconds=0)
        await skip_time(env, timedelta(minutes=20))
        memo = await (await handle.describe()).memo_value("parked", default=None)
        assert oms.reads == 5 and "the OMS still serves handling" in str(memo), memo
        oms.caught_up_after = oms.reads
        await handle.signal(REDRIVE_PARKED_SIGNAL)
        return handle.id, await handle.result()


async def test_an_order_the_oms_serves_behind_its_hook_is_read_again_then_parked(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """The invoiced hook came; the OMS still serves the order handling, changed before it. That version
    lands, and the order is read again after 30 s, 2, 5 and 10 min, then parked as "vtex"; redriven once
    the OMS serves it, the invoiced version lands. (Before, the run took handling for the hook's state
    and waited for a next change that an invoiced order never has.)"""
    oms = OmsBehindItsHooks()
    _, result = await invoiced_behind_the_oms(skipping_env, task_queue, oms)
    assert (oms.reads, result.state, result.versions_landed) == (6, "invoiced", 1)


async def test_an_order_the_oms_serves_behind_a_hook_without_current_change_is_read_again(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """The invoiced hook carried no CurrentChange, so its change is LastChange, when handling began; the
    OMS still serves the order handling, changed then. That is the state before the hook's, not a newer
    one: the order is read again, parked, and redriven once the OMS serves it invoiced. (Before, the
    run took handling for current, and the invoiced version never landed.)"""
    oms = OmsBehindItsHooks()
    _, result = await invoiced_behind_the_oms(skipping_env, task_queue, oms, timed=False)
    assert (oms.reads, result.state, result.versions_landed) == (6, "invoiced", 1)


async def test_an_oms_that_catches_up_within_the_waits_lands_the_hooks_version(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    oms = OmsBehindItsHooks(caught_up_after=2)
    async with order_worker(skipping_env, task_queue, oms.land_order_events, oms.land_order_version):
        handle = await told_it_was_invoiced(skipping_env, task_queue, final_linger_seconds=0)
        result = await handle.result()
    assert (oms.reads, result.state, result.last_applied) == (3, "invoiced", INVOICED_AT)
    assert await (await handle.describe()).memo_value("parked", default=None) is None


async def order_not_found_then_found(
    env: WorkflowEnvironment, task_queue: str, oms: OmsWithoutTheOrder
) -> tuple[str, VtexOrderStatus]:
    """An order run told of a change the OMS has no order for, 20 minutes on; then the OMS finds it
    and support redrives the run. Its workflow id and its result."""
    async with order_worker(env, task_queue, oms.land_order_events, oms.land_order_version):
        handle, _ = await start_refused_order(env, task_queue)
        await skip_time(env, timedelta(minutes=20))
        memo = await (await handle.describe()).memo_value("parked", default=None)
        assert oms.reads == 5 and "the OMS has no order" in str(memo)
        oms.found = True
        await handle.signal(REDRIVE_PARKED_SIGNAL)
        return handle.id, await handle.result()

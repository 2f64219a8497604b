"""DbtBuildWorkflow: one build at a time, requests coalesced, failures reported by name."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.dbt import DbtActivities, DbtBuildInput
from contracts.dbt_build import (
    STATUS_QUERY,
    BuildRequest,
    BuildRequester,
    DbtBuildStatus,
    DbtBuildSummary,
    dbt_build_workflow_id,
    send_build_request,
)
from core.constants import REQUEST_BUILD_SIGNAL
from core.settings import Settings
from db.engine import create_engine, session_factory
from tests.conftest import TEST_CONVERTER, binary
from tests.dbt.fixture import land_store, order
from tests.hub import running_hub
from tests.support import eventually, skip_time
from warehouse.tables import VTEX_ORDERS
from warehouse.vtex_orders import order_version
from workflows.dbt_build import DbtBuildWorkflow


class StandInBuilds:
    """``dbt_build`` that takes a while and counts how many ran at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most_at_once = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.inputs: list[DbtBuildInput] = []

    @activity.defn(name="dbt_build")
    async def dbt_build(self, params: DbtBuildInput) -> DbtBuildSummary:
        self.inputs.append(params)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.started.set()
        await self.release.wait()
        self.running -= 1
        return DbtBuildSummary(success=True, models_built=13, tests_passed=46)


async def status(client: Client, workflow_id: str) -> DbtBuildStatus:
    return await client.get_workflow_handle(workflow_id).query(STATUS_QUERY, result_type=DbtBuildStatus)


def own_warehouse_settings(task_queue: str, **extra: Any) -> Settings:
    """Settings of a warehouse of the test's own (its own build workflow id), builds on ``task_queue``."""
    return Settings(
        environment="test",
        dbt_task_queue=task_queue,
        bigquery_dataset_prefix=f"t{uuid.uuid4().hex[:8]}_",
        **extra,
    )


async def test_requests_during_a_build_coalesce_into_one_more(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = temporal_env.client
    settings = own_warehouse_settings(task_queue)
    builds = StandInBuilds()
    workflow_id = dbt_build_workflow_id(settings)
    async with Worker(
        client, task_queue=task_queue, workflows=[DbtBuildWorkflow], activities=[builds.dbt_build]
    ):
        await send_build_request(client, settings, BuildRequest("vtex orders"))
        await asyncio.wait_for(builds.started.wait(), timeout=30)
        for reason in ("vtex orders", "vtex catalog sync", "vtex customer sync"):  # while it builds
            await send_build_request(client, settings, BuildRequest(reason))
        builds.release.set()

        async def two_builds() -> DbtBuildStatus | None:
            current = await status(client, workflow_id)
            return current if current.builds == 2 and not current.building else None

        done = await eventually(two_builds, timeout=30)
        await asyncio.sleep(1)  # no third build follows
        assert (await status(client, workflow_id)).builds == 2
        assert builds.most_at_once == 1
        assert done.last is not None and done.last.success
        memo = await (await client.get_workflow_handle(workflow_id).describe()).memo()
        assert "asked by vtex orders, vtex catalog sync, vtex customer sync" in memo["last_build"]
        await client.get_workflow_handle(workflow_id).terminate("test over")


async def test_requests_get_fast_builds_and_a_full_build_runs_every_hour(task_queue: str) -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=TEST_CONVERTER
    )
    settings = own_warehouse_settings(task_queue)
    builds = StandInBuilds()
    builds.release.set()  # each build is done at once
    workflow_id = dbt_build_workflow_id(settings)

    async def built(count: int) -> None:
        async def done() -> DbtBuildStatus | None:
            current = await status(env.client, workflow_id)
            return current if current.builds == count and not current.building else None

        await eventually(done, timeout=30)

    try:
        async with Worker(
            env.client, task_queue=task_queue, workflows=[DbtBuildWorkflow], activities=[builds.dbt_build]
        ):
            await send_build_request(env.client, settings, BuildRequest("vtex orders"))
            await built(1)  # the first build runs everything
            await send_build_request(env.client, settings, BuildRequest("vtex orders"))
            await built(2)  # then requests get fast builds
            memo = await (await env.client.get_workflow_handle(workflow_id).describe()).memo()
            assert memo["last_build"].startswith("passed (fast build, ")
            await skip_time(env, timedelta(minutes=61))  # nothing asked for since
            await built(3)  # a full build followed the fast one within the hour, on its own
            memo = await (await env.client.get_workflow_handle(workflow_id).describe()).memo()
            assert (
                "(full build, " in memo["last_build"] and "asked by hourly full build" in memo["last_build"]
            )
            await skip_time(env, timedelta(minutes=61))
            await built(4)  # and every hour after it, nothing asked for: its freshness check still runs
            await send_build_request(env.client, settings, BuildRequest("vtex orders"))
            await built(5)
            await send_build_request(
                env.client, settings, BuildRequest("demo", full=True)
            )  # asked for everything
            await built(6)
            assert [build.fast for build in builds.inputs] == [False, True, False, False, True, False]
            memo = await (await env.client.get_workflow_handle(workflow_id).describe()).memo()
            assert "(full build, " in memo["last_build"] and "asked by demo" in memo["last_build"]
            await env.client.get_workflow_handle(workflow_id).terminate("test over")
    finally:
        await env.shutdown()


async def test_a_build_starts_no_sooner_than_the_spacing_after_the_last_one_started(task_queue: str) -> None:
    """BigQuery allows a table 1,500 writes a day: requests however steady get builds a spacing apart,
    those that arrive meanwhile joining the next."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=TEST_CONVERTER
    )
    settings = own_warehouse_settings(task_queue, dbt_build_spacing_seconds=60)
    builds = StandInBuilds()
    builds.release.set()  # each build is done at once
    workflow_id = dbt_build_workflow_id(settings)

    async def current() -> DbtBuildStatus:
        return await status(env.client, workflow_id)

    async def built(count: int) -> DbtBuildStatus:
        async def done() -> DbtBuildStatus | None:
            now = await current()
            return now if now.builds == count and not now.building else None

        return await eventually(done, timeout=30)

    try:
        async with Worker(
            env.client, task_queue=task_queue, workflows=[DbtBuildWorkflow], activities=[builds.dbt_build]
        ):
            await send_build_request(env.client, settings, BuildRequest("vtex orders"))
            first = await built(1)  # the first build waits for nothing
            for reason in ("vtex orders", "vtex catalog sync"):
                await send_build_request(env.client, settings, BuildRequest(reason))
            await skip_time(env, timedelta(seconds=50))
            waiting = await current()
            assert (waiting.builds, waiting.pending) == (1, ["vtex orders", "vtex catalog sync"])
            assert waiting.spacing_seconds == 60
            await skip_time(env, timedelta(seconds=15))
            second = await built(2)  # both requests, in one build
            started = [datetime.fromisoformat(build.last_started_at) for build in (first, second)]
            assert timedelta(seconds=60) <= started[1] - started[0] < timedelta(seconds=70)
            memo = await (await env.client.get_workflow_handle(workflow_id).describe()).memo()
            assert "asked by vtex orders, vtex catalog sync" in memo["last_build"]
            # A sender of an earlier version says no spacing: the spacing stands.
            handle = env.client.get_workflow_handle(workflow_id)
            await handle.signal(REQUEST_BUILD_SIGNAL, BuildRequest("older sender"))
            await skip_time(env, timedelta(seconds=30))
            assert ((await current()).builds, (await current()).spacing_seconds) == (2, 60)
            await skip_time(env, timedelta(seconds=35))
            await built(3)
            await skip_time(env, timedelta(minutes=5))
            await send_build_request(env.client, settings, BuildRequest("vtex orders"))
            await built(4)  # the spacing long past: at once
            await env.client.get_workflow_handle(workflow_id).terminate("test over")
    finally:
        await env.shutdown()


async def blocked_then_passed(client: Client, task_queue: str) -> tuple[str, list[DbtBuildInput], list[str]]:
    """A full build whose key test fails on silver.orders; a fast build; a full build in which a model
    upstream fails, so orders' tests do not run; a fast build; a full build that passes orders' tests;
    and a fast build. The build workflow's id, each build's input and the memo after each."""
    settings = own_warehouse_settings(task_queue)
    duplicated = DbtBuildSummary(
        models_built=9, tests_failed=1, failures=["unique_orders_order_id: Got 1 result"], blocked=["orders"]
    )
    upstream = DbtBuildSummary(models_failed=1, failures=["stg_vtex__orders: Syntax error"], cleared=["skus"])
    passed = DbtBuildSummary(success=True, cleared=["customer_360", "orders", "skus"])
    answers = [duplicated, DbtBuildSummary(success=True), upstream, DbtBuildSummary(success=True), passed]
    inputs: list[DbtBuildInput] = []
    memos: list[str] = []
    workflow_id = dbt_build_workflow_id(settings)

    @activity.defn(name="dbt_build")
    async def dbt_build(params: DbtBuildInput) -> DbtBuildSummary:
        inputs.append(params)
        return answers.pop(0) if answers else DbtBuildSummary(success=True)

    async def build(request: BuildRequest) -> None:
        count = len(inputs)
        await send_build_request(client, settings, request)

        async def done() -> DbtBuildStatus | None:
            current = await status(client, workflow_id)
            return current if current.builds == count + 1 and not current.building else None

        await eventually(done, timeout=30)
        memos.append(
            str((await (await client.get_workflow_handle(workflow_id).describe()).memo())["last_build"])
        )

    async with Worker(client, task_queue=task_queue, workflows=[DbtBuildWorkflow], activities=[dbt_build]):
        await build(BuildRequest("vtex orders"))  # the first build runs everything
        await build(BuildRequest("vtex orders"))
        await build(BuildRequest("support", full=True))  # orders' tests skipped: it stays left out
        await build(BuildRequest("vtex orders"))
        await build(BuildRequest("support", full=True))  # the key is unique again
        await build(BuildRequest("vtex orders"))
        await client.get_workflow_handle(workflow_id).terminate("recorded")
    return workflow_id, inputs, memos


async def test_fast_builds_leave_out_what_a_full_build_s_blocking_test_failed_on(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Fast builds run no data tests: after a full build found silver.orders' key duplicated (dbt then
    skipped what reads it), they leave orders and what reads it out, until a full build passes it."""
    _, inputs, memos = await blocked_then_passed(temporal_env.client, task_queue)
    assert [(b.fast, b.blocked) for b in inputs] == [
        (False, []),
        (True, ["orders"]),
        (False, []),
        (True, ["orders"]),
        (False, []),
        (True, []),
    ]
    assert "unique_orders_order_id" in memos[0]
    assert "fast build, left out until a full build passes them: orders and what reads them" in memos[1]
    assert "left out" not in memos[5]


@pytest.mark.timeout(360)  # whole dbt builds on the emulator: minutes on a loaded machine
async def test_a_status_vtex_added_warns_and_gold_still_builds(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> None:
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, dbt_builds_enabled=True, **warehouse_settings
    ) as hub:
        warehouse = hub.warehouse()
        try:
            await land_store(warehouse)
            # A status the models do not know: ingestion keeps it (raw); one such row must not stop gold.
            odd = order("o-9", "u-ana", 10000, "2026-05-01T10:00:00.0000000Z", "waiting-for-teleport")
            await warehouse.land(VTEX_ORDERS, [order_version(odd)])
        finally:
            await warehouse.aclose()
        workflow_id = dbt_build_workflow_id(hub.settings)
        await send_build_request(hub.client, hub.settings, BuildRequest("test"))

        async def built() -> DbtBuildStatus | None:
            current = await status(hub.client, workflow_id)
            return current if current.builds >= 1 else None

        result = await eventually(built, timeout=180, interval=1)
        assert result.last is not None and result.last.success, result.last
        assert any(warning.startswith("orders_known_status:") for warning in result.last.warnings)
        assert result.failed_builds == 0
        memo = await (await hub.client.get_workflow_handle(workflow_id).describe()).memo()
        assert (
            memo["last_build"].startswith("passed") and "2 warned" in memo["last_build"]
        )  # and the SKU without a price
        check = hub.warehouse()
        try:
            gold = await check.query(
                f"select orders_count from `{check.table_id(check.layers.gold, 'customer_360')}`"
                " where customer_id = 'c-ana'"
            )
            # The warned rows are kept for inspection.
            audit = f"{hub.settings.bigquery_dataset_prefix}dbt_test__audit"
            tables = await check.query(f"select table_name from `{audit}.INFORMATION_SCHEMA.TABLES`")
        finally:
            await check.aclose()
        assert gold == [{"orders_count": 2}]  # built, and the unknown status is not revenue
        assert "orders_known_status" in {row["table_name"] for row in tables}
        await hub.client.get_workflow_handle(workflow_id).terminate("test over")


def debounced_requester(
    client: Client, task_queue: str, quiet: float, interval: float
) -> tuple[BuildRequester, WorkflowHandle[Any, Any]]:
    """A requester with these timings, and its build workflow (of a warehouse of its own).

    No worker polls the queue: the requests wait in the build workflow's history, where tests read them.
    """
    settings = own_warehouse_settings(
        task_queue, dbt_orders_build_quiet_seconds=quiet, dbt_orders_build_interval_seconds=interval
    )
    return BuildRequester(client, settings), client.get_workflow_handle(dbt_build_workflow_id(settings))


async def sent_requests(client: Client, handle: WorkflowHandle[Any, Any]) -> list[BuildRequest]:
    """The build requests in the build workflow's history (none if it has not started)."""
    sent: list[BuildRequest] = []
    try:
        async for event in handle.fetch_history_events():
            if event.HasField("workflow_execution_signaled_event_attributes"):
                payloads = event.workflow_execution_signaled_event_attributes.input.payloads
                sent += await client.data_converter.decode(payloads, [BuildRequest])
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
    return sent


async def test_a_burst_of_landings_asks_for_one_build_once_it_pauses(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Orders landing together cost one build, asked for when they stop; nothing later asks again."""
    client = temporal_env.client
    requester, handle = debounced_requester(client, task_queue, quiet=2.0, interval=30)
    for _ in range(5):
        await requester.request_soon("vtex orders")
        await asyncio.sleep(0.2)
    assert await sent_requests(client, handle) == []  # still landing: no build yet

    async def one_request() -> list[BuildRequest] | None:
        return await sent_requests(client, handle) or None

    assert len(await eventually(one_request, timeout=10)) == 1
    await asyncio.sleep(1.5)  # nothing landed since: no more requests
    assert len(await sent_requests(client, handle)) == 1
    await handle.terminate("test over")


async def test_steady_landings_still_ask_for_a_build_each_interval(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Orders that never pause for the quiet time still reach gold: a request at least each interval."""
    client = temporal_env.client
    requester, handle = debounced_requester(client, task_queue, quiet=30, interval=1.0)
    started = time.monotonic()
    while time.monotonic() - started < 3.5:  # never quiet for 30 s
        await requester.request_soon("vtex orders")
        await asyncio.sleep(0.1)
    await requester.flush()  # the request still waiting goes out too
    assert 3 <= len(await sent_requests(client, handle)) <= 5
    await handle.terminate("test over")


async def test_a_stopping_worker_sends_the_request_still_waiting(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = temporal_env.client
    requester, handle = debounced_requester(client, task_queue, quiet=60, interval=60)
    await requester.request_soon("vtex orders", "2026-11-25T10:00:01.000000+00:00")
    await requester.flush()
    [sent] = await sent_requests(client, handle)
    assert sent.oldest_received_at == "2026-11-25T10:00:01.000000+00:00"
    await requester.flush()  # nothing waits any more: nothing is sent
    assert len(await sent_requests(client, handle)) == 1
    await handle.terminate("test over")


async def test_each_build_is_told_the_oldest_order_change_it_brings_to_gold(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Hook-to-gold is measured from the oldest change a build carries; a passed build is timed."""
    client = temporal_env.client
    settings = own_warehouse_settings(task_queue)
    builds = StandInBuilds()
    workflow_id = dbt_build_workflow_id(settings)
    async with Worker(
        client, task_queue=task_queue, workflows=[DbtBuildWorkflow], activities=[builds.dbt_build]
    ):
        await send_build_request(
            client, settings, BuildRequest("vtex orders", "2026-11-25T10:00:05.000000+00:00")
        )
        await asyncio.wait_for(builds.started.wait(), timeout=30)
        # While it builds: these changes wait for the next build, which is told the oldest of them.
        await send_build_request(
            client, settings, BuildRequest("vtex orders", "2026-11-25T10:00:09.000000+00:00")
        )
        await send_build_request(client, settings, BuildRequest("vtex catalog sync"))
        await send_build_request(
            client, settings, BuildRequest("vtex orders", "2026-11-25T10:00:07.000000+00:00")
        )
        builds.release.set()

        async def two_builds() -> DbtBuildStatus | None:
            current = await status(client, workflow_id)
            return current if current.builds == 2 and not current.building else None

        done = await eventually(two_builds, timeout=30)
        assert [params.oldest_received_at for params in builds.inputs] == [
            "2026-11-25T10:00:05.000000+00:00",
            "2026-11-25T10:00:07.000000+00:00",
        ]
        assert done.last_success_at is not None
        await client.get_workflow_handle(workflow_id).terminate("test over")


async def test_each_request_carries_the_oldest_change_landed_since_the_last(
    temporal_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = temporal_env.client
    requester, handle = debounced_requester(client, task_queue, quiet=0.5, interval=30)
    await requester.request_soon("vtex orders", "2026-11-25T10:00:02.000000+00:00")
    await requester.request_soon("vtex orders", "2026-11-25T10:00:01.000000+00:00")

    async def requests(count: int) -> list[BuildRequest] | None:
        sent = await sent_requests(client, handle)
        return sent if len(sent) == count else None

    await eventually(lambda: requests(1), timeout=10)
    for received in ("2026-11-25T10:00:04.000000+00:00", "2026-11-25T10:00:03.000000+00:00"):
        await requester.request_soon("vtex orders", received)
    first, second = await eventually(lambda: requests(2), timeout=10)
    assert first.oldest_received_at == "2026-11-25T10:00:01.000000+00:00"
    assert second.oldest_received_at == "2026-11-25T10:00:03.000000+00:00"
    await handle.terminate("test over")


async def test_a_broken_profile_fails_its_build_instead_of_retrying_forever(
    temporal_env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Any,
    sqlite_url: str,
) -> None:
    client = temporal_env.client
    settings = own_warehouse_settings(task_queue, dbt_target="no-such-target", dbt_work_dir=str(tmp_path))
    workflow_id = dbt_build_workflow_id(settings)
    engine = create_engine(sqlite_url)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[DbtBuildWorkflow],
        activities=[DbtActivities(settings, session_factory(engine)).dbt_build],
    ):
        await send_build_request(client, settings, BuildRequest("vtex orders"))

        async def recorded() -> DbtBuildStatus | None:
            current = await status(client, workflow_id)
            return current if current.builds == 1 and not current.building else None

        result = await eventually(recorded, timeout=120, interval=0.5)
        assert result.failed_builds == 1 and result.last is not None
        assert result.last.error_kind == "project" and "no-such-target" in result.last.error
        described = await client.get_workflow_handle(workflow_id).describe()
        assert not described.raw_description.pending_activities  # not retried every 5 minutes
        memo = await described.memo()
        assert memo["last_build"].startswith("FAILED: dbt project or profile broken")
        await client.get_workflow_handle(workflow_id).terminate("test over")
    await engine.dispose()

"""Order history backfill end to end: OMS list and reads on the simulator, the dev server, the emulator."""

from __future__ import annotations

import dataclasses
import os
import signal
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.pacing import RequestBudgets
from activities.vtex_backfill import (
    BackfillCursors,
    CreationWindow,
    LandOrdersInput,
    PlanPageInput,
    VtexBackfillActivities,
)
from clients.errors import PermanentError
from clients.vtex import VtexClient
from contracts.orders import STATUS_QUERY, VtexOrderStatus
from core.constants import PROGRESS_QUERY, vtex_order_workflow_id
from tests.hub import Hub, environment_of, running_hub, start_worker_process
from tests.support import eventually
from warehouse.tables import QUARANTINE, VTEX_ORDERS
from workflows.vtex_order_backfill import (
    BackfillProgress,
    OrderBackfillInput,
    start_order_backfill,
)

HISTORY_END = "2026-11-01T00:00:00Z"
# Small pages make the list's 30-page cap bite at 300 orders a window: the backfill has to split.
HISTORY = {"vtex_history_orders": 700, "vtex_history_days": 60, "vtex_history_end": HISTORY_END}
PER_PAGE = 10
SINCE = datetime.fromisoformat("2026-09-01T00:00:00+00:00")
UNTIL = datetime.fromisoformat("2026-11-01T00:00:00+00:00")
# The range's last days (about 60 orders), for tests that need a backfill but not a split range.
LAST_DAYS = UNTIL - timedelta(days=5)


def backfill_input(hub: Hub, since: datetime = SINCE, **overrides: Any) -> OrderBackfillInput:
    params = OrderBackfillInput.for_range(hub.settings, since, UNTIL, rate=400)
    params.per_page = PER_PAGE
    for name, value in overrides.items():
        setattr(params, name, value)
    return params


async def orders_in_range(hub: Hub, since: datetime = SINCE) -> int:
    response = await hub.http.get(
        f"{hub.sims_url}/_control/vtex/history",
        params={
            "from": since.isoformat().replace("+00:00", "Z"),
            "to": UNTIL.isoformat().replace("+00:00", "Z"),
        },
    )
    return int(response.json()["count"])


@pytest.fixture
async def hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> Any:
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, simulator=HISTORY, **warehouse_settings
    ) as hub:
        yield hub


async def test_backfill_lands_every_order_once_and_a_second_run_lands_nothing(hub: Hub) -> None:
    expected = await orders_in_range(hub)
    assert expected > 30 * PER_PAGE  # more than one list query can page through

    handle = await start_order_backfill(hub.client, hub.settings, backfill_input(hub))
    first = await handle.result()
    assert first.done
    assert first.orders_landed == expected
    assert first.orders_listed == expected
    assert first.windows_done > 1  # the range was split to fit the list's paging cap
    assert (first.quarantined, first.missing, first.already_landed) == (0, 0, 0)
    assert await hub.bronze_counts(VTEX_ORDERS) == (expected, expected)
    memo = await (await handle.describe()).memo()
    assert f"{expected} landed" in memo["progress"]
    # Every order was read once, and each page listed once (plus one count per window).
    counters = (await hub.counters())["vtex"]
    assert counters["oms_gets"] == expected

    again = await (await start_order_backfill(hub.client, hub.settings, backfill_input(hub))).result()
    assert again.orders_landed == 0
    assert again.already_landed == expected
    assert await hub.bronze_counts(VTEX_ORDERS) == (expected, expected)
    assert (await hub.counters())["vtex"]["oms_gets"] == expected  # nothing read again


async def test_backfill_goes_on_through_rate_limits_and_outages(hub: Hub) -> None:
    expected = await orders_in_range(hub, LAST_DAYS)
    # VTEX answers the first requests with 503s, then 429s asking to wait a second.
    await hub.fault(target="vtex", error_5xx_count=2, rate_limit_count=4, retry_after_seconds=1)
    backfill = backfill_input(hub, LAST_DAYS)
    progress = await (await start_order_backfill(hub.client, hub.settings, backfill)).result()
    assert progress.orders_landed == expected
    assert await hub.bronze_counts(VTEX_ORDERS) == (expected, expected)
    assert (await hub.counters())["vtex"]["faults_served"] > 0


async def test_order_backfilled_and_hooked_lands_one_version_per_change(hub: Hub) -> None:
    # A live order, created in the range, whose hooks are held back.
    created = (datetime.fromisoformat(HISTORY_END) - timedelta(days=3)).strftime(
        "%Y-%m-%dT%H:%M:%S.0000000+00:00"
    )
    order_id = await hub.create_order(creationDate=created, lastChange=created)
    moved = await hub.http.post(
        f"{hub.sims_url}/_control/vtex/orders/{order_id}/states",
        json={"states": ["payment-approved", "invoiced"], "delivery": "none"},
    )
    moved.raise_for_status()

    backfill = backfill_input(hub, LAST_DAYS)
    progress = await (await start_order_backfill(hub.client, hub.settings, backfill)).result()
    assert progress.orders_landed == await orders_in_range(hub, LAST_DAYS)
    backfilled = await hub.bronze(VTEX_ORDERS, order_id)
    assert [row["payload"]["status"] for row in backfilled] == ["invoiced"]

    # Now its hooks arrive: the live flow lands the state changes and reads the same current version.
    hooks = (await hub.http.get(f"{hub.sims_url}/_control/vtex/orders/{order_id}")).json()["hooks"]
    for hook in hooks:
        assert (await hub.post_order_hook(hook)).status_code == 200
    handle = hub.client.get_workflow_handle(vtex_order_workflow_id(order_id))

    async def followed() -> VtexOrderStatus | None:
        status = await handle.query(STATUS_QUERY, result_type=VtexOrderStatus)
        return status if status.state == "invoiced" and status.events_landed == len(hooks) else None

    await eventually(followed, timeout=60)
    versions = await hub.bronze(VTEX_ORDERS, order_id)
    # One version per change: the live flow's read of the unchanged order lands under the backfill's key
    # (a raw repeat that silver's one-row-per-event-key rule removes), never as a second version.
    assert {row["event_key"] for row in versions} == {backfilled[0]["event_key"]}


@pytest.mark.timeout(360)  # three kills, each waited for up to 2 minutes: more than 3 on a loaded machine
async def test_killed_worker_backfill_completes_exactly_once(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, worker=False, simulator=HISTORY, worker_metrics_port=0,
        **warehouse_settings,
    ) as hub:  # fmt: skip
        expected = await orders_in_range(hub)
        env = {**os.environ, **environment_of(hub.settings)}
        log = tmp_path / "worker.log"
        # A slow budget keeps each page in flight for a while, so kills land mid-page.
        handle = await start_order_backfill(
            hub.client,
            hub.settings,
            backfill_input(hub, requests_per_second=60, step_timeout_seconds=5, heartbeat_seconds=3),
        )
        kills = 0
        worker = start_worker_process(env, log)
        try:
            for landed_before_kill in (40, 200, 420):

                async def landed_at_least(count: int = landed_before_kill) -> bool:
                    try:
                        progress = await handle.query(PROGRESS_QUERY, result_type=BackfillProgress)
                    except RPCError:
                        # A query needs a worker: while the restarted one starts, the server gives up on it.
                        return False
                    gets = (await hub.counters())["vtex"]["oms_gets"]
                    return progress.orders_landed >= count and gets > progress.orders_landed

                await eventually(landed_at_least, timeout=120)
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                kills += 1
                worker = start_worker_process(env, log)
            progress = await handle.result()
        finally:
            worker.kill()
            worker.wait(timeout=10)
        assert kills == 3
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert progress.orders_landed + progress.already_landed == expected
        assert await hub.bronze_counts(VTEX_ORDERS) == (expected, expected)
        assert (await hub.bronze_counts(QUARANTINE))[0] == 0
        # The kills cut pages in flight (an attempt after the first ran), and each order is still one row.
        history = await handle.fetch_history()
        attempts = [
            event.activity_task_started_event_attributes.attempt
            for event in history.events
            if event.HasField("activity_task_started_event_attributes")
        ]
        assert max(attempts) > 1


async def test_a_page_retried_after_its_attempt_landed_it_lands_nothing_twice(hub: Hub) -> None:
    """The worker dies after a page's append and before Temporal hears of it. Where the page opened its
    stream (the backfill's first page, or the first after a stream was lost), the retry comes with the
    same empty cursor: it must not land the page again at a new stream."""
    window = CreationWindow(start="2026-09-01T00:00:00.000Z", end="2026-11-01T00:00:00.000Z")
    warehouse = hub.warehouse()
    async with httpx.AsyncClient(timeout=10) as http:
        backfill = VtexBackfillActivities(VtexClient(http, hub.settings), warehouse, RequestBudgets())
        try:
            page = await ActivityEnvironment().run(
                backfill.plan_page, PlanPageInput(window, page=1, per_page=PER_PAGE, requests_per_second=400)
            )
            assert len(page.order_ids) == PER_PAGE
            land = LandOrdersInput(page.order_ids, BackfillCursors(), requests_per_second=400)
            first = await ActivityEnvironment().run(backfill.land_orders, land)  # its answer is lost
            assert first.landed == PER_PAGE
            retry = ActivityEnvironment()
            retry.info = dataclasses.replace(retry.info, attempt=2)
            again = await retry.run(backfill.land_orders, land)
        finally:
            await warehouse.aclose()
    assert again.landed == PER_PAGE  # the page's versions are in bronze: the workflow counts them once
    assert await hub.bronze_counts(VTEX_ORDERS) == (PER_PAGE, PER_PAGE)


class OmsRefusing(VtexClient):
    """The OMS refuses the reads of some orders (``status``), and serves the others."""

    def __init__(self, http: httpx.AsyncClient, hub: Hub, order_ids: list[str], status: int) -> None:
        super().__init__(http, hub.settings)
        self.refused, self.status = set(order_ids), status

    async def get_order(self, order_id: str) -> dict[str, Any] | None:
        if order_id in self.refused:
            raise PermanentError("vtex", f"{self.status} refused", self.status)
        return await super().get_order(order_id)


async def test_an_order_the_oms_refuses_to_serve_is_counted_missing_and_the_page_lands(hub: Hub) -> None:
    """One order whose read the OMS refuses for good no longer fails the whole backfill (again at the
    same page on every run over the range): it is counted missing, the rest of its page lands. A
    refusal of the account (403), or of every read of the page, still stops it."""
    window = CreationWindow(start="2026-09-01T00:00:00.000Z", end="2026-11-01T00:00:00.000Z")
    warehouse = hub.warehouse()
    async with httpx.AsyncClient(timeout=10) as http:
        plain = VtexBackfillActivities(VtexClient(http, hub.settings), warehouse, RequestBudgets())
        try:
            page = await ActivityEnvironment().run(
                plain.plan_page, PlanPageInput(window, page=1, per_page=PER_PAGE, requests_per_second=400)
            )
            refused = page.order_ids[3]
            land = LandOrdersInput(page.order_ids, BackfillCursors(), requests_per_second=400)
            account = OmsRefusing(http, hub, [refused], 403)
            every = OmsRefusing(http, hub, page.order_ids, 400)  # a fault of the request, not of orders
            for oms in (account, every):
                with pytest.raises(ApplicationError, match="refused"):
                    await ActivityEnvironment().run(
                        VtexBackfillActivities(oms, warehouse, RequestBudgets()).land_orders, land
                    )
            one = OmsRefusing(http, hub, [refused], 400)
            landed = await ActivityEnvironment().run(
                VtexBackfillActivities(one, warehouse, RequestBudgets()).land_orders, land
            )
        finally:
            await warehouse.aclose()
    assert (landed.landed, landed.missing) == (PER_PAGE - 1, [refused])
    assert await hub.bronze_counts(VTEX_ORDERS) == (PER_PAGE - 1, PER_PAGE - 1)

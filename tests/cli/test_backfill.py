"""``hub backfill orders``: lands a range of the order history, showing its progress until it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from cli.times import moment
from tests.cli.conftest import HubCli
from tests.hub import Hub, running_hub
from warehouse.tables import VTEX_ORDERS
from workflows.vtex_order_backfill import backfill_workflow_id

HISTORY = {"vtex_history_orders": 30, "vtex_history_days": 10, "vtex_history_end": "2026-11-01T00:00:00Z"}


@pytest.fixture
async def hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> AsyncIterator[Hub]:
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, simulator=HISTORY, **warehouse_settings
    ) as hub:
        yield hub


async def test_backfill_lands_the_range_and_reports_its_progress(hub: Hub, hub_cli: HubCli) -> None:
    ran = await hub_cli(
        hub.settings, "backfill", "orders", "--since", "2026-10-20", "--until", "2026-10-31", "--rate", "400",
        "--json",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    [started] = ran.lines("message")
    assert started["message"].startswith("started vtex-orders-backfill-2026-10-20")
    final = ran.lines("progress")[-1]
    assert final["done"] is True and final["orders_landed"] > 0
    assert (await hub.bronze_counts(VTEX_ORDERS))[0] == final["orders_landed"]


async def test_a_range_that_ends_before_it_starts_is_refused(hub: Hub, hub_cli: HubCli) -> None:
    ran = await hub_cli(hub.settings, "backfill", "orders", "--since", "2026-10-20", "--until", "2026-10-01")
    assert ran.code == 1 and "is before --since" in ran.err


@pytest.mark.parametrize("rate", ["0", "0.05", "nan", "inf"])
async def test_a_rate_the_backfill_cannot_pace_is_refused(hub: Hub, hub_cli: HubCli, rate: str) -> None:
    """Under one request every 10 s a request waiting its turn outlives its activity's heartbeat, and a
    rate that is no number starts a run that retries without end: refused before anything starts."""
    ran = await hub_cli(
        hub.settings, "backfill", "orders", "--since", "2026-10-20", "--until", "2026-10-31", "--rate", rate
    )
    assert ran.code == 1 and "--rate must be at least 0.1" in ran.err


def test_two_ranges_within_the_same_days_are_two_backfills() -> None:
    """A backfill of another range is refused only while the same range runs: the id holds the bounds'
    times wherever the range is not whole days (dates alone would follow the other range and never land
    its own). Whole days, as the command reads dates, keep the ids they always had."""

    def id_of(since: str, until: str) -> str:
        start, end = moment(since), moment(until, end_of_day=True)
        return backfill_workflow_id(
            start.isoformat(timespec="milliseconds"), end.isoformat(timespec="milliseconds")
        )

    assert id_of("2024-11-01", "2026-10-31") == "vtex-orders-backfill-2024-11-01-2026-10-31"
    morning = id_of("2026-10-20", "2026-10-20T12:00:00Z")
    afternoon = id_of("2026-10-20T12:00:00Z", "2026-10-20")
    assert len({id_of("2026-10-20", "2026-10-20"), morning, afternoon}) == 3
    assert afternoon == "vtex-orders-backfill-2026-10-20T120000.000Z-2026-10-20"
    assert morning == "vtex-orders-backfill-2026-10-20-2026-10-20T120000.000Z"
    # The same moment written with another offset is the same range.
    assert id_of("2026-10-20T09:00:00-03:00", "2026-10-20") == afternoon

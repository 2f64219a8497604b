"""``hub syncs``: trigger a sync through its Schedule and watch it; every schedule's last and next run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.schedules import LEAD_WAREHOUSE_SYNC, VTEX_CATALOG_SYNC, scheduled
from tests.cli.conftest import HubCli
from tests.hub import Hub, running_hub
from tests.support import free_port
from warehouse.tables import VTEX_CUSTOMERS, VTEX_SKUS
from workers.schedules import ensure_schedules

STORE = {"vtex_catalog_skus": 60, "vtex_customers": 30}


@pytest.fixture
async def hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> AsyncIterator[Hub]:
    """A hub with its schedules, as a worker creates them at start (deleted afterwards)."""
    client = temporal_env.client
    async with running_hub(
        client, sqlite_url, task_queue, simulator=STORE, vtex_catalog_requests_per_second=400,
        **warehouse_settings,
    ) as hub:  # fmt: skip
        await ensure_schedules(client, hub.settings)
        try:
            yield hub
        finally:
            for flow in scheduled(hub.settings):
                await client.get_schedule_handle(flow.schedule_id).delete()


def by_schedule(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["schedule_id"]: row for row in rows}


async def test_trigger_the_customer_sync_then_read_its_status(hub: Hub, hub_cli: HubCli) -> None:
    before = await hub_cli(hub.settings, "syncs", "status", "--json")
    assert before.code == 0, before.err
    customers = by_schedule(before.lines("schedule"))["vtex-customer-sync"]
    assert (customers["outcome"], customers["watermark"]) == (
        "never run",
        "none yet (the next run reads everything)",
    )
    assert datetime.fromisoformat(customers["next_run_at"]) > datetime.now(UTC)  # the schedule is on

    ran = await hub_cli(hub.settings, "syncs", "trigger", "customers", "--json")
    assert ran.code == 0, ran.err
    [trigger] = ran.lines("trigger")
    assert trigger["started"] is True and trigger["workflow_id"].startswith("vtex-customer-sync-")
    final = ran.lines("progress")[-1]
    assert final["done"] is True and final["read"] == 30 and final["landed"] > 0
    assert (await hub.bronze_counts(VTEX_CUSTOMERS))[0] == final["landed"]

    after = by_schedule((await hub_cli(hub.settings, "syncs", "status", "--json")).lines("schedule"))
    customers = after["vtex-customer-sync"]
    assert customers["workflow_id"] == trigger["workflow_id"]
    assert customers["outcome"] == "completed"
    assert customers["counts"].startswith(f"done: 30 read, {final['landed']} landed")
    assert customers["result"]["read"] == 30
    assert customers["watermark"] == final["watermark"]  # the database's, where the run left it
    assert after[VTEX_CATALOG_SYNC]["outcome"] == "never run"

    leads = await hub_cli(hub.settings, "syncs", "trigger", "leads", "--json")
    assert leads.code == 0, leads.err
    assert leads.lines("progress")[-1]["done"] is True
    landed = by_schedule((await hub_cli(hub.settings, "syncs", "status", "--json")).lines("schedule"))
    assert landed[LEAD_WAREHOUSE_SYNC]["watermark"] is not None  # where the lead sync has landed up to

    table = await hub_cli(hub.settings, "syncs", "status")
    header, *rows = table.out.splitlines()
    assert header.split()[:4] == ["SCHEDULE", "LAST", "RUN", "OUTCOME"]
    [row] = [row for row in rows if row.startswith("vtex-customer-sync ")]
    assert row[header.index("OUTCOME") :].startswith("completed ")
    assert row[header.index("COUNTS") :].startswith("done: 30 read")


async def test_status_exits_1_when_a_watermark_cannot_be_read(hub: Hub, hub_cli: HubCli) -> None:
    """The schedules are shown without the portal database, and the exit code says what was not."""
    away = hub.settings.model_copy(
        update={"database_url": f"postgresql://hub@127.0.0.1:{free_port()}/portal"}
    )
    shown = await hub_cli(away, "syncs", "status", "--json")
    assert shown.code == 1
    assert "watermark could not be read" in shown.err
    assert by_schedule(shown.lines("schedule"))["vtex-customer-sync"]["outcome"] == "never run"


async def test_a_trigger_while_the_sync_runs_follows_that_run(hub: Hub, hub_cli: HubCli) -> None:
    await hub.fault(target="vtex", latency_ms=300)  # a sync of a few seconds
    started = await hub_cli(hub.settings, "syncs", "trigger", "catalog", "--detach", "--json")
    assert started.code == 0, started.err
    [first] = started.lines("trigger")
    assert first["started"] is True and not started.lines("progress")  # detached: no watching

    followed = await hub_cli(hub.settings, "syncs", "trigger", "catalog")
    assert followed.code == 0, followed.err
    lines = followed.out.splitlines()
    assert lines[0] == f"catalog sync {first['workflow_id']} is still running: following it"
    assert len(lines) >= 3  # progress while it ran, then the end
    assert lines[-1].startswith("catalog: done: 60 SKUs read, 60 changed, 0 unchanged")
    assert await hub.bronze_counts(VTEX_SKUS) == (60, 60)
    described = await hub.client.get_schedule_handle(VTEX_CATALOG_SYNC).describe()
    assert described.info.num_actions == 1  # one run: the second trigger did not start another

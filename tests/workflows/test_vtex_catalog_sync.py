"""Catalog sync end to end: SKU list, records and prices on the simulator, the dev server, the emulator."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from clients.vtex import VtexClient
from core.constants import PROGRESS_QUERY
from tests.hub import Hub, environment_of, running_hub, start_worker_process
from tests.support import eventually
from warehouse.tables import QUARANTINE, VTEX_SKUS
from workflows.vtex_catalog_sync import (
    CatalogSyncInput,
    CatalogSyncResult,
    CatalogSyncWorkflow,
)

SKUS = 300
PAGE_SIZE = 50  # six pages, so paging, resuming and continue-as-new are all exercised
CATALOG = {"vtex_catalog_skus": SKUS}
# The worker-kill test's pages are longer (200 requests at 80/s), so each kill lands well within one.
KILLED_SKUS, KILLED_PAGE_SIZE = 600, 100


async def start_sync(hub: Hub, **overrides: Any) -> WorkflowHandle[CatalogSyncWorkflow, CatalogSyncResult]:
    params = CatalogSyncInput(
        requests_per_second=400, api_task_queue=hub.settings.vtex_api_task_queue, page_size=PAGE_SIZE
    )
    for name, value in overrides.items():
        setattr(params, name, value)
    return await hub.client.start_workflow(
        CatalogSyncWorkflow.run,
        params,
        id=f"vtex-catalog-sync-test-{uuid.uuid4().hex[:8]}",
        task_queue=hub.settings.vtex_orders_task_queue,
    )


async def catalog(hub: Hub) -> dict[str, Any]:
    return dict((await hub.http.get(f"{hub.sims_url}/_control/vtex/catalog")).json())


async def latest_rows(hub: Hub, sku_ids: list[int]) -> dict[str, dict[str, Any]]:
    """The latest bronze row of each SKU, by id."""
    warehouse = hub.warehouse()
    table = warehouse.table_id(warehouse.layers.bronze, VTEX_SKUS)
    try:
        rows = await warehouse.query(
            f"select entity_id, event_key, payload from `{table}`"
            " qualify row_number() over (partition by entity_id order by ingested_at desc) = 1"
        )
    finally:
        await warehouse.aclose()
    wanted = {str(sku_id) for sku_id in sku_ids}
    return {str(row["entity_id"]): row for row in rows if str(row["entity_id"]) in wanted}


@pytest.fixture
async def hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> Any:
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, simulator=CATALOG, **warehouse_settings
    ) as hub:
        yield hub


async def test_second_sync_lands_exactly_the_changed_skus(hub: Hub) -> None:
    first = await (await start_sync(hub, pages_per_run=2)).result()  # continues as new twice
    assert first.done
    listed = (await catalog(hub))["skus"]
    assert listed == SKUS
    assert (first.counts.read, first.counts.changed, first.counts.unchanged) == (SKUS, SKUS, 0)
    assert (first.counts.quarantined, first.counts.removed) == (0, 0)
    assert await hub.bronze_counts(VTEX_SKUS) == (SKUS, SKUS)
    gets = (await hub.counters())["vtex"]
    assert gets["catalog_sku_gets"] == SKUS  # every SKU read once, however the run was cut

    change = await hub.http.post(
        f"{hub.sims_url}/_control/vtex/catalog/change", json={"count": 7, "deactivate": 3, "delete": 2}
    )
    changed = change.json()
    second = await (await start_sync(hub)).result()
    assert second.counts.changed == 10  # 7 new contents and 3 deactivations, nothing else
    assert second.counts.removed == 2
    assert second.counts.unchanged == SKUS - 12
    assert second.counts.read == SKUS - 2  # deleted SKUs are no longer listed
    assert await hub.bronze_counts(VTEX_SKUS) == (SKUS + 12, SKUS + 12)

    latest = await latest_rows(hub, changed["deactivated"] + changed["deleted"])
    for sku_id in changed["deactivated"]:
        assert latest[str(sku_id)]["payload"]["sku"]["IsActive"] is False
    for sku_id in changed["deleted"]:
        assert latest[str(sku_id)]["payload"] == {"sku": None, "price": None}

    third = await (await start_sync(hub)).result()
    assert (third.counts.changed, third.counts.removed) == (0, 0)
    assert await hub.bronze_counts(VTEX_SKUS) == (SKUS + 12, SKUS + 12)


async def test_a_sku_vtex_refuses_to_serve_is_quarantined_and_the_rest_lands(hub: Hub) -> None:
    """One broken SKU answered 400 for good: it is quarantined with VTEX's code (once), and every other
    SKU of the catalog lands; before, its page failed the sync at every run."""
    refused = await hub.http.post(f"{hub.sims_url}/_control/vtex/catalog/refuse", json={"sku_ids": [150]})
    refused.raise_for_status()
    first = await (await start_sync(hub)).result()
    assert first.done and (first.counts.read, first.counts.quarantined) == (SKUS, 1)
    assert await hub.bronze_counts(VTEX_SKUS) == (SKUS - 1, SKUS - 1)
    warehouse = hub.warehouse()
    try:
        table = warehouse.table_id(warehouse.layers.bronze, QUARANTINE)
        rows = await warehouse.query(f"select entity_id, reason from `{table}`")
    finally:
        await warehouse.aclose()
    assert [row["entity_id"] for row in rows] == ["150"]
    assert "VTEX refused the read of SKU 150: vtex: HTTP 400 CAT004" in rows[0]["reason"]
    second = await (await start_sync(hub)).result()  # still refused: quarantined once, not again
    assert second.counts.quarantined == 1
    warehouse = hub.warehouse()
    try:
        assert len(await warehouse.query(f"select event_key from `{table}`")) == 1
    finally:
        await warehouse.aclose()


async def test_sync_waits_out_rate_limits_and_outages(hub: Hub) -> None:
    await hub.fault(target="vtex", error_5xx_count=3, rate_limit_count=4, retry_after_seconds=1)
    handle = await start_sync(hub)
    result = await handle.result()
    assert (result.counts.read, result.counts.changed) == (SKUS, SKUS)
    assert await hub.bronze_counts(VTEX_SKUS) == (SKUS, SKUS)
    assert (await hub.counters())["vtex"]["faults_served"] == 7
    memo = await (await handle.describe()).memo()
    assert f"{SKUS} SKUs read, {SKUS} changed" in memo["progress"]


@pytest.mark.timeout(360)  # worker processes killed and started again: minutes on a loaded machine
async def test_killed_worker_sync_lands_each_version_once(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    catalog = {"vtex_catalog_skus": KILLED_SKUS}
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, worker=False, simulator=catalog, worker_metrics_port=0,
        **warehouse_settings,
    ) as hub:  # fmt: skip
        env = {**os.environ, **environment_of(hub.settings)}
        log = tmp_path / "worker.log"
        # A slow budget keeps each page in flight for a while, so kills land mid-page.
        handle = await start_sync(
            hub, requests_per_second=80, heartbeat_seconds=3, pages_per_run=2, page_size=KILLED_PAGE_SIZE
        )
        worker = start_worker_process(env, log)
        kills = 0
        try:
            for pages_before_kill in (1, 2, 4):
                reads_when_done: list[int] = []  # the SKU reads when the pages before the kill were done

                async def mid_page(pages: int = pages_before_kill, done: list[int] = reads_when_done) -> bool:
                    try:
                        progress = await handle.query(PROGRESS_QUERY, result_type=CatalogSyncResult)
                    except RPCError:
                        # A query needs a worker: while the restarted one starts, the server gives up on it.
                        return False
                    if progress.pages < pages:
                        return False
                    # Counted from then: the reads include SKUs a killed page had read, which it reads again.
                    gets = (await hub.counters())["vtex"]["catalog_sku_gets"]
                    if not done:
                        done.append(gets)
                    return gets > done[0] + 20  # the next page's reads under way

                await eventually(mid_page, timeout=120)
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                kills += 1
                worker = start_worker_process(env, log)
            result = await handle.result()
        finally:
            worker.kill()
            worker.wait(timeout=10)
        assert kills == 3
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert await hub.bronze_counts(VTEX_SKUS) == (KILLED_SKUS, KILLED_SKUS)  # one row per SKU version
        assert (await hub.bronze_counts(QUARANTINE))[0] == 0
        # Killed pages were read again, yet only their SKUs: the sync resumed, it did not start over.
        gets = (await hub.counters())["vtex"]["catalog_sku_gets"]
        assert KILLED_SKUS < gets < 2 * KILLED_SKUS
        assert result.done and result.counts.changed + result.counts.unchanged == KILLED_SKUS


async def test_a_live_sku_the_paged_list_left_out_is_not_recorded_removed(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VTEX's SKU list pages by position: a SKU deleted while the list is paged shifts a live one out of
    the pages read. Bronze has it, the list did not name it: VTEX still serves it, so it is not gone."""
    assert (await (await start_sync(hub)).result()).counts.changed == SKUS
    listed = VtexClient.list_sku_ids

    async def shifted(self: VtexClient, page: int, page_size: int) -> list[int]:
        ids = await listed(self, page, page_size)
        return ids[1:] if page == 1 else ids  # the first SKU slid onto a page already read

    monkeypatch.setattr(VtexClient, "list_sku_ids", shifted)
    second = await (await start_sync(hub)).result()
    assert (second.counts.removed, second.counts.changed) == (0, 0)
    assert await hub.bronze_counts(VTEX_SKUS) == (SKUS, SKUS)

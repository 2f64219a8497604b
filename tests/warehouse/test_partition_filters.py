"""Every read of bronze outside dbt bounds its partition column by a constant.

Bronze tables require a partition filter (``require_partition_filter``): on BigQuery a read without one
fails. The emulator does not enforce it, so the SQL each reader sends is read with the same parser as
the compiled dbt SQL (``tests/dbt/bigquery_rules.py``).
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from activities.vtex_catalog import VtexCatalogActivities
from core.settings import Settings
from devstack.demo_orders import _rows
from tests.dbt.bigquery_rules import violations
from warehouse.landing import Warehouse, bigquery_client, storage_writer
from warehouse.tables import QUARANTINE, VTEX_ORDERS, VTEX_SKUS, Layers


async def test_every_bronze_read_bounds_its_partition_column(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(environment="test")
    warehouse = Warehouse(bigquery_client(settings), storage_writer(settings), Layers.with_prefix("t1_"), 5)
    sent: list[str] = []

    async def query(sql: str, parameters: Any = ()) -> list[dict[str, Any]]:
        sent.append(sql)
        return []

    async def ready() -> None:
        return None

    monkeypatch.setattr(warehouse, "query", query)
    monkeypatch.setattr(warehouse, "ready", ready)
    await warehouse.landed_keys(
        [VTEX_ORDERS, QUARANTINE], ["o-1@2026-01-01T00:00:00.0000000Z"], entity_ids=["o-1"]
    )
    await warehouse.latest_keys(VTEX_SKUS, ["101"])
    await VtexCatalogActivities(cast(Any, None), warehouse, cast(Any, None))._present_skus()
    await _rows(warehouse, VTEX_ORDERS, "o-1")
    assert len(sent) == 4
    assert all("_bronze." in sql for sql in sent)  # the checker sees a bronze table in each
    assert {sql: violations(sql) for sql in sent} == {sql: [] for sql in sent}
    await warehouse.aclose()

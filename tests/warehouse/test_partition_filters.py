"""Every read of bronze outside dbt bounds its partition column by a constant.

Bronze tables require a partition filter (``require_partition_filter``): on BigQuery a read without one
fails. The emulator does not enforce it, so the SQL each reader sends is read with the same parser as
the compiled dbt SQL (``tests/dbt/bigquery_rules.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from temporalio.testing import ActivityEnvironment

from activities.pacing import RequestBudgets
from activities.vtex_backfill import CreationWindow, PlanPageInput, VtexBackfillActivities
from activities.vtex_catalog import VtexCatalogActivities
from activities.vtex_customers import CustomerCursors, CustomerPageResult, VtexCustomerActivities
from clients.vtex import OrderPage, ScrollPage
from core.settings import Settings
from devstack.demo_orders import _rows
from tests.dbt.bigquery_rules import violations
from warehouse.landing import Warehouse, bigquery_client, landed_since, storage_writer
from warehouse.streams import StreamCursor
from warehouse.tables import QUARANTINE, VTEX_ORDERS, VTEX_SKUS, Layers


class Listening:
    """A warehouse that sends nothing: each query's SQL is kept in ``sent`` and its parameters in
    ``parameters``, and it answers the next rows of ``answers`` (none once they run out); the landings
    land nothing."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, answers: list[list[dict[str, Any]]] | None = None
    ) -> None:
        settings = Settings(environment="test")
        self.warehouse = Warehouse(
            bigquery_client(settings), storage_writer(settings), Layers.with_prefix("t1_"), 5
        )
        self.answers = answers if answers is not None else []
        self.sent: list[str] = []
        self.parameters: list[list[Any]] = []
        stubs = {"query": self.query, "ready": self.ready, "land_at": self.land, "quarantine_at": self.land}
        for name, stub in stubs.items():
            monkeypatch.setattr(self.warehouse, name, stub)

    async def query(self, sql: str, parameters: Any = ()) -> list[dict[str, Any]]:
        self.sent.append(sql)
        self.parameters.append(list(parameters))
        return self.answers.pop(0) if self.answers else []

    async def ready(self) -> None:
        return None

    async def land(self, *args: Any) -> StreamCursor:
        return StreamCursor()


async def test_every_bronze_read_bounds_its_partition_column(monkeypatch: pytest.MonkeyPatch) -> None:
    listening = Listening(monkeypatch)
    warehouse, sent = listening.warehouse, listening.sent
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


def test_a_page_read_from_its_oldest_change_less_the_clocks_skew() -> None:
    changed = [datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 1, 0, 30, tzinfo=UTC)]
    assert landed_since(changed) == datetime(2026, 2, 28, 23, 30, tzinfo=UTC)
    assert landed_since([*changed, None]) is None  # one unknown: every day may hold it
    assert landed_since([]) is None
    assert landed_since([datetime(1, 1, 1, tzinfo=UTC)]) is None  # no day before it to start from


async def test_the_syncs_look_for_what_landed_only_from_their_pages_oldest_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A customer sync page and a backfill page ask bronze which of their versions landed already. Each
    reads from its oldest change's day (less the clocks' skew) on, not every day of history: customer
    ids spread over every clustered block, so only the days prune that read."""
    listening = Listening(monkeypatch)
    warehouse, sent = listening.warehouse, listening.sent
    customers = VtexCustomerActivities(cast(Any, None), warehouse, cast(Any, None), cast(Any, None))
    documents = [
        {"id": "c-1", "email": "ana@example.com", "updatedIn": "2026-03-02T10:00:00.000Z"},
        {"id": "c-2", "email": "not-an-address", "createdIn": "2026-03-01T00:30:00.000Z"},
    ]
    await ActivityEnvironment().run(customers._land, ScrollPage(documents, None), result())

    class Vtex:
        async def list_orders(self, *args: Any, **kwargs: Any) -> OrderPage:
            summaries = [{"orderId": "o-1", "lastChange": "2026-03-03T00:20:00.0000000+00:00"}]
            return OrderPage(summaries, total=1, pages=1)

    backfill = VtexBackfillActivities(cast(Any, Vtex()), warehouse, RequestBudgets())
    window = CreationWindow("2024-03-01T00:00:00.000Z", "2024-03-01T23:59:59.999Z")
    await ActivityEnvironment().run(backfill.plan_page, PlanPageInput(window, 1, 100, 100.0))
    await warehouse.aclose()
    assert len(sent) == 2 and {sql: violations(sql) for sql in sent} == {sql: [] for sql in sent}
    customers_read, orders_read = sent
    assert "ingested_at >= timestamp '2026-02-28 00:00:00+00'" in customers_read
    assert "quarantined_at >= timestamp '2026-02-28 00:00:00+00'" in customers_read
    assert "ingested_at >= timestamp '2026-03-02 00:00:00+00'" in orders_read  # 23:20 on the day before


def result() -> CustomerPageResult:
    return CustomerPageResult(None, False, CustomerCursors())

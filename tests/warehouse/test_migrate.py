"""An installed warehouse's bronze gains the typed columns in place, filled as the landing fills them."""

from __future__ import annotations

from typing import Any

import pytest
from google.api_core import exceptions as google_errors
from google.cloud import bigquery

from tests.dbt.fixture import ORDERS, insert_bronze_row
from warehouse.landing import Warehouse, bronze_rows
from warehouse.migrate import migrate
from warehouse.tables import BRONZE_SCHEMA, BRONZE_TABLES, TYPED_COLUMNS, VTEX_CUSTOMERS, VTEX_ORDERS
from warehouse.vtex_customers import customer_version
from warehouse.vtex_orders import order_version

CUSTOMER = {
    "id": "c-1",
    "userId": "u-1",
    "email": "ana@example.com.br",
    "createdIn": "2025-06-01T10:00:00.1234567-03:00",
}


async def land_as_before(warehouse: Warehouse, table: str, row: dict[str, Any]) -> None:
    """A row as an earlier version landed it: the ingestion metadata and the payload, nothing typed."""
    await insert_bronze_row(warehouse, table, {field.name: row[field.name] for field in BRONZE_SCHEMA})


async def typed(warehouse: Warehouse, table: str) -> dict[str, dict[str, Any]]:
    columns = ", ".join(column.name for column in TYPED_COLUMNS[table])
    rows = await warehouse.query(
        f"select event_key, {columns} from `{warehouse.table_id(warehouse.layers.bronze, table)}`"
    )
    return {row.pop("event_key"): row for row in rows}


async def test_migrate_adds_and_fills_the_typed_columns_as_the_landing_would(
    warehouse: Warehouse, warehouse_settings: dict[str, Any]
) -> None:
    # Bronze as an earlier version made it: no typed columns.
    client = warehouse._client
    client.create_dataset(warehouse.layers.bronze, exists_ok=True)
    for table in (VTEX_ORDERS, VTEX_CUSTOMERS):
        old = bigquery.Table(warehouse.table_id(warehouse.layers.bronze, table), schema=list(BRONZE_SCHEMA))
        old.time_partitioning = bigquery.TimePartitioning(field="ingested_at")
        client.create_table(old)
    await warehouse.execute(f"create schema if not exists `{client.project}.{warehouse.layers.silver}`")
    old_view = warehouse.table_id(warehouse.layers.silver, "stg_vtex__orders")
    await warehouse.execute(f"create view `{old_view}` as select 1 as one")
    orders = [order_version(document) for document in ORDERS]
    customer = customer_version(CUSTOMER).record
    for row in bronze_rows(orders):
        await land_as_before(warehouse, VTEX_ORDERS, row)
    await land_as_before(warehouse, VTEX_CUSTOMERS, bronze_rows([customer])[0])

    filled = await migrate(warehouse)

    assert (filled[VTEX_ORDERS], filled[VTEX_CUSTOMERS]) == (len(ORDERS), 1)
    assert "stg_vtex__orders" not in {table.table_id for table in client.list_tables(warehouse.layers.silver)}
    # Exactly what the landing writes now (times cut to microseconds, in UTC; money in cents).
    assert await typed(warehouse, VTEX_ORDERS) == {order.event_key: order.columns for order in orders}
    assert await typed(warehouse, VTEX_CUSTOMERS) == {customer.event_key: customer.columns}
    assert customer.columns["created_at"].isoformat() == "2025-06-01T13:00:00.123456+00:00"
    # Landings go on with the typed columns, and a second run changes nothing.
    await warehouse.land(VTEX_CUSTOMERS, [customer_version({**CUSTOMER, "id": "c-2"}).record])
    assert await migrate(warehouse) == {VTEX_ORDERS: 0, "vtex_order_events": 0, VTEX_CUSTOMERS: 0}


async def test_an_upgrade_raced_by_another_replica_reads_the_table_again(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas of a new version upgrade bronze at once: the second's update carries the table's old
    etag and BigQuery refuses it (412). It reads the table again and finds the columns there, instead of
    failing the landings that wait on it for good."""
    await warehouse.ensure_schema()
    table_id = warehouse.table_id(warehouse.layers.bronze, VTEX_ORDERS)
    upgraded = warehouse._client.get_table(table_id)
    seen_before = bigquery.Table(table_id, schema=upgraded.schema[:-1])  # read before the other's update
    seen_before.require_partition_filter = True
    updates: list[list[str]] = []
    real_update = warehouse._client.update_table

    def update_table(table: bigquery.Table, fields: list[str], **kwargs: Any) -> bigquery.Table:
        updates.append(fields)
        if len(updates) == 1:
            raise google_errors.PreconditionFailed("Precondition check failed.")
        return real_update(table, fields, **kwargs)

    monkeypatch.setattr(warehouse._client, "update_table", update_table)
    warehouse._upgrade(seen_before, BRONZE_TABLES[VTEX_ORDERS])
    # One refused update; the table read again has the columns. (The emulator keeps no partition
    # filter setting, so it is set again there; BigQuery has it already.)
    assert updates[0] == ["schema"] and all("schema" not in fields for fields in updates[1:])

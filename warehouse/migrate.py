"""Bring an installed warehouse's bronze tables up to this version, in place; safe to run again.

    .venv/bin/python -m warehouse.migrate

1. Adds the columns bronze tables gained since they were made (``Warehouse.ensure_schema`` does this at
   every worker start too): the typed columns beside the payload (``warehouse.tables.TYPED_COLUMNS``).
2. Fills those columns for rows landed before they existed, from the payload, with one UPDATE per table
   (rows that have them already are left alone, so a second run changes nothing). The SQL reads the
   payload the way the landing does: times cut to microseconds, money as integer cents. Until it has
   run, builds leave those order versions out rather than merge them as nulls.
3. Drops the staging views earlier versions built in silver (``stg_vtex__*``): they read all of bronze,
   which now requires a partition filter.

Run it once after upgrading the workers, then rebuild silver and gold from all of bronze:
``.venv/bin/hub dbt build --full-refresh``. On BigQuery each UPDATE bills the table's
payload and typed columns once, and the rewrite of the partitions it changes (about twice the table).
"""

from __future__ import annotations

import asyncio
import sys

from core.settings import Settings
from warehouse.landing import Warehouse
from warehouse.tables import VTEX_CUSTOMERS, VTEX_ORDER_EVENTS, VTEX_ORDERS, every_partition

# A VTEX time string as the landing reads it: digits past the sixth cut (BigQuery's TIMESTAMP holds
# microseconds and refuses more); SAFE: an unreadable time stays null rather than failing the statement.
_TIME = r"safe.timestamp(regexp_replace(json_value(payload, '{path}'), r'(\.\d{{6}})\d+', r'\1'))"
_TOTAL = (
    "(select sum(cast(json_value(total, '$.value') as int64))"
    " from unnest(json_query_array(payload, '$.totals')) as total"
    " where json_value(total, '$.id') = '{name}')"
)

# The views earlier versions built in silver (staging), gone from the dbt project.
OLD_VIEWS = ("stg_vtex__orders", "stg_vtex__order_items", "stg_vtex__order_events", "stg_vtex__skus",
             "stg_vtex__customers")  # fmt: skip

# Per table: each typed column's value from the payload, and the rows still to fill.
FILLS: dict[str, tuple[dict[str, str], str]] = {
    VTEX_ORDERS: (
        {
            "status": "json_value(payload, '$.status')",
            "created_at": _TIME.format(path="$.creationDate"),
            "value_cents": "cast(json_value(payload, '$.value') as int64)",
            "items_cents": _TOTAL.format(name="Items"),
            "discounts_cents": _TOTAL.format(name="Discounts"),
            "shipping_cents": _TOTAL.format(name="Shipping"),
            "customer_profile_id": "json_value(payload, '$.clientProfileData.userProfileId')",
        },
        "status is null",  # every order version has a status (the landing checks it)
    ),
    VTEX_ORDER_EVENTS: (
        {"state": "coalesce(json_value(payload, '$.State'), json_value(payload, '$.state'))"},
        "state is null",
    ),
    VTEX_CUSTOMERS: (
        {"user_id": "json_value(payload, '$.userId')", "created_at": _TIME.format(path="$.createdIn")},
        "user_id is null and created_at is null",
    ),
}


def fill_statement(warehouse: Warehouse, table: str) -> str:
    """The UPDATE that fills ``table``'s typed columns where they are still empty."""
    values, unfilled = FILLS[table]
    assignments = ", ".join(f"{column} = {expression}" for column, expression in values.items())
    return (
        f"update `{warehouse.table_id(warehouse.layers.bronze, table)}` set {assignments}"
        f" where {unfilled} and {every_partition(table)}"
    )


async def migrate(warehouse: Warehouse) -> dict[str, int]:
    """Add missing columns, fill the typed ones, drop the old views; the rows filled per table."""
    await warehouse.ensure_schema()
    filled = {table: await warehouse.execute(fill_statement(warehouse, table)) for table in FILLS}
    for view in OLD_VIEWS:
        await warehouse.execute(f"drop view if exists `{warehouse.table_id(warehouse.layers.silver, view)}`")
    return filled


async def main() -> None:
    warehouse = Warehouse.from_settings(Settings())
    try:
        for table, rows in (await migrate(warehouse)).items():
            sys.stdout.write(f"bronze.{table}: typed columns filled on {rows:,} rows\n")
        sys.stdout.write("next: hub dbt build --full-refresh (.venv/bin/hub in a checkout)\n")
    finally:
        await warehouse.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

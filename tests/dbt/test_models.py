"""dbt build of silver and gold on the emulator, on bronze rows the test lands through the warehouse layer."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path
from datetime import UTC, datetime, timedelta
from typing import Any


import pytest

from core.settings import Settings
from tests.dbt.bigquery_rules import compiled_violations
from tests.dbt.fixture import CUSTOMERS, EXPECTED_360, ORDERS, SKUS, insert_bronze_row, land_store, order
from warehouse.landing import Warehouse
from contracts.dbt_build import DbtBuildSummary
from warehouse.dbt import build_command, dbt_environment, freshness_since, parse_summary
from warehouse.landing import BronzeRecord, InvalidRecord, bronze_rows
from warehouse.leads import lead_record
from core.vtex import OrderEvent, change_key
from warehouse.tables import LEAD_STATUS_CHANGES, VTEX_CUSTOMERS, VTEX_ORDER_EVENTS, VTEX_ORDERS
from warehouse.vtex_customers import customer_version
from warehouse.vtex_orders import order_event, order_version

# Each test builds models and runs their tests on the emulator: minutes on a loaded machine.
pytestmark = pytest.mark.timeout(360)
# What the tests that read a few tables build: those tables and the models they read (dbt's selection).
CUSTOMER_360 = ("+customer_360",)
RECONCILIATION = ("+lifetime_values_add_up_to_revenue",)  # the data test, and the models it reads

# Every table a build writes, with the key its rows are sorted by for comparison.
BUILT = {
    ("silver", "orders"): "order_id",
    ("silver", "order_items"): "order_item_id",
    ("silver", "order_events"): "order_event_id",
    ("silver", "skus"): "sku_id",
    ("silver", "customers"): "customer_id",
    ("silver", "profile_orders"): "order_id",
    ("silver", "orders_per_profile"): "user_id",
    ("gold", "customer_360"): "customer_id",
    ("gold", "daily_sales"): "sales_date",
    ("gold", "product_performance"): "sku_id",
    ("silver", "lead_status_changes"): "event_key",
    ("silver", "lead_deliveries"): "delivery_id",
    ("gold", "dealer_performance"): "dealer_id, day",
    ("silver", "leads"): "lead_id",
    ("gold", "lead_funnel"): "received_date, state, model",
}


async def dbt_build(
    settings: Settings,
    work_dir: Path,
    full_refresh: bool = False,
    fast: bool = False,
    models_only: bool = False,
    only: tuple[str, ...] = (),
) -> DbtBuildSummary:
    """``python -m warehouse.dbt build``, as the build activity runs it. ``models_only``: without the data
    and unit tests (most of a build on the emulator), for tests that compare what the models wrote;
    ``only``: these nodes alone (dbt's selection syntax: ``+customer_360`` is it and what it reads), for
    tests that read a few models: a build of all of them takes a few seconds more each time."""
    select = only or (("resource_type:model",) if models_only else ())
    command = build_command(work_dir, select=select, full_refresh=full_refresh, fast=fast)
    environment = {**os.environ, **dbt_environment(settings)}
    if models_only or only:
        # dbt build also runs the tests of the models it selects (its "eager" indirect selection).
        environment["DBT_INDIRECT_SELECTION"] = "empty"
    done = await asyncio.to_thread(
        subprocess.run, command, env=environment, capture_output=True, text=True, timeout=600, check=False
    )
    summary = parse_summary(done.stdout)
    assert not summary.error, done.stdout[-3000:]
    return summary


async def snapshot(warehouse: Warehouse) -> dict[str, list[dict[str, Any]]]:
    """Every built table's rows, sorted by key; without the build's own moment (figures_as_of), so two
    builds of the same data compare equal."""
    tables = {}
    for (layer, table), key in BUILT.items():
        dataset = getattr(warehouse.layers, layer)
        rows = await warehouse.query(f"select * from `{warehouse.table_id(dataset, table)}` order by {key}")
        tables[table] = [{k: v for k, v in row.items() if k != "figures_as_of"} for row in rows]
    return tables


async def order_days(warehouse: Warehouse) -> dict[str, datetime]:
    """Each order's creation time, as silver.order_days holds it (one row per order: a dict would hide
    a second)."""
    table = warehouse.table_id(warehouse.layers.silver, "order_days")
    rows = await warehouse.query(f"select order_id, created_at from `{table}`")
    assert len({row["order_id"] for row in rows}) == len(rows), rows
    return {row["order_id"]: row["created_at"] for row in rows}


async def customers_found_on_their_day(warehouse: Warehouse) -> int:
    """How many buyers customer_360 has, each checked: customer_days' newest change of it is the row's
    changed_at (where the read API looks for it)."""
    days = warehouse.table_id(warehouse.layers.gold, "customer_days")
    rows = await warehouse.query(f"select customer_id, changed_at from `{days}`")
    keys = [(row["customer_id"], row["changed_at"]) for row in rows]
    assert len(set(keys)) == len(keys), keys  # each change once
    newest: dict[str, datetime] = {}
    for customer, at in keys:
        newest[customer] = max(at, newest.get(customer, at))
    changed = {row["customer_id"]: row["changed_at"] for row in await rows_of(warehouse, "gold", "customer_360")}
    assert {customer: newest.get(customer) for customer in changed} == changed
    return len(changed)


async def build_starts(warehouse: Warehouse) -> dict[str, datetime]:
    """When each incremental model's last successful build started, as its next build reads it."""
    table = warehouse.table_id(warehouse.layers.silver, "build_watermarks")
    rows = await warehouse.query(f"select model, build_started from `{table}`")
    return {row["model"]: row["build_started"] for row in rows}


@pytest.mark.timeout(360)  # a whole build and its tests on the emulator: minutes on a loaded machine
async def test_build_passes_and_gold_matches_a_hand_computation(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    await land_store(warehouse)
    # VTEX's newest version of o-2 has an unreadable value: refused at landing, kept in quarantine.
    broken = order("o-2", "u-ana", 5000, "2026-03-02T10:00:00.0000000Z", "invoiced", "2026-03-09T10:00:00Z")
    with pytest.raises(InvalidRecord) as refused:
        order_version({**broken, "value": "50.00"})
    await warehouse.quarantine([refused.value.quarantine])
    summary = await dbt_build(settings, tmp_path)
    assert summary.success, summary.failures
    assert (summary.models_built, summary.models_failed, summary.tests_failed) == (20, 0, 0)
    assert summary.tests_passed >= 25  # keys, relationships, accepted values, and the unit tests
    # The models' docs are the tables' and columns' BigQuery descriptions (persist_docs).
    table = await asyncio.to_thread(
        warehouse._client.get_table, warehouse.table_id(warehouse.layers.gold, "dealer_performance")
    )
    assert table.description and table.description.startswith("Per dealer and day")
    described = {field.name: field.description for field in table.schema}
    assert (
        described["deal_conversion"] == "deals_won / leads_received, to 4 places; null in an 'unlinked' row."
    )
    assert sorted(warning.split(":")[0] for warning in summary.warnings) == [
        "not_null_skus_base_price",
        "orders_newer_version_quarantined",  # o-2: silver shows an older version than VTEX's newest
        "quarantine_share_of_order_versions",  # 1 of 7 versions today
        "quarantined_order_versions",
        "source vtex_order_events",  # dbt source freshness: no state change landed at all
    ]
    fresh = {"vtex_orders": "pass", "vtex_customers": "pass", "vtex_skus": "pass"}
    assert summary.freshness == {**fresh, "vtex_order_events": "error"}
    assert set(summary.loaded_at) == set(fresh)
    # Each freshness query reads a week of bronze, bounded by a literal BigQuery prunes by.
    since = freshness_since(datetime.now(UTC))
    stale = f"source vtex_order_events: freshness error, newest row landed none since {since}"
    assert stale in summary.warnings
    queries = (tmp_path / "logs" / "dbt.log").read_text()
    assert queries.count(f"where ingested_at >= timestamp '{since}'") == 4, since

    built = await snapshot(warehouse)
    gold = {row["customer_id"]: row for row in built["customer_360"]}
    for customer_id, expected in EXPECTED_360.items():
        assert {name: gold[customer_id][name] for name in expected} == expected, customer_id
    orders = {row["order_id"]: row for row in built["orders"]}
    assert len(built["orders"]) == 4  # o-1 landed three times (two versions, one repeated): one order
    assert orders["o-1"]["status"] == "invoiced"  # its latest version
    customers = {row["customer_id"]: row for row in built["customers"]}
    assert customers["c-bruno"]["email_is_masked"] and customers["c-bruno"]["email"] is None
    active = await warehouse.query(
        f"select sku_id from `{warehouse.table_id(warehouse.layers.silver, 'products_active')}` order by 1"
    )
    assert [row["sku_id"] for row in active] == list(SKUS)  # the unpriced SKU cannot be bought
    daily = {str(row["sales_date"]): row for row in built["daily_sales"]}
    assert daily["2026-02-01"]["revenue"] == 0 and daily["2026-02-01"]["canceled_orders"] == 1
    assert daily["2026-01-01"]["revenue"] == 100

    again = await dbt_build(settings, tmp_path, models_only=True)  # nothing new landed
    assert again.success
    assert await snapshot(warehouse) == built
    # The 30-second path: silver and customer_360, no tests (they run in the hourly full build).
    fast = await dbt_build(settings, tmp_path, fast=True)
    assert (fast.success, fast.models_built, fast.tests_passed + fast.tests_warned) == (True, 15, 0)
    assert await snapshot(warehouse) == built
    # What ran would mean the same on BigQuery: no emulator leniency in the compiled SQL.
    assert compiled_violations(tmp_path / "target") == {}


async def land_late(warehouse: Warehouse, document: dict[str, Any], minutes_behind: int) -> None:
    """Land an order version as a worker whose clock runs ``minutes_behind`` would: its ingested_at is
    that far before the moment it lands (an append acknowledged long after it started looks the same)."""
    row = bronze_rows([order_version(document)])[0]
    await insert_bronze_row(
        warehouse, VTEX_ORDERS, {**row, "ingested_at": row["ingested_at"] - timedelta(minutes=minutes_behind)}
    )


def state_change(order_id: str, state: str, at: str) -> BronzeRecord:
    """An order's state change as a hook announced it and the order's workflow lands it."""
    return order_event(OrderEvent(order_id, state, change_key(at), payload={"State": state}))


def lead_change(lead_id: str, status: str, at: str, dealer_id: str = "") -> BronzeRecord:
    """A status change of a Campinas Onix lead from the site, as the lead warehouse sync lands it."""
    changed_at = datetime.fromisoformat(at)
    fields = {"lead_id": lead_id, "status": status, "dealer_id": dealer_id, "changed_at": changed_at}
    place = {"state": "SP", "city": "Campinas", "model": "Onix", "lead_source": "Site"}
    return lead_record("status", {**fields, **place}, changed_at)


# Four dbt builds against the emulator (about two minutes here): more room than the suite's default.
@pytest.mark.timeout(360)
async def test_incremental_build_equals_a_full_rebuild(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    await land_store(warehouse)
    await warehouse.land(
        LEAD_STATUS_CHANGES,
        [
            lead_change("l-1", "received", "2026-03-01T12:00:00+00:00"),
            lead_change("l-1", "delivered", "2026-03-01T12:01:00+00:00", "d-1"),
            lead_change("l-2", "received", "2026-03-01T13:00:00+00:00"),
        ],
    )
    # Bruno's o-4 loses an item; that version landed five hours ago, long before the next landings.
    shrunk = order("o-4", "u-bruno", 4000, "2026-02-10T08:00:00.0000000Z", changed="2026-02-11T08:00:00Z")
    shrunk["items"] = shrunk["items"][:1]
    await land_late(warehouse, shrunk, minutes_behind=300)
    invoiced_o1 = state_change("o-1", "invoiced", "2026-01-02T09:00:00.0000000Z")
    await warehouse.land(
        VTEX_ORDER_EVENTS,
        [state_change("o-1", "payment-pending", "2026-01-01T10:00:00.0000000Z"), invoiced_o1],
    )
    assert (await dbt_build(settings, tmp_path, models_only=True)).success
    # Later: o-2 is canceled, and Carla buys for the first time.
    canceled = order("o-2", "u-ana", 5000, "2026-03-02T10:00:00.0000000Z", "canceled", "2026-03-05T10:00:00Z")
    carla = order("o-5", "u-carla", 12345, "2026-04-01T12:00:00.0000000Z", "payment-approved")
    await warehouse.land(VTEX_ORDERS, [order_version(canceled), order_version(carla)])
    # o-2's cancellation is announced, and o-1's invoicing again (a resent hook): one row each.
    await warehouse.land(
        VTEX_ORDER_EVENTS, [state_change("o-2", "canceled", "2026-03-05T10:00:00.0000000Z"), invoiced_o1]
    )
    # l-1's dealer accepts it; l-3 arrives. The hourly build recomputes those two leads only.
    await warehouse.land(
        LEAD_STATUS_CHANGES,
        [
            lead_change("l-1", "accepted", "2026-03-01T12:20:00+00:00", "d-1"),
            lead_change("l-3", "received", "2026-03-02T09:00:00+00:00"),
        ],
    )
    assert (await dbt_build(settings, tmp_path, models_only=True)).success
    incremental = await snapshot(warehouse)
    # The leads to recompute reach BigQuery as constants, which prune the history's clustered blocks.
    compiled = (
        tmp_path / "target" / "compiled" / "integrations_hub" / "models" / "silver" / "leads.sql"
    ).read_text()
    assert re.search(r"where lead_id in \(('l-\d', )*'l-3'", compiled), compiled
    # Those ids are looked up in bronze, pruned to the days landed since the model's last build: silver's
    # histories are partitioned by when things happened, so a filter on when they landed reads it whole.
    log = (tmp_path / "logs" / "dbt.log").read_text()
    lookups = re.findall(r"select distinct (.+?) from `[^`]+`\.`(\w+)`\.`\w+` where (.*) limit \d+", log)
    assert {"lead_id", "entity_id"} <= {column for column, _, _ in lookups}, lookups
    for _, dataset, where in lookups:
        assert dataset.endswith("_bronze") and re.match(r"ingested_at >= timestamp '[^']+'", where), where
    # The orders and profiles to recompute reach BigQuery as constants, taken from bronze's days since the
    # last build: they prune silver.orders' (by order) and profile_orders' (by profile) clustered blocks.
    silver = tmp_path / "target" / "compiled" / "integrations_hub" / "models" / "silver"
    by_order = (silver / "profile_orders.sql").read_text()
    assert re.search(r"where order_id in \(('o-\d', )*'o-5'", by_order), by_order
    by_profile = (silver / "orders_per_profile.sql").read_text()
    assert re.search(r"where user_id in \(('u-[a-z]+', )*'u-carla'", by_profile), by_profile
    # The events' merge reads the target from the oldest day it merges (o-1's, read again), and has no
    # UPDATE clause: BigQuery bills it for the columns it reads, not as a rewrite of the partitions.
    ran = (
        tmp_path / "target" / "run" / "integrations_hub" / "models" / "silver" / "order_events.sql"
    ).read_text()
    assert re.search(r"DBT_INTERNAL_DEST\.changed_at >= timestamp '2026-01-0\d \d\d:\d\d:\d\d\+00'", ran), ran
    assert "when matched" not in ran.lower(), ran
    assert [(e["order_id"], e["state"]) for e in incremental["order_events"]] == [
        ("o-1", "invoiced"),
        ("o-1", "payment-pending"),
        ("o-2", "canceled"),
    ]  # fmt: skip (by event key)
    leads = {row["lead_id"]: row for row in incremental["leads"]}
    assert {lead: (row["furthest_rank"], row["latest_status"]) for lead, row in leads.items()} == {
        "l-1": (2, "accepted"),
        "l-2": (0, "received"),
        "l-3": (0, "received"),
    }
    assert [item["sku_id"] for item in incremental["order_items"] if item["order_id"] == "o-4"] == ["101"]
    gold = {row["customer_id"]: row for row in incremental["customer_360"]}
    assert (gold["c-ana"]["orders_count"], gold["c-ana"]["lifetime_value"]) == (1, 100)
    assert (gold["c-carla"]["orders_count"], float(gold["c-carla"]["lifetime_value"])) == (1, 123.45)

    second_build = await build_starts(warehouse)
    assert {"orders", "order_events", "customers", "leads", "lead_status_changes"} <= second_build.keys()

    # Then landings a watermark must not lose: an older version of o-4 landed now, hours after its newer
    # one (a backfill; the newer one is outside this build's window), a newer version of o-5 from a worker whose clock runs 20 minutes behind, and an order
    # of a guest (no customer document) landed an hour late.
    older = order("o-4", "u-bruno", 8010, "2026-02-10T08:00:00.0000000Z", "payment-approved")
    await warehouse.land(VTEX_ORDERS, [order_version(older)])
    invoiced = order("o-5", "u-carla", 12345, "2026-04-01T12:00:00.0000000Z", changed="2026-04-03T09:00:00Z")
    await land_late(warehouse, invoiced, minutes_behind=20)
    await land_late(
        warehouse, order("o-6", "u-guest", 5000, "2026-04-02T12:00:00.0000000Z"), minutes_behind=60
    )
    assert (await dbt_build(settings, tmp_path, models_only=True)).success
    incremental = await snapshot(warehouse)
    orders = {row["order_id"]: row for row in incremental["orders"]}
    assert (orders["o-4"]["items_count"], orders["o-4"]["status"]) == (1, "invoiced")  # not the older one
    assert orders["o-5"]["status"] == "invoiced"
    gold = {row["customer_id"]: row for row in incremental["customer_360"]}
    assert (gold["profile:u-guest"]["orders_count"], gold["profile:u-guest"]["lifetime_value"]) == (1, 50)
    revenue = sum(day["revenue"] for day in incremental["daily_sales"])
    assert sum(row["lifetime_value"] for row in gold.values()) == revenue  # every revenue order counted once

    # The orders' merge read the target only on the creation days of the orders it merged (all of them
    # here: the lookback re-reads what landed in the last hours), each a constant range on the partition.
    ran = (tmp_path / "target" / "run" / "integrations_hub" / "models" / "silver" / "orders.sql").read_text()
    bounded = re.findall(
        r"DBT_INTERNAL_DEST\.created_at >= timestamp '(\d{4}-\d\d-\d\d) 00:00:00\+00' and", ran
    )
    assert sorted(bounded) == sorted({str(row["created_at"].date()) for row in incremental["orders"]}), ran
    # Where the read API finds each order's day: order_days' merge reads its target only by the ids it
    # merges, as constants (they prune its clustered blocks), and has no UPDATE clause.
    ran = (
        tmp_path / "target" / "run" / "integrations_hub" / "models" / "silver" / "order_days.sql"
    ).read_text()
    [listed] = re.findall(r"DBT_INTERNAL_DEST\.order_id in \(([^)]*)\)", ran)
    created = {row["order_id"]: row["created_at"] for row in incremental["orders"]}
    assert sorted(re.findall(r"'(o-\d)'", listed)) == sorted(created)  # all re-read in the lookback
    assert "when matched" not in ran.lower(), ran
    assert await order_days(warehouse) == created
    # And each buyer's row of customer_360: customer_days, the same way, one row per change of it.
    ran = (
        tmp_path / "target" / "run" / "integrations_hub" / "models" / "marts" / "customer_days.sql"
    ).read_text()
    assert re.search(r"DBT_INTERNAL_DEST\.customer_id in \(('[\w:-]+', )*'[\w:-]+'\)", ran), ran
    assert "when matched" not in ran.lower(), ran
    assert await customers_found_on_their_day(warehouse)
    # Bronze was read from when the last build started, less the 3-hour lookback, as kept in the table of
    # each model's builds: not from max(ingested_at), which BigQuery would bill for the whole column.
    compiled = (silver / "orders.sql").read_text()
    [since] = re.findall(r"ingested_at >= timestamp '([^']+)'", compiled)
    assert datetime.fromisoformat(since) == second_build["orders"] - timedelta(minutes=180)
    assert (await dbt_build(settings, tmp_path, full_refresh=True, models_only=True)).success
    rebuilt = await snapshot(warehouse)
    # A full refresh stamps every buyer as changed by it (it has no rows to compare with); all else equal.
    for tables in (rebuilt, incremental):
        for row in tables["customer_360"]:
            row.pop("changed_at")
    assert rebuilt == incremental
    assert await order_days(warehouse) == created
    assert await customers_found_on_their_day(warehouse)
    assert len(ORDERS) == 5  # the fixture this comparison was made on


async def test_an_order_counted_for_two_buyers_is_named_by_the_revenue_reconciliation(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    """An invoiced order that moves to another VTEX profile, long after its first versions landed, stays
    counted for the old profile until a full refresh (orders_per_profile recomputes the profiles of the
    versions it reads): lifetime values then exceed revenue, and the hourly build's tests say so."""
    await land_store(warehouse)
    carla = order("o-9", "u-carla", 7000, "2026-03-20T10:00:00.0000000Z", "invoiced", "2026-03-21T10:00:00Z")
    await land_late(warehouse, carla, minutes_behind=300)  # landed five hours ago: past the lookback
    first = await dbt_build(settings, tmp_path, only=RECONCILIATION)
    assert "lifetime_values_add_up_to_revenue" not in [warning.split(":")[0] for warning in first.warnings]
    moved = {**carla, "clientProfileData": {**carla["clientProfileData"], "userProfileId": "u-bruno"}}
    await warehouse.land(VTEX_ORDERS, [order_version({**moved, "lastChange": "2026-03-22T10:00:00Z"})])
    summary = await dbt_build(settings, tmp_path, only=RECONCILIATION)
    assert "lifetime_values_add_up_to_revenue" in [warning.split(":")[0] for warning in summary.warnings]


async def test_the_change_feed_orders_customers_by_the_build_that_changed_them(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    """A reader of GET /v1/customers?changed_since= keeps the last changed_at it saw. An order landed by
    a worker whose clock runs 20 minutes behind reaches gold after that: its buyer's row carries the
    build that changed it, not the order's landing time, so the reader gets it; a buyer nothing changed
    for keeps its time."""
    await land_store(warehouse)
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    before = {row["customer_id"]: row["changed_at"] for row in await customer_rows(warehouse)}
    seen = max(before.values())
    late = order("o-8", "u-carla", 9900, "2026-04-05T12:00:00.0000000Z", "invoiced")
    await land_late(warehouse, late, minutes_behind=20)
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    after = {row["customer_id"]: row for row in await customer_rows(warehouse)}
    assert float(after["c-carla"]["lifetime_value"]) == 99
    changed = sorted(customer for customer, row in after.items() if row["changed_at"] > seen)
    assert changed == ["c-carla"]
    assert after["c-ana"]["changed_at"] == before["c-ana"]


async def test_a_build_rewrites_only_the_buyers_that_changed_and_drops_a_profile_row_given_its_document(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    """customer_360 is merged, not replaced: a build writes the rows whose figures or scores changed and
    leaves the others as they were (BigQuery counts each partition a job writes). A guest's row goes once
    their customer document lands, the document's row taking their orders."""
    await land_store(warehouse)
    await warehouse.land(
        VTEX_ORDERS, [order_version(order("o-6", "u-guest", 5000, "2026-04-02T12:00:00.0000000Z"))]
    )
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    before = {row["customer_id"]: row for row in await customer_rows(warehouse)}
    assert before["profile:u-guest"]["lifetime_value"] == 50
    await warehouse.land(
        VTEX_ORDERS, [order_version(order("o-7", "u-bruno", 4400, "2026-04-06T12:00:00.0000000Z"))]
    )
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    after = {row["customer_id"]: row for row in await customer_rows(warehouse)}
    rewritten = {
        customer
        for customer, row in after.items()
        if row["figures_as_of"] != before[customer]["figures_as_of"]
    }
    assert rewritten == {
        customer
        for customer, row in after.items()
        if row["figures_fingerprint"] != before[customer]["figures_fingerprint"]
        or scores(row) != scores(before[customer])
    }
    assert "c-bruno" in rewritten and "c-carla" not in rewritten  # carla has no orders: nothing moved
    guest = customer_version(
        {
            "id": "c-guest",
            "userId": "u-guest",
            "email": "g@example.com.br",
            "createdIn": "2026-04-07T00:00:00Z",
        }
    )
    await warehouse.land(VTEX_CUSTOMERS, [guest.record])
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    last = {row["customer_id"]: row for row in await customer_rows(warehouse)}
    assert "profile:u-guest" not in last
    # Deleted by name, the documents of the day before the build as constants (clustered by customer_id).
    log = (tmp_path / "logs" / "dbt.log").read_text()
    deletes = re.findall(r"delete from `[^`]+`\.`\w+`\.`customer_360` where (.*)", log)
    assert deletes[-1].startswith("customer_id in (") and "'profile:u-guest'" in deletes[-1], deletes
    assert (last["c-guest"]["orders_count"], last["c-guest"]["lifetime_value"]) == (1, 50)


async def test_the_customer_360_an_earlier_version_replaced_whole_is_merged_into(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    """The table an earlier version built has no fingerprints: the first build computes them from its
    columns, so no buyer is announced as changed, and writes every row with its fingerprint; the next
    builds compare with those."""
    await land_store(warehouse)
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    table = warehouse.table_id(warehouse.layers.gold, "customer_360")
    stamped = {row["customer_id"]: row["changed_at"] for row in await customer_rows(warehouse)}
    await warehouse.query(f"create table `{table}_before` as select * except (figures_fingerprint) from `{table}`")
    await warehouse.query(f"drop table `{table}`")
    await warehouse.query(
        f"create table `{table}` partition by timestamp_trunc(changed_at, day) cluster by customer_id"
        f" as select * from `{table}_before`"
    )
    assert "figures_fingerprint" not in (await customer_rows(warehouse))[0]
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    rows = await customer_rows(warehouse)
    assert len(rows) == len(CUSTOMERS) and all(row["figures_fingerprint"] is not None for row in rows)
    assert {row["customer_id"]: row["changed_at"] for row in rows} == stamped
    # A migration whose merge failed after the pre-hook added the column left it empty: the same again.
    await warehouse.query(f"update `{table}` set figures_fingerprint = null where true")
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    rows = await customer_rows(warehouse)
    assert all(row["figures_fingerprint"] is not None for row in rows)
    assert {row["customer_id"]: row["changed_at"] for row in rows} == stamped
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    assert {row["customer_id"]: row for row in await customer_rows(warehouse)} == {
        row["customer_id"]: row for row in rows
    }  # nothing changed: nothing written


async def customer_rows(warehouse: Warehouse) -> list[dict[str, Any]]:
    return await rows_of(warehouse, "gold", "customer_360")


async def rows_of(warehouse: Warehouse, layer: str, table: str) -> list[dict[str, Any]]:
    return await warehouse.query(f"select * from `{warehouse.table_id(getattr(warehouse.layers, layer), table)}`")


def scores(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["recency_score"], row["frequency_score"], row["monetary_score"]


async def test_a_model_built_without_the_silver_model_it_reads_keeps_its_place(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    """profile_orders reads silver.orders for the orders bronze says changed. Built alone (a selection),
    it cannot be ahead of silver.orders: its next build reads bronze from where orders' does, so an order
    landed meanwhile reaches its buyer once both are built."""
    await land_store(warehouse)
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    first = await build_starts(warehouse)
    await warehouse.land(
        VTEX_ORDERS, [order_version(order("o-7", "u-carla", 4400, "2026-04-06T12:00:00.0000000Z"))]
    )
    assert (await dbt_build(settings, tmp_path, only=("profile_orders",))).success
    alone = await build_starts(warehouse)
    assert alone["profile_orders"] == first["orders"]  # not this build's start: orders was not built
    assert alone["orders"] == first["orders"]
    assert (await dbt_build(settings, tmp_path, only=CUSTOMER_360)).success
    gold = {row["customer_id"]: row for row in await customer_rows(warehouse)}
    assert float(gold["c-carla"]["lifetime_value"]) == 44


async def test_the_marts_count_days_in_the_hubs_business_time_zone(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    """A store set to another time zone (HUB_BUSINESS_TIMEZONE, as the API's "today" and the dealers'
    daily capacity count days) gets its daily sales on that zone's days: an order at 20:30 UTC on May 1
    is a sale of May 2 in Tokyo."""
    await land_store(warehouse)
    evening = order("o-7", "u-ana", 4200, "2026-05-01T20:30:00.0000000Z", "invoiced", "2026-05-01T21:00:00Z")
    await warehouse.land(VTEX_ORDERS, [order_version(evening)])
    tokyo = settings.model_copy(update={"business_timezone": "Asia/Tokyo"})
    assert (await dbt_build(tokyo, tmp_path, only=("+daily_sales",))).success
    daily = {str(row["sales_date"]): row for row in await rows_of(warehouse, "gold", "daily_sales")}
    assert "2026-05-01" not in daily and float(daily["2026-05-02"]["revenue"]) == 42


"""GET /v1/customers/{id} and /v1/orders/{id}: gold and silver served to CRM/ERP over the read API."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.testing import WorkflowEnvironment

from tests.dbt.bigquery_rules import violations
from tests.dbt.fixture import EXPECTED_360, land_store
from tests.dbt.fixture import order as oms_order
from tests.dbt.test_models import dbt_build
from tests.hub import READ_TOKEN, Hub, running_hub
from tests.support import free_port, serve
from tests.warehouse.test_partition_filters import Listening
from warehouse.reads import KEY_LOOKBACK, read_customer, read_order
from warehouse.tables import VTEX_ORDERS
from warehouse.vtex_orders import order_version

AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}


async def test_customer_and_order_views_come_from_gold_and_silver(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, worker=False, **warehouse_settings
    ) as hub:
        warehouse = hub.warehouse()
        try:
            await land_store(warehouse)
        finally:
            await warehouse.aclose()
        # The models only: the read API serves what they wrote (tests/dbt runs the data tests).
        summary = await dbt_build(hub.settings, tmp_path, models_only=True)
        assert summary.success, summary.failures

        answer = await hub.http.get(f"{hub.api_url}/v1/customers/c-ana", headers=AUTH)
        assert answer.status_code == 200, answer.text
        ana = answer.json()
        expected = EXPECTED_360["c-ana"]
        assert (ana["orders_count"], Decimal(ana["lifetime_value"])) == (2, expected["lifetime_value"])
        assert Decimal(ana["average_ticket"]) == expected["average_ticket"]
        assert ana["purchase_frequency"] == expected["purchase_frequency"]
        assert ana["first_order_at"].startswith("2026-01-01T10:00:00")
        assert [order["order_id"] for order in ana["recent_orders"]] == ["o-2", "o-3", "o-1"]  # newest first

        bruno = (await hub.http.get(f"{hub.api_url}/v1/customers/c-bruno", headers=AUTH)).json()
        assert bruno["email"] is None and bruno["email_is_masked"] is True

        order = await hub.http.get(f"{hub.api_url}/v1/orders/o-1", headers=AUTH)
        assert order.status_code == 200, order.text
        body = order.json()
        assert (body["status"], Decimal(body["order_value"])) == ("invoiced", Decimal("100"))
        assert [item["sku_id"] for item in body["items"]] == ["101", "102"]

        await change_feed_pages_through_every_customer_once(hub)
        assert (await hub.http.get(f"{hub.api_url}/v1/customers/c-nobody", headers=AUTH)).status_code == 404
        # A buyer without a customer document is keyed by its profile (README): asked, not refused.
        guest = await hub.http.get(f"{hub.api_url}/v1/customers/profile:u-nobody", headers=AUTH)
        assert guest.status_code == 404, guest.text
        assert (await hub.http.get(f"{hub.api_url}/v1/customers/other:u-1", headers=AUTH)).status_code == 422
        assert (await hub.http.get(f"{hub.api_url}/v1/orders/o-404", headers=AUTH)).status_code == 404
        assert (await hub.http.get(f"{hub.api_url}/v1/orders/bad%20id", headers=AUTH)).status_code == 422
        assert (await hub.http.get(f"{hub.api_url}/v1/orders/o-1")).status_code == 401

        # An order and a buyer that reached silver and gold in a build without the key tables (a model
        # of its own failing, say) are still found: the order's day through bronze, the buyer in the
        # days since customer_days' last build.
        warehouse = hub.warehouse()
        try:
            dora = oms_order("o-7", "u-dora", 7700, "2025-11-20T10:00:00.0000000Z")
            await warehouse.land(VTEX_ORDERS, [order_version(dora)])
        finally:
            await warehouse.aclose()
        assert (await dbt_build(hub.settings, tmp_path, only=("+customer_360",))).success
        late = await hub.http.get(f"{hub.api_url}/v1/orders/o-7", headers=AUTH)
        assert late.status_code == 200 and Decimal(late.json()["order_value"]) == 77, late.text
        buyer = await hub.http.get(f"{hub.api_url}/v1/customers/profile:u-dora", headers=AUTH)
        assert buyer.status_code == 200 and buyer.json()["orders_count"] == 1, buyer.text

        # A hub installed before the key tables reads every day until a build makes them.
        warehouse = hub.warehouse()
        try:
            for layer, table in (("silver", "order_days"), ("gold", "customer_days")):
                dataset = getattr(warehouse.layers, layer)
                await warehouse.query(f"drop table `{warehouse.table_id(dataset, table)}`")
        finally:
            await warehouse.aclose()
        order = await hub.http.get(f"{hub.api_url}/v1/orders/o-1", headers=AUTH)
        assert order.status_code == 200 and order.json() == body
        assert (await hub.http.get(f"{hub.api_url}/v1/orders/o-404", headers=AUTH)).status_code == 404
        answer = await hub.http.get(f"{hub.api_url}/v1/customers/c-ana", headers=AUTH)
        assert answer.status_code == 200 and answer.json() == ana


def reads(keyed: Listening, table: str) -> list[str]:
    """The filters the reads of ``table`` added to the id's, all of the id "x-1"."""
    assert {tuple((p.name, p.value) for p in parameters) for parameters in keyed.parameters} == {
        (("id", "x-1"),)
    }
    head = f"select * from `local-proj.{table}` where "
    return [sql.removeprefix(head) for sql in keyed.sent if sql.startswith(head)]


KEY_SQL = (
    "select keyed.known, keyed.newest, built.started"
    " from (select count(*) > 0 as known, max({column}) as newest from `local-proj.{keys}` where {key} = @id)"
    " as keyed cross join (select max(build_started) as started from `local-proj.t1_silver.build_watermarks`"
    " where model = '{model}') as built"
)
BUILT = datetime(2026, 3, 5, 1, 0, tzinfo=UTC)  # the key model's last build: from 2026-03-04 22:00 on
CREATED = datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC)


async def test_an_order_is_read_from_its_one_day_of_silver_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    """silver.orders is partitioned by creation day: the day comes from silver.order_days (clustered by
    order_id) or, for an order landed since that model's last build, from bronze (partitioned by landing
    day, clustered by id); the row is then read from that day alone, by constant bounds BigQuery prunes
    by. An order neither knows is not looked for in every day."""
    keyed = Listening(
        monkeypatch,
        [
            [{"known": True, "newest": CREATED, "started": BUILT}],
            [],  # order_days knows it, silver.orders not yet: no other day is read
            [{"known": False, "newest": None, "started": BUILT}],
            [{"known": True, "newest": CREATED}],  # landed since order_days' last build
            [],
            [{"known": False, "newest": None, "started": BUILT}],
            [{"known": False, "newest": None}],  # nowhere
            [{"known": True, "newest": None, "started": BUILT}],  # its creation time unreadable
            [],  # not in the rows without a day: a later version may have moved it
            [],
        ],
    )
    for _ in range(4):
        assert await read_order(keyed.warehouse, "x-1") is None
    day = (
        "order_id = @id and created_at >= timestamp '2026-03-02 00:00:00+00'"
        " and created_at < timestamp '2026-03-03 00:00:00+00'"
    )
    assert reads(keyed, "t1_silver.orders") == [
        day,
        day,
        "order_id = @id and created_at is null",
        "order_id = @id",
    ]
    key_sql = KEY_SQL.format(
        column="created_at", keys="t1_silver.order_days", key="order_id", model="order_days"
    )
    landed_sql = (
        "select count(*) > 0 as known, max(created_at) as newest from `local-proj.t1_bronze.vtex_orders`"
        " where entity_id = @id and ingested_at >= timestamp '2026-03-04 00:00:00+00' and status is not null"
    )
    assert [sql for sql in keyed.sent if "t1_silver.orders" not in sql] == [
        key_sql, key_sql, landed_sql, key_sql, landed_sql, key_sql
    ]  # fmt: skip
    assert {sql: violations(sql) for sql in keyed.sent} == {sql: [] for sql in keyed.sent}
    await keyed.warehouse.aclose()


async def test_a_customer_is_read_from_its_newest_change_then_from_the_unkeyed_days(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gold.customer_360 is partitioned by the day of changed_at, which only moves forward: its row is
    looked for on the day of the newest change gold.customer_days holds, then in the days since that
    model's last build (a change it has not seen), never in every day."""
    keyed = Listening(
        monkeypatch,
        [
            [{"known": True, "newest": CREATED, "started": BUILT}],
            [],  # moved since: a build of customer_360 without customer_days
            [],
            [{"known": False, "newest": None, "started": BUILT}],  # new since
            [],
            [{"known": True, "newest": BUILT, "started": BUILT}],  # its day is among the unkeyed ones
            [],
            [{"known": True, "newest": CREATED, "started": None}],  # no build recorded: then every day
            [],
            [],
        ],
    )
    for _ in range(4):
        assert await read_customer(keyed.warehouse, "x-1") is None
    day = (
        "customer_id = @id and changed_at >= timestamp '2026-03-02 00:00:00+00'"
        " and changed_at < timestamp '2026-03-03 00:00:00+00'"
    )
    since = "customer_id = @id and changed_at >= timestamp '2026-03-04 00:00:00+00'"
    assert reads(keyed, "t1_gold.customer_360") == [day, since, since, since, day, "customer_id = @id"]
    key_sql = KEY_SQL.format(
        column="changed_at", keys="t1_gold.customer_days", key="customer_id", model="customer_days"
    )
    assert [sql for sql in keyed.sent if "customer_360" not in sql] == [key_sql] * 4
    await keyed.warehouse.aclose()


async def test_warehouse_away_answers_503_in_time(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, worker=False, bigquery_endpoint=nowhere,
        read_api_warehouse_timeout_seconds=2,
    ) as hub:  # fmt: skip
        try:
            answer = await hub.http.get(f"{hub.api_url}/v1/customers/c-ana", headers=AUTH, timeout=15)
        except httpx.TimeoutException as error:
            raise AssertionError("the read API hung on a warehouse that is away") from error
        assert answer.status_code == 503
        assert answer.json() == {"detail": "the warehouse did not answer"}
    # The operator learns why from the log (the answer only says the warehouse did not answer).
    assert any(r.message.startswith("warehouse read answered 503: ") for r in caplog.records)


async def started_job(request: Request) -> JSONResponse:
    """BigQuery's jobs.insert: the query job is created, and runs."""
    project = request.path_params["project"]
    job = {"projectId": project, "jobId": "job-that-never-ends", "location": "US"}
    return JSONResponse({"jobReference": job, "status": {"state": "RUNNING"}, "configuration": {"query": {}}})


async def results_never_come(request: Request) -> JSONResponse:
    await asyncio.sleep(8)  # past every deadline of the test; the server's shutdown waits for it
    return JSONResponse({}, status_code=503)


# A BigQuery that creates the read's job at once, then never gives its results.
SLOW_BIGQUERY = Starlette(
    routes=[
        Route("/bigquery/v2/projects/{project}/jobs", started_job, methods=["POST"]),
        Route("/bigquery/v2/projects/{project}/queries/{job}", results_never_come),
        Route("/bigquery/v2/projects/{project}/jobs/{job}", results_never_come),
    ]
)


async def test_a_read_whose_job_never_ends_gets_a_503_within_the_setting(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """A read makes several calls (the job, its results), each with the client's deadline: the answer
    comes within HUB_READ_API_WAREHOUSE_TIMEOUT_SECONDS all the same, not a multiple of it."""
    async with (
        serve(SLOW_BIGQUERY) as bigquery,
        running_hub(
            temporal_env.client, sqlite_url, task_queue, worker=False, bigquery_endpoint=bigquery,
            read_api_warehouse_timeout_seconds=2,
        ) as hub,
    ):  # fmt: skip
        started = time.monotonic()
        answer = await hub.http.get(f"{hub.api_url}/v1/customers/c-ana", headers=AUTH, timeout=30)
        waited = time.monotonic() - started
    assert answer.status_code == 503
    assert waited < 2 + 1.5, f"answered after {waited:.1f} s"  # the setting, and room for a busy machine


async def test_dealer_performance_reads_a_range_of_gold_days(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any],
) -> None:  # fmt: skip
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, worker=False, **warehouse_settings
    ) as hub:
        warehouse = hub.warehouse()
        try:
            await warehouse.ready()  # the datasets
            # Gold as a build leaves it: two days of soap-rj, one of another dealer.
            table = warehouse.table_id(warehouse.layers.gold, "dealer_performance")
            columns = (
                "dealer_id, day, leads_received, leads_accepted, leads_with_sla, accepted_within_sla,"
                " median_minutes_to_accept, p90_minutes_to_accept, rerouted_away, leads_sold, conversion,"
                " deals_won, won_amount, deal_conversion"
            )
            none, won = "cast(null as float64)", "numeric '150000.50'"
            rows = [
                f"'soap-rj', date '2026-11-30', 4, 3, 4, 2, 12.5, 40.0, 1, 1, 0.25, 1, {won}, 0.25",
                f"'soap-rj', date '2026-12-01', 2, 0, 2, 0, {none}, {none}, 2, 0, 0.0, 0, numeric '0', 0.0",
                "'rest-sp', date '2026-12-01', 9, 9, 9, 9, 1.0, 2.0, 0, 3, 0.3333, 0, numeric '0', 0.0",
                f"'unlinked', date '2026-12-01', 0, 0, 0, 0, {none}, {none}, 0, 0, {none}, 2, 9, {none}",
            ]
            names = columns.split(", ")
            selects = " union all ".join(
                "select " + ", ".join(f"{value} as {name.strip()}" for value, name in zip(
                    row.split(", "), names, strict=True
                ))
                for row in rows
            )  # fmt: skip
            await warehouse.execute(f"create table `{table}` as {selects}")
        finally:
            await warehouse.aclose()
        url = f"{hub.api_url}/v1/dealers/soap-rj/performance"
        answer = await hub.http.get(url, params={"from": "2026-11-01", "to": "2026-12-31"}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [day["day"] for day in body["days"]] == ["2026-11-30", "2026-12-01"]
        assert body["days"][0]["median_minutes_to_accept"] == 12.5
        assert body["days"][1]["median_minutes_to_accept"] is None  # nothing taken that day
        assert (body["leads_received"], body["accepted_within_sla"], body["rerouted_away"]) == (6, 2, 3)
        assert (body["deals_won"], body["days"][0]["deal_conversion"]) == (1, 0.25)
        assert Decimal(body["won_amount"]) == Decimal("150000.50")
        # The won deals no dealer holds the lead of: no dealer in the rules, yet readable.
        unlinked = await hub.http.get(
            f"{hub.api_url}/v1/dealers/unlinked/performance", params={"from": "2026-12-01"}, headers=AUTH
        )
        assert unlinked.status_code == 200, unlinked.text
        assert [(day["day"], day["deals_won"]) for day in unlinked.json()["days"]] == [("2026-12-01", 2)]
        one_day = await hub.http.get(url, params={"from": "2026-12-01", "to": "2026-12-01"}, headers=AUTH)
        assert [day["day"] for day in one_day.json()["days"]] == ["2026-12-01"]

        backwards = await hub.http.get(url, params={"from": "2026-12-02", "to": "2026-12-01"}, headers=AUTH)
        assert backwards.status_code == 422
        assert (await hub.http.get(url, params={"from": "yesterday"}, headers=AUTH)).status_code == 422
        # 30 days before the first days of the calendar do not exist: a 422, not a 500.
        first_days = await hub.http.get(url, params={"to": "0001-01-05"}, headers=AUTH)
        assert first_days.status_code == 422, first_days.text
        unknown = await hub.http.get(f"{hub.api_url}/v1/dealers/nobody/performance", headers=AUTH)
        assert unknown.status_code == 404
        assert (await hub.http.get(url)).status_code == 401


async def change_feed_pages_through_every_customer_once(hub: Hub) -> None:
    """GET /v1/customers?changed_since=: pages of 2 hold every buyer of gold once, oldest change first."""
    url = f"{hub.api_url}/v1/customers"
    seen: list[tuple[str, str]] = []
    params: dict[str, Any] = {"changed_since": "2000-01-01T00:00:00Z", "limit": 2}
    while True:
        answer = await hub.http.get(url, params=params, headers=AUTH)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += [(row["changed_at"], row["customer_id"]) for row in page["customers"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    ids = [customer_id for _, customer_id in seen]
    assert sorted(ids) == sorted(set(ids)) and {"c-ana", "c-bruno", "c-carla"} <= set(ids)
    assert [at for at, _ in seen] == sorted(at for at, _ in seen)
    # A CRM that saw the newest change asks from there: nothing older comes back.
    latest = max(at for at, _ in seen)
    newer = await hub.http.get(url, params={"changed_since": latest}, headers=AUTH)
    assert {row["changed_at"] for row in newer.json()["customers"]} == {latest}
    far = await hub.http.get(url, params={"changed_since": "2999-01-01T00:00:00Z"}, headers=AUTH)
    assert far.json() == {"customers": [], "next_cursor": None}
    # No offset, not a time, none, and times with no UTC time (before year 1, after year 9999 in UTC).
    edges = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00")
    for bad in (
        {"changed_since": "2026-01-01T00:00:00"},
        {"changed_since": "x"},
        {},
        *({"changed_since": edge} for edge in edges),
    ):
        assert (await hub.http.get(url, params=bad, headers=AUTH)).status_code == 422, bad
    broken = {"changed_since": "2000-01-01T00:00:00Z", "cursor": "not-a-cursor"}
    assert (await hub.http.get(url, params=broken, headers=AUTH)).status_code == 422
    # A cursor this API never gave: a time with no UTC time in it.
    forged = base64.urlsafe_b64encode(json.dumps([edges[0], "x"]).encode()).decode().rstrip("=")
    far_back = {"changed_since": "2000-01-01T00:00:00Z", "cursor": forged}
    assert (await hub.http.get(url, params=far_back, headers=AUTH)).status_code == 422
    # A year before 1000 is a time BigQuery reads too: its literal is padded to four digits.
    early = await hub.http.get(url, params={"changed_since": "0999-01-01T00:00:00Z"}, headers=AUTH)
    assert early.status_code == 200, early.text
    assert len(early.json()["customers"]) == min(len(ids), 100)


def test_the_key_tables_lookback_is_the_builds_own() -> None:
    """A key miss is read from the days since the key model's last build less the lookback its build
    reads again: a shorter one in the read API than in dbt would miss rows the key table lacks."""
    project = Path(__file__).resolve().parents[2] / "dbt"
    minutes = {
        int(found)
        for path in project.rglob("*.sql")
        for found in re.findall(
            r"""var\(\s*["']incremental_lookback_minutes["']\s*,\s*(\d+)\s*\)""", path.read_text()
        )
    }
    assert minutes == {KEY_LOOKBACK.total_seconds() / 60}
    # The project sets no other value: the default holds.
    assert "incremental_lookback_minutes" not in (project / "dbt_project.yml").read_text()

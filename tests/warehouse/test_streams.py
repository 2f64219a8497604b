"""Storage Write API landing on the emulator: offsets make retries exactly once; shared appends share."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from clients.errors import PermanentError, TransientError
from core.settings import Settings
from warehouse.landing import BronzeRecord, Warehouse, bronze_rows
from warehouse.libraries import types
from warehouse.streams import SchemaNotSeen, StorageWriter, StreamCursor, arrow_schema
from warehouse.tables import BRONZE_TABLES, VTEX_ORDER_EVENTS, VTEX_ORDERS

TABLE = VTEX_ORDERS


def records(prefix: str, count: int) -> list[BronzeRecord]:
    return [
        BronzeRecord("vtex", f"{prefix}-{i}", f"{prefix}-{i}@1", {"n": i, "prefix": prefix})
        for i in range(count)
    ]


async def counts(warehouse: Warehouse, table: str = TABLE) -> tuple[int, int]:
    table_id = warehouse.table_id(warehouse.layers.bronze, table)
    rows = await warehouse.query(f"select count(*) as n, count(distinct event_key) as keys from `{table_id}`")
    return int(rows[0]["n"]), int(rows[0]["keys"])


async def test_a_replayed_append_at_a_written_offset_adds_no_row(warehouse: Warehouse) -> None:
    first = records("a", 50)
    cursor = await warehouse.land_at(TABLE, StreamCursor(), first)
    assert cursor.stream and cursor.offset == 50
    # The activity's answer was lost: Temporal runs it again with the cursor the workflow still holds.
    replayed = await warehouse.land_at(TABLE, StreamCursor(), first)  # a new stream: lands once more
    assert await counts(warehouse) == (100, 50)  # (a retry without the cursor would duplicate)

    again = await warehouse.land_at(TABLE, StreamCursor(cursor.stream, 0), first)
    assert await counts(warehouse) == (100, 50)  # nothing added: ALREADY_EXISTS counted as landed
    # The job goes on from the cursor it got back, and its next page lands.
    after = await warehouse.land_at(TABLE, again, records("b", 20))
    assert after.offset == again.offset + 20
    assert await counts(warehouse) == (120, 70)
    assert replayed.stream != cursor.stream


async def test_a_page_split_into_several_requests_is_recognised_whole(
    warehouse_settings: dict[str, Any],
) -> None:
    settings = Settings(environment="test", bigquery_timeout_seconds=10, **warehouse_settings)
    warehouse = Warehouse.from_settings(settings)
    warehouse._writer._max_request_bytes = 2_000  # a page of 60 rows goes out in several appends
    try:
        page = records("c", 60)
        cursor = await warehouse.land_at(TABLE, StreamCursor(), page)
        assert cursor.offset == 60
        replayed = await warehouse.land_at(TABLE, StreamCursor(cursor.stream, 0), page)
        assert replayed.offset == 0 and replayed.stream == ""  # landed; the next page opens a new stream
        assert await counts(warehouse) == (60, 60)
    finally:
        await warehouse.aclose()


async def test_other_rows_at_a_written_offset_still_land(warehouse: Warehouse) -> None:
    cursor = await warehouse.land_at(TABLE, StreamCursor(), records("d", 10))
    # A retry that read the source again and got a different page: nothing may be lost.
    await warehouse.land_at(TABLE, StreamCursor(cursor.stream, 0), records("e", 7))
    assert await counts(warehouse) == (17, 17)


async def test_a_finalized_stream_is_replaced(warehouse: Warehouse) -> None:
    cursor = await warehouse.land_at(TABLE, StreamCursor(), records("f", 5))
    await asyncio.to_thread(warehouse._writer._finalize, cursor.stream)  # as the service does to idle streams
    after = await warehouse.land_at(TABLE, cursor, records("g", 5))
    assert after.stream != cursor.stream and after.offset == 5
    assert await counts(warehouse) == (10, 10)


async def test_a_page_landed_past_a_lost_stream_by_an_attempt_that_died_is_not_landed_again(
    warehouse: Warehouse,
) -> None:
    """A backfill's stream was finalized while it was idle. Its next page meets the lost stream, lands
    in a new one, and the worker dies before the workflow hears of that stream: the retry, with the
    old cursor, meets the lost stream too, and finds the page in bronze."""
    cursor = await warehouse.land_at(TABLE, StreamCursor(), records("h", 5))
    await asyncio.to_thread(warehouse._writer._finalize, cursor.stream)  # as the service does to idle streams
    page = records("i", 6)
    await warehouse.land_at(TABLE, cursor, page)  # its answer lost
    retried = await warehouse.land_at(TABLE, cursor, page)
    assert await counts(warehouse) == (11, 11)
    assert retried.stream == ""  # the next page opens a new stream


async def test_concurrent_landings_share_one_append(warehouse: Warehouse) -> None:
    appends: list[int] = []
    append = warehouse._writer.append_default

    def counted(table: str, schema: Any, rows: list[dict[str, Any]]) -> None:
        appends.append(len(rows))
        append(table, schema, rows)

    warehouse._writer.append_default = counted  # type: ignore[method-assign]
    await warehouse.ensure_schema()
    await asyncio.gather(*(warehouse.land(VTEX_ORDER_EVENTS, [record]) for record in records("h", 40)))
    assert appends == [40]
    assert await counts(warehouse, VTEX_ORDER_EVENTS) == (40, 40)


async def test_a_failed_append_fails_only_its_own_callers(warehouse: Warehouse) -> None:
    append = warehouse._writer.append_default
    calls = 0

    def first_fails(table: str, schema: Any, rows: list[dict[str, Any]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("bigquery", "UNAVAILABLE: injected")
        append(table, schema, rows)

    warehouse._writer.append_default = first_fails  # type: ignore[method-assign]
    await warehouse.ensure_schema()
    early = [asyncio.create_task(warehouse.land(VTEX_ORDER_EVENTS, [r])) for r in records("i", 5)]
    await asyncio.sleep(0.2)  # the first batch has gone out
    late = [asyncio.create_task(warehouse.land(VTEX_ORDER_EVENTS, [r])) for r in records("j", 5)]
    early_outcomes = await asyncio.gather(*early, return_exceptions=True)
    late_outcomes = await asyncio.gather(*late, return_exceptions=True)
    assert all(isinstance(outcome, TransientError) for outcome in early_outcomes)
    assert late_outcomes == [None] * 5
    assert await counts(warehouse, VTEX_ORDER_EVENTS) == (5, 5)
    # The failed callers retry (as their activities do) and land.
    await asyncio.gather(*(warehouse.land(VTEX_ORDER_EVENTS, [r]) for r in records("i", 5)))
    assert await counts(warehouse, VTEX_ORDER_EVENTS) == (10, 10)


async def test_rows_refused_for_good_fail_only_their_own_caller(warehouse: Warehouse) -> None:
    """A shared append the service refuses for good may be refused for one caller's rows: each caller's
    rows go again alone, so the others land and only that caller fails (its order parks, not all)."""
    append = warehouse._writer.append_default
    appends: list[int] = []

    def refuses_k3(table: str, schema: Any, rows: list[dict[str, Any]]) -> None:
        appends.append(len(rows))
        if any(row["event_key"] == "k-3@1" for row in rows):
            raise PermanentError("bigquery", "INVALID_ARGUMENT: a row the table will not take")
        append(table, schema, rows)

    warehouse._writer.append_default = refuses_k3  # type: ignore[method-assign]
    await warehouse.ensure_schema()
    outcomes = await asyncio.gather(
        *(warehouse.land(VTEX_ORDER_EVENTS, [record]) for record in records("k", 5)), return_exceptions=True
    )
    assert [type(outcome).__name__ for outcome in outcomes] == ["NoneType"] * 3 + [
        "PermanentError",
        "NoneType",
    ]
    assert appends == [5, 1, 1, 1, 1, 1]  # the shared append, then each caller's alone
    assert await counts(warehouse, VTEX_ORDER_EVENTS) == (4, 4)


async def test_as_many_other_rows_at_a_written_offset_still_land(warehouse: Warehouse) -> None:
    """A backfill page retried after the OMS moved on: the same number of orders, other versions."""
    cursor = await warehouse.land_at(TABLE, StreamCursor(), records("k", 10))
    changed = [BronzeRecord("vtex", r.entity_id, f"{r.entity_id}@2", r.payload) for r in records("k", 10)]
    retried = await warehouse.land_at(TABLE, StreamCursor(cursor.stream, 0), changed)
    assert retried.stream != cursor.stream and retried.offset == 10  # a new stream: they were not there
    assert await counts(warehouse) == (20, 20)


async def test_a_number_beyond_its_int64_column_is_refused_for_good_for_its_caller_alone(
    warehouse: Warehouse,
) -> None:
    """Arrow cannot hold it (an OverflowError): a refusal retrying cannot mend, not one retried for ever
    that fails every order sharing the append with it."""
    landed = records("n", 3)
    landed[1] = BronzeRecord("vtex", "n-1", "n-1@1", {}, columns={"value_cents": 2**63})
    await warehouse.ensure_schema()
    outcomes = await asyncio.gather(
        *(warehouse.land(TABLE, [record]) for record in landed), return_exceptions=True
    )
    assert [type(outcome).__name__ for outcome in outcomes] == ["NoneType", "PermanentError", "NoneType"]
    assert await counts(warehouse) == (2, 2)


class SchemaNotSeenYet:
    """A Storage Write API that does not see the table's new columns yet: BigQuery's answer for a few
    minutes after bronze was upgraded, before its backend takes the new schema."""

    def __init__(self, message: str) -> None:
        self.message = message

    def append_rows(self, requests: Any, **kwargs: Any) -> list[types.AppendRowsResponse]:
        list(requests)
        error = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=self.message)
        return [types.AppendRowsResponse(error=error)]


@pytest.mark.parametrize(
    ("message", "passes"),
    [
        ("Input schema has more fields than BigQuery schema, extra fields: 'order_status'", True),
        ("Cannot convert value to integer", False),
    ],
)
def test_rows_with_columns_bigquery_does_not_see_yet_wait_instead_of_parking(
    message: str, passes: bool
) -> None:
    """Refused for good, the landing parks its order (and ends a backfill); the schema's delay passes."""
    writer = StorageWriter(SchemaNotSeenYet(message), timeout_seconds=5)  # type: ignore[arg-type]
    schema = arrow_schema(BRONZE_TABLES[TABLE])
    rows = bronze_rows(records("s", 1))
    with pytest.raises(SchemaNotSeen if passes else PermanentError):
        writer.append_default("projects/p/datasets/d/tables/t", schema, rows)


async def test_a_table_the_write_api_sees_without_its_new_columns_is_checked_again(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused for columns it does not see, the next attempt checks the table's columns again: an
    older version's replica may have recreated it without them."""
    await warehouse.ensure_schema()
    refusing = StorageWriter(SchemaNotSeenYet("Input schema has more fields than BigQuery schema"), 5)  # type: ignore[arg-type]
    monkeypatch.setattr(warehouse._writer, "append_at", refusing.append_at)
    with pytest.raises(SchemaNotSeen):
        await warehouse.land_at(TABLE, StreamCursor(f"{TABLE}/streams/s", 0), records("z", 1))
    assert not warehouse._schema_ready

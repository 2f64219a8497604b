"""The warehouse layer against the BigQuery emulator, through the real google-cloud-bigquery client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as google_errors

from clients.errors import PermanentError
from core.settings import Settings
from core.vtex import OrderEvent, change_key, change_time
from simulators.vtex_orders import generate_order
from warehouse.errors import WarehouseUnavailable
from warehouse.landing import BronzeRecord, InvalidRecord, QuarantineRecord, Warehouse
from warehouse.streams import StreamCursor
from warehouse.tables import QUARANTINE, VTEX_ORDERS, VTEX_SKUS
from warehouse.vtex_catalog import sku_version
from warehouse.vtex_orders import order_event, order_version


def deduplicated(warehouse: Warehouse, table: str) -> str:
    """The silver layer's rule: one row per event key, the first landed."""
    return (
        f"select * from `{warehouse.table_id(warehouse.layers.bronze, table)}`"
        " qualify row_number() over (partition by event_key order by ingested_at) = 1"
    )


async def test_schema_is_created_idempotently(warehouse: Warehouse) -> None:
    await warehouse.ensure_schema()
    await warehouse.ensure_schema()
    datasets = {d.dataset_id for d in warehouse._client.list_datasets()}
    assert set(warehouse.layers.all()) <= datasets
    table = warehouse._client.get_table(warehouse.table_id(warehouse.layers.bronze, VTEX_ORDERS))
    columns = {field.name: (field.field_type, field.mode) for field in table.schema}
    assert columns["event_key"] == ("STRING", "REQUIRED")
    assert columns["payload"] == ("JSON", "REQUIRED")
    assert columns["ingested_at"] == ("TIMESTAMP", "REQUIRED")


async def test_the_kms_key_setting_reaches_every_dataset_definition(
    warehouse_settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Customer-managed encryption: the emulator ignores it, so the definitions sent are checked."""
    key = "projects/carmaker/locations/us/keyRings/hub/cryptoKeys/warehouse"
    settings = Settings(environment="test", bigquery_kms_key=key, **warehouse_settings)
    warehouse = Warehouse.from_settings(settings)
    client = warehouse._client  # the real google-cloud-bigquery client, watched on its way to the emulator
    sent: list[Any] = []
    create_dataset = client.create_dataset

    def watched(dataset: Any, **kwargs: Any) -> Any:
        sent.append(dataset)
        return create_dataset(dataset, **kwargs)

    monkeypatch.setattr(client, "create_dataset", watched)
    monkeypatch.setattr(client, "update_dataset", lambda dataset, fields, **_: dataset)  # not emulated
    try:
        await warehouse.ensure_schema()
    finally:
        await warehouse.aclose()
    # The audit dataset too, where dbt keeps copies of failing rows (customers' among them).
    assert sorted(dataset.dataset_id for dataset in sent) == sorted(warehouse.layers.datasets())
    assert warehouse.layers.audit.endswith("dbt_test__audit")
    assert {dataset.default_encryption_configuration.kms_key_name for dataset in sent} == {key}
    unset = Warehouse.from_settings(Settings(environment="test", **warehouse_settings))
    assert unset.dataset_definition("bronze").default_encryption_configuration is None
    await unset.aclose()


async def test_landing_twice_gives_one_row_downstream(warehouse: Warehouse) -> None:
    order = _order("1480570000001-01", "2026-11-24T10:00:00.1234567+00:00")
    record = order_version(order)
    assert record.event_key == "1480570000001-01@2026-11-24T10:00:00.1234567Z"
    await warehouse.land(VTEX_ORDERS, [record])
    await warehouse.land(VTEX_ORDERS, [record])  # a retried activity
    raw = await warehouse.query(f"select * from `{warehouse.table_id(warehouse.layers.bronze, VTEX_ORDERS)}`")
    assert len(raw) == 2  # the emulator, like BigQuery at times, keeps repeated insert ids
    rows = await warehouse.query(deduplicated(warehouse, VTEX_ORDERS))
    assert len(rows) == 1
    row = rows[0]
    assert row["payload"] == order  # the raw JSON, untouched
    assert row["source"] == "vtex"
    assert row["entity_id"] == "1480570000001-01"
    assert row["source_updated_at"] == datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)


async def test_order_events_keep_the_seventh_digit_apart(warehouse: Warehouse) -> None:
    first = OrderEvent("o-1", "handling", change_key("2026-11-24T10:00:00.0000001Z"), payload={"n": 1})
    second = OrderEvent("o-1", "handling", change_key("2026-11-24T10:00:00.0000002Z"), payload={"n": 2})
    assert first.key != second.key
    assert order_event(first).event_key < order_event(second).event_key


def test_change_keys_sort_as_the_times_they_name_from_the_year_1() -> None:
    keys = [
        change_key(value)
        for value in ("0001-01-01T00:00:00Z", "0999-12-31T23:59:59.5-03:00", "2026-01-01T00:00:00Z")
    ]
    assert keys == [
        "0001-01-01T00:00:00.0000000Z",
        "1000-01-01T02:59:59.5000000Z",
        "2026-01-01T00:00:00.0000000Z",
    ]
    assert change_time(keys[0]) == datetime(1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"orderId": ""}, "orderId"),
        ({"value": -5}, "value"),
        ({"value": 10.5}, "value"),
        ({"items": [{"id": "1", "quantity": 1, "price": "1000"}]}, "items.0.price"),
        ({"creationDate": "not a date"}, "creationDate"),
        ({"lastChange": "0001-01-01T00:00:00+01:00"}, "lastChange"),  # before the year 1 in UTC
        # Beyond the INT64 columns they are typed into:
        ({"value": 2**63}, "value"),
        ({"items": [{"id": "1", "quantity": 2**63, "price": 1}]}, "items.0.quantity"),
        ({"totals": [{"id": "Items", "value": 2**62}, {"id": "Items", "value": 2**62}]}, "totals"),
    ],
)
async def test_invalid_orders_go_to_quarantine_with_the_reason(
    warehouse: Warehouse, override: dict[str, Any], reason: str
) -> None:
    order = {**_order("1480570000002-01", "2026-11-24T10:00:00.0000000+00:00"), **override}
    with pytest.raises(InvalidRecord) as invalid:
        order_version(order)
    assert reason in str(invalid.value)
    await warehouse.quarantine([invalid.value.quarantine])
    rows = await warehouse.query(f"select * from `{warehouse.table_id(warehouse.layers.bronze, QUARANTINE)}`")
    assert len(rows) == 1
    assert reason in rows[0]["reason"]
    assert rows[0]["entity"] == VTEX_ORDERS
    assert rows[0]["payload"] == order


async def test_landed_keys_read_only_the_entities_named(warehouse: Warehouse) -> None:
    """A lookup by key over all of history names the records' entities: bronze is clustered by entity,
    so BigQuery reads their blocks only. A record without an id (quarantined) is still found."""
    await warehouse.land(
        VTEX_ORDERS, [BronzeRecord("vtex", "o-1", "o-1@k1", {}), BronzeRecord("vtex", "o-2", "o-2@k2", {})]
    )
    await warehouse.quarantine([QuarantineRecord("vtex", VTEX_ORDERS, "?@hash", "no orderId", {})])
    tables, keys = [VTEX_ORDERS, QUARANTINE], ["o-1@k1", "o-2@k2", "?@hash"]
    assert await warehouse.landed_keys(tables, keys, entity_ids=["o-1", "o-2", None]) == set(keys)
    assert await warehouse.landed_keys(tables, keys, entity_ids=["o-1"]) == {"o-1@k1"}  # only o-1 was read
    assert await warehouse.landed_keys(tables, keys, entity_ids=[None]) == {"?@hash"}


async def test_unreachable_warehouse_is_a_transient_error(warehouse_prefix: str) -> None:
    from tests.support import free_port
    from warehouse.errors import WarehouseUnavailable

    settings = Settings(
        environment="test",
        bigquery_endpoint=f"http://127.0.0.1:{free_port()}",
        bigquery_write_endpoint=f"127.0.0.1:{free_port()}",
        bigquery_dataset_prefix=warehouse_prefix,
        bigquery_timeout_seconds=1,
    )
    warehouse = Warehouse.from_settings(settings)
    with pytest.raises(WarehouseUnavailable):
        await warehouse.land(VTEX_ORDERS, [BronzeRecord("vtex", "o", "o@k", {})])
    await warehouse.aclose()


def _order(order_id: str, last_change: str) -> dict[str, Any]:
    return generate_order(3, order_id=order_id, overrides={"lastChange": last_change})


@pytest.mark.parametrize(
    ("refusal", "unavailable"),
    [
        (google_errors.Forbidden("Exceeded rate limits", errors=[{"reason": "rateLimitExceeded"}]), True),
        (google_errors.Forbidden("Quota exceeded", errors=[{"reason": "quotaExceeded"}]), True),
        (google_errors.BadRequest("backend", errors=[{"reason": "backendError"}]), True),
        (google_errors.Forbidden("Access Denied: Table", errors=[{"reason": "accessDenied"}]), False),
        (google_errors.BadRequest("Syntax error", errors=[{"reason": "invalidQuery"}]), False),
    ],
)
async def test_a_rate_limit_bigquery_answers_with_a_403_is_a_pause_not_a_refusal(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, refusal: Exception, unavailable: bool
) -> None:
    """BigQuery answers its short-term limits with 403 rateLimitExceeded (and quotaExceeded, backend
    errors with 400 or 403), to be retried with backoff: the warehouse is unavailable for now (a sync's
    step retries, a read answers 503), where a refusal for good fails the step by name."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise refusal

    monkeypatch.setattr(warehouse._client, "query", refused)
    with pytest.raises(WarehouseUnavailable if unavailable else PermanentError):
        await warehouse.query("select 1")


async def test_a_sku_read_earlier_and_landed_late_is_not_taken_for_the_newest(warehouse: Warehouse) -> None:
    """A catalog page's attempt reads SKU 7, loses touch with Temporal, and lands after its retry, which
    read the SKU changed since: the retry's version stays the newest (the next sync lands nothing, and
    silver keeps it), though the older read landed last."""
    sku = {"Id": 7, "ProductId": 1, "IsActive": True, "Name": "Tapete"}
    read = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    newer = sku_version(7, sku, {"basePrice": 99.0}, read + timedelta(seconds=40))
    older = sku_version(7, sku, {"basePrice": 89.0}, read)
    await warehouse.land_at(VTEX_SKUS, StreamCursor(), [newer])  # the retry's
    await warehouse.land_at(VTEX_SKUS, StreamCursor(), [older])  # the attempt out of touch, landing late
    assert await warehouse.latest_keys(VTEX_SKUS, ["7"]) == {"7": newer.event_key}

"""The catalog and customer syncs' bronze records: keys, checks and quarantine reasons (no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from activities.vtex_customers import CustomerWindow
from warehouse.landing import InvalidRecord
from warehouse.vtex_catalog import REMOVED, is_removed_key, sku_version
from warehouse.vtex_customers import (
    INVALID_DATE,
    INVALID_EMAIL,
    MASKED_EMAIL,
    MISSING_ID,
    NO_EMAIL,
    customer_version,
)

SKU = {"Id": 7, "ProductId": 3, "IsActive": True, "Name": "Tapete de borracha Onix", "RefId": "TAP-7"}
PRICE = {"itemId": "7", "listPrice": 199.9, "costPrice": 80.0, "markup": 50, "basePrice": 120.0}


def test_sku_key_follows_the_content_not_the_order_of_its_fields() -> None:
    first = sku_version(7, SKU, PRICE)
    reordered = sku_version(7, dict(reversed(list(SKU.items()))), PRICE)
    assert first.event_key == reordered.event_key
    assert first.event_key.startswith("7@")
    assert sku_version(7, {**SKU, "IsActive": False}, PRICE).event_key != first.event_key
    assert sku_version(7, SKU, {**PRICE, "basePrice": 121.0}).event_key != first.event_key
    assert sku_version(7, SKU, None).payload == {"sku": SKU, "price": None}  # unpriced is not invalid


def test_removed_sku_has_its_own_key() -> None:
    removed = sku_version(7, None, None)
    assert removed.payload == REMOVED
    assert is_removed_key(removed.event_key, 7)
    assert not is_removed_key(sku_version(7, SKU, PRICE).event_key, 7)


@pytest.mark.parametrize(
    ("sku", "price", "problem"),
    [
        ({**SKU, "Id": 8}, PRICE, "sku.Id: 8 is not the SKU read (7)"),
        ({**SKU, "Name": ""}, PRICE, "Name"),
        ({k: v for k, v in SKU.items() if k != "ProductId"}, PRICE, "ProductId"),
        (SKU, {**PRICE, "basePrice": -1}, "basePrice"),
    ],
)
def test_broken_sku_goes_to_quarantine_with_the_reason(
    sku: dict[str, Any], price: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidRecord) as invalid:
        sku_version(7, sku, price)
    assert problem in invalid.value.quarantine.reason
    assert invalid.value.quarantine.entity_id == "7"


def customer(**fields: Any) -> dict[str, Any]:
    return {
        "id": "0b9a1c3e-0000-4000-8000-000000000001",
        "email": "ana.souza@example.com.br",
        "createdIn": "2025-03-04T12:34:56.1234567Z",
        "updatedIn": None,
        **fields,
    }


def test_never_updated_customer_is_keyed_by_its_creation() -> None:
    version = customer_version(customer())
    assert version.record.event_key == "0b9a1c3e-0000-4000-8000-000000000001@2025-03-04T12:34:56.1234567Z"
    assert version.notes == ()
    updated = customer_version(customer(updatedIn="2026-01-02T03:04:05.5Z"))
    assert updated.record.event_key.endswith("@2026-01-02T03:04:05.5000000Z")


def test_masked_email_lands_flagged_and_empty_email_lands_noted() -> None:
    assert customer_version(customer(email="3f2a9c0e5b@ct.vtex.com.br")).notes == (MASKED_EMAIL,)
    assert customer_version(customer(email=None)).notes == (NO_EMAIL,)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"email": "joao.silva@@gmail.com"}, INVALID_EMAIL),
        ({"email": "maria.souza.gmail.com"}, INVALID_EMAIL),
        ({"id": None}, MISSING_ID),
        ({"id": ""}, MISSING_ID),
        ({"createdIn": "yesterday"}, INVALID_DATE),
        ({"updatedIn": "0001-01-01T00:00:00+01:00"}, INVALID_DATE),  # before the year 1 in UTC
    ],
)
def test_invalid_customer_is_quarantined_under_its_check(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidRecord) as invalid:
        customer_version(customer(**fields))
    assert invalid.value.code == code


def test_documents_without_id_are_told_apart_by_their_content() -> None:
    keys = set()
    for email in ("a@example.com", "b@example.com"):
        with pytest.raises(InvalidRecord) as invalid:
            customer_version(customer(id=None, email=email))
        keys.add(invalid.value.quarantine.event_key)
    assert len(keys) == 2


def test_incremental_filter_covers_never_updated_documents() -> None:
    window = CustomerWindow(since="2026-11-24T00:00:00+00:00", until="2026-11-25T01:02:03.456789+00:00")
    assert window.where() == (
        "(updatedIn between 2026-11-24T00:00:00.000Z AND 2026-11-25T01:02:03.456Z)"
        " OR (updatedIn is null AND createdIn between 2026-11-24T00:00:00.000Z AND 2026-11-25T01:02:03.456Z)"
    )
    assert CustomerWindow(since=None, until="2026-11-25T00:00:00+00:00").where() is None

"""VTEX catalog and pricing: a generated catalog listed by id, read SKU by SKU, changed by the control API."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from simulators import SimulatorConfig, create_app
from tests.simulators.conftest import VTEX_HEADERS, FakeClock, in_process, make_config

LIST_URL = "/vtex/api/catalog_system/pvt/sku/stockkeepingunitids"
SKU_URL = "/vtex/api/catalog/pvt/stockkeepingunit"
PRICE_URL = "/vtex/api/pricing/prices"
SKUS = 300
SKU_FIELDS = {
    "Id", "ProductId", "IsActive", "ActivateIfPossible", "Name", "RefId", "PackagedHeight", "PackagedLength",
    "PackagedWidth", "PackagedWeightKg", "Height", "Length", "Width", "WeightKg", "CubicWeight", "IsKit",
    "CreationDate", "RewardValue", "EstimatedDateArrival", "ManufacturerCode", "CommercialConditionId",
    "MeasurementUnit", "UnitMultiplier", "ModalType", "KitItensSellApart", "Videos",
}  # fmt: skip
CATALOG_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}$")
Snapshot = dict[int, tuple[dict[str, Any] | None, dict[str, Any] | None]]


def catalog_config(**overrides: object) -> SimulatorConfig:
    """A test config with a small catalog, independent of any SIM_VTEX_CATALOG_* variable."""
    values: dict[str, object] = {
        "vtex_catalog_skus": SKUS,
        "vtex_catalog_seed": SimulatorConfig.model_fields["vtex_catalog_seed"].default,
        "vtex_history_end": "2026-11-01T00:00:00Z",
    }
    return make_config(**{**values, **overrides})


@pytest.fixture
def app(clock: FakeClock) -> FastAPI:
    return create_app(catalog_config(), clock=clock)


async def id_page(client: httpx.AsyncClient, **params: str | int) -> list[int]:
    response = await client.get(LIST_URL, params=params, headers=VTEX_HEADERS)
    assert response.status_code == 200, response.text
    ids: list[int] = response.json()
    return ids


async def every_id(client: httpx.AsyncClient, pagesize: int) -> list[int]:
    """Every listed id, page by page until an empty page."""
    ids: list[int] = []
    page = 1
    while batch := await id_page(client, page=page, pagesize=pagesize):
        assert len(batch) <= pagesize
        ids += batch
        page += 1
    return ids


async def read(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    """A document, or None for a 404."""
    response = await client.get(url, headers=VTEX_HEADERS)
    if response.status_code == 404:
        assert response.json()["error"]["message"], response.text
        return None
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def snapshot(client: httpx.AsyncClient, ids: range = range(1, SKUS + 1)) -> Snapshot:
    """Each SKU's document and price (None where 404)."""
    return {
        sku: (await read(client, f"{SKU_URL}/{sku}"), await read(client, f"{PRICE_URL}/{sku}")) for sku in ids
    }


async def change(client: httpx.AsyncClient, **body: int) -> dict[str, list[int]]:
    response = await client.post("/_control/vtex/catalog/change", json=body)
    assert response.status_code == 200, response.text
    changed: dict[str, list[int]] = response.json()
    return changed


async def stats(client: httpx.AsyncClient) -> dict[str, int]:
    body: dict[str, int] = (await client.get("/_control/vtex/catalog")).json()
    return body


async def test_the_same_config_gives_the_same_catalog_and_another_seed_another() -> None:
    seen = []
    for seed in (5, 5, 6):
        async with in_process(create_app(catalog_config(vtex_catalog_seed=seed))) as http:
            seen.append((await every_id(http, 1000), await snapshot(http, range(1, 41))))
    (ids, first), (again_ids, again), (other_ids, other) = seen
    assert ids == again_ids == other_ids == list(range(1, SKUS + 1))
    assert again == first
    assert [doc for doc, _ in other.values()] != [doc for doc, _ in first.values()]


async def test_pages_cover_every_sku_once_and_a_page_past_the_end_is_empty(client: httpx.AsyncClient) -> None:
    assert await every_id(client, 7) == list(range(1, SKUS + 1))
    assert await id_page(client) == list(range(1, 11))  # VTEX's default: page 1, 10 a page
    assert await id_page(client, page=2, pagesize=1000) == []
    assert await id_page(client, page=30, pagesize=10) == list(range(291, 301))


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"pagesize": 0}, "pagesize"),
        ({"pagesize": 1001}, "pagesize"),
        ({"pagesize": "ten"}, "pagesize"),
        ({"page": 0}, "page"),
        ({"page": -1, "pagesize": 10}, "page"),
    ],
)
async def test_page_parameters_out_of_bounds_are_400(
    client: httpx.AsyncClient, params: dict[str, Any], named: str
) -> None:
    response = await client.get(LIST_URL, params=params, headers=VTEX_HEADERS)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{named} must be an integer from 1 to")


async def test_a_sku_has_vtexs_shape_and_products_group_consecutive_skus(client: httpx.AsyncClient) -> None:
    documents = [doc for doc, _ in (await snapshot(client)).values()]
    assert all(doc is not None and set(doc) == SKU_FIELDS for doc in documents)
    first = documents[0]
    assert first is not None
    assert (first["Id"], first["ProductId"], first["IsKit"], first["Videos"]) == (1, 1, False, [])
    assert CATALOG_TIME.match(first["CreationDate"]), first["CreationDate"]
    products = [doc["ProductId"] for doc in documents if doc is not None]
    assert products == sorted(products) and products[0] == 1
    assert set(products) == set(range(1, products[-1] + 1))
    sizes = [products.count(product) for product in set(products)]
    assert min(sizes) >= 1 and max(sizes) <= 6 and len(set(sizes)) > 1
    assert len({doc["RefId"] for doc in documents if doc is not None}) == SKUS


async def test_unknown_ids_are_404_and_non_integer_ids_400(client: httpx.AsyncClient) -> None:
    for missing in (0, -3, SKUS + 1, 10**12):
        assert await read(client, f"{SKU_URL}/{missing}") is None
        assert await read(client, f"{PRICE_URL}/{missing}") is None
    for garbled in ("abc", "1.5", "1e3"):
        for url in (SKU_URL, PRICE_URL):
            response = await client.get(f"{url}/{garbled}", headers=VTEX_HEADERS)
            assert response.status_code == 400, response.text
            assert "integer" in response.json()["error"]["message"]


async def test_prices_have_the_pricing_shape_and_some_skus_none(client: httpx.AsyncClient) -> None:
    catalog = await snapshot(client)
    prices = {sku: price for sku, (_, price) in catalog.items() if price is not None}
    for sku, price in prices.items():
        assert set(price) == {"itemId", "listPrice", "costPrice", "markup", "basePrice", "fixedPrices"}
        assert price["itemId"] == str(sku) and price["fixedPrices"] == []
        assert isinstance(price["markup"], int) and isinstance(price["costPrice"], float)
        assert price["basePrice"] == round(price["costPrice"] * (100 + price["markup"]) / 100, 2)
        assert price["listPrice"] > price["basePrice"] > price["costPrice"] > 0
    inactive = sum(1 for doc, _ in catalog.values() if doc is not None and not doc["IsActive"])
    # The control view counts what the API serves.
    assert await stats(client) == {
        "skus": SKUS, "active": SKUS - inactive, "inactive": inactive, "priced": len(prices), "deleted": 0,
    }  # fmt: skip
    assert 0 < len(prices) < SKUS and inactive > 0


async def test_about_8_percent_are_inactive_and_3_percent_unpriced() -> None:
    async with in_process(create_app(catalog_config(vtex_catalog_skus=20_000))) as http:
        counts = await stats(http)
    assert counts["skus"] == 20_000
    assert 0.07 < counts["inactive"] / 20_000 < 0.09
    assert 0.025 < 1 - counts["priced"] / 20_000 < 0.035


async def test_a_change_changes_exactly_the_picked_skus(client: httpx.AsyncClient) -> None:
    before = await snapshot(client)
    picked = await change(client, count=5, deactivate=3, delete=2)
    changed, deactivated, deleted = picked["changed"], picked["deactivated"], picked["deleted"]
    assert (len(changed), len(deactivated), len(deleted)) == (5, 3, 2)
    assert len(set(changed) | set(deactivated) | set(deleted)) == 10
    after = await snapshot(client)
    differs = {sku for sku in before if before[sku] != after[sku]}
    assert differs == set(changed) | set(deactivated) | set(deleted)
    for sku in changed:
        (old_doc, old_price), (new_doc, new_price) = before[sku], after[sku]
        assert old_doc is not None and new_doc is not None
        assert new_doc["Name"] != old_doc["Name"] and new_doc["IsActive"] == old_doc["IsActive"]
        assert (old_price is None) == (new_price is None)
        if old_price is not None and new_price is not None:
            assert new_price["costPrice"] > old_price["costPrice"]
    for sku in deactivated:
        (old_doc, _), (new_doc, _) = before[sku], after[sku]
        assert old_doc is not None and old_doc["IsActive"] and new_doc == {**old_doc, "IsActive": False}
    assert all(after[sku] == (None, None) for sku in deleted)
    assert await every_id(client, 1000) == [sku for sku in range(1, SKUS + 1) if sku not in deleted]
    counts = await stats(client)
    assert (counts["skus"], counts["deleted"]) == (SKUS - 2, 2)


async def test_every_change_of_a_sku_is_a_new_content() -> None:
    skus = range(1, 61)
    async with in_process(create_app(catalog_config(vtex_catalog_skus=len(skus)))) as http:
        versions = [await snapshot(http, skus)]
        for _ in range(3):
            assert (await change(http, count=len(skus)))["changed"] == list(skus)
            versions.append(await snapshot(http, skus))
    for older, newer in itertools.pairwise(versions):
        assert all(older[sku][0] != newer[sku][0] for sku in skus)
        assert all(older[sku][1] != newer[sku][1] for sku in skus if older[sku][1] is not None)


async def test_changes_asking_for_more_skus_than_there_are_are_409(client: httpx.AsyncClient) -> None:
    active = (await stats(client))["active"]
    await change(client, deactivate=active)
    assert (await stats(client))["active"] == 0
    for body in ({"deactivate": 1}, {"count": SKUS + 1}, {"count": SKUS, "delete": 1}):
        response = await client.post("/_control/vtex/catalog/change", json=body)
        assert response.status_code == 409, response.text
    assert (await stats(client))["deleted"] == 0  # a refused change changes nothing
    refused = await client.post("/_control/vtex/catalog/change", json={"count": -1})
    assert refused.status_code == 422


async def test_seeded_apps_change_the_same_skus_and_a_reset_forgets_changes() -> None:
    picks = []
    for _ in range(2):
        async with in_process(create_app(catalog_config())) as http:
            picks.append([await change(http, count=4, deactivate=2, delete=3) for _ in range(2)])
            before_reset = await stats(http)
            await http.post("/_control/reset")
            assert await stats(http) != before_reset
            assert (await stats(http))["deleted"] == 0
            assert await every_id(http, 1000) == list(range(1, SKUS + 1))
    assert picks[0] == picks[1]
    assert picks[0][0] != picks[0][1]


async def test_faults_credentials_and_counters_apply_to_every_catalog_call(client: httpx.AsyncClient) -> None:
    fault = {"target": "vtex", "rate_limit_count": 1, "retry_after_seconds": 7}
    assert (await client.post("/_control/faults", json=fault)).status_code == 200
    limited = await client.get(LIST_URL, headers=VTEX_HEADERS)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    await client.post("/_control/faults", json={"target": "vtex", "error_5xx_count": 2})
    assert (await client.get(f"{SKU_URL}/1", headers=VTEX_HEADERS)).status_code == 503
    assert (await client.get(f"{PRICE_URL}/1", headers=VTEX_HEADERS)).status_code == 503
    for url in (LIST_URL, f"{SKU_URL}/1", f"{PRICE_URL}/1"):
        assert (await client.get(url)).status_code == 401
        assert (await client.get(url, headers=VTEX_HEADERS)).status_code in (200, 404)
    vtex = (await client.get("/_control/counters")).json()["vtex"]
    assert (vtex["catalog_sku_lists"], vtex["catalog_sku_gets"], vtex["pricing_gets"]) == (3, 3, 3)
    assert vtex["faults_served"] == 3

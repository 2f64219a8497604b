"""VTEX orders reference the simulator's own catalog and customers, as a real store's do.

Every check reads the other side through its API: SKUs and prices from the catalog and pricing APIs, customers
from the Master Data scroll, so a warehouse joining the three sees what these tests see.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from simulators import SimulatorConfig, create_app
from simulators.vtex_history import OrderHistory
from simulators.vtex_orders import MASKED_EMAIL_DOMAIN, PRODUCTS, parse_ticks
from simulators.vtex_store import Catalog, CatalogChanges, buyer_frequencies, catalog_layout, customer_base
from tests.simulators.conftest import VTEX_HEADERS, in_process, make_config

OMS_URL = "/vtex/api/oms/pvt/orders"
SKU_URL = "/vtex/api/catalog/pvt/stockkeepingunit"
PRICE_URL = "/vtex/api/pricing/prices"
SCROLL_URL = "/vtex/api/dataentities/CL/scroll"
STORE_SETTINGS = (
    "vtex_history_days", "vtex_history_end", "vtex_history_seed", "vtex_catalog_seed", "vtex_customers_seed",
)  # fmt: skip
ORDERS, SKUS, CUSTOMERS = 200, 400, 150
RELAY = re.compile(r"[0-9a-f]{32}@ct\.vtex\.com\.br")


def store_config(**overrides: object) -> SimulatorConfig:
    """A small store (history, catalog, customers), independent of any SIM_VTEX_* variable."""
    defaults = {name: SimulatorConfig.model_fields[name].default for name in STORE_SETTINGS}
    sizes = {"vtex_history_orders": ORDERS, "vtex_catalog_skus": SKUS, "vtex_customers": CUSTOMERS}
    return make_config(**{**defaults, **sizes, **overrides})


@pytest.fixture
def app() -> FastAPI:
    return create_app(store_config())


async def get_json(client: httpx.AsyncClient, url: str, **params: str | int) -> Any:
    response = await client.get(url, params=params, headers=VTEX_HEADERS)
    assert response.status_code == 200, f"{url}: {response.text}"
    return response.json()


async def history_orders(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every history order in full: listed oldest first, then read one by one."""
    ids: list[str] = []
    page = 1
    while batch := (await get_json(client, OMS_URL, per_page=100, page=page, orderBy="creationDate,asc"))[
        "list"
    ]:
        ids += [summary["orderId"] for summary in batch]
        page += 1
    return [await get_json(client, f"{OMS_URL}/{order_id}") for order_id in ids]


async def customers_by_user(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Every CL document, by ``userId``."""
    response = await client.get(SCROLL_URL, params={"_size": 1000}, headers=VTEX_HEADERS)
    assert response.status_code == 200, response.text
    return {document["userId"]: document for document in response.json()}


class CatalogReader:
    """SKU documents and prices from the catalog and pricing APIs, each read once."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.read: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    async def sku(self, sku_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if sku_id not in self.read:
            self.read[sku_id] = (
                await get_json(self.client, f"{SKU_URL}/{sku_id}"),
                await get_json(self.client, f"{PRICE_URL}/{sku_id}"),
            )
        return self.read[sku_id]


async def assert_items_are_sellable_skus(order: dict[str, Any], catalog: CatalogReader) -> None:
    """Each item is an existing, active, priced SKU, named and priced as the catalog and pricing APIs say."""
    assert order["items"]
    assert len({item["id"] for item in order["items"]}) == len(order["items"])
    for item in order["items"]:
        sku, price = await catalog.sku(item["id"])
        assert sku["IsActive"] is True
        assert (item["id"], item["productId"]) == (str(sku["Id"]), str(sku["ProductId"]))
        assert (item["refId"], item["name"]) == (sku["RefId"], sku["Name"])
        assert item["price"] == round(price["basePrice"] * 100)
        assert item["listPrice"] == round(price["listPrice"] * 100)
        assert item["sellingPrice"] <= item["price"] < item["listPrice"]
        assert all(type(item[key]) is int for key in ("price", "listPrice", "sellingPrice", "quantity"))
    totals = {total["id"]: total["value"] for total in order["totals"]}
    assert totals["Items"] == sum(item["price"] * item["quantity"] for item in order["items"])
    assert totals["Discounts"] == sum(
        (item["sellingPrice"] - item["price"]) * item["quantity"] for item in order["items"]
    )
    assert order["value"] == sum(totals.values())


def assert_buyer_is_the_customer(order: dict[str, Any], customer: dict[str, Any]) -> None:
    """The order's ``clientProfileData`` is the CL document's, its e-mail the CL one or a masked relay."""
    profile = order["clientProfileData"]
    assert profile["userProfileId"] == customer["userId"]
    for field in ("document", "firstName", "lastName", "phone"):
        assert profile[field] == customer[field], field
    assert (
        order["shippingData"]["address"]["receiverName"] == f"{customer['firstName']} {customer['lastName']}"
    )
    if customer["email"].endswith(f"@{MASKED_EMAIL_DOMAIN}"):
        assert profile["email"] == customer["email"]
    else:
        assert profile["email"] == customer["email"] or RELAY.fullmatch(profile["email"])


def every_document(history: OrderHistory) -> list[dict[str, Any]]:
    return [history.cached_document(position) for position in range(len(history))]


def ticks(value: str) -> int:
    """A VTEX timestamp in ticks; the catalog writes UTC without a zone."""
    parsed = parse_ticks(value)
    if parsed is None:
        parsed = parse_ticks(f"{value}Z")
    assert parsed is not None, value
    return parsed


async def test_history_orders_take_items_from_the_catalog_and_buyers_from_the_customers(
    client: httpx.AsyncClient,
) -> None:
    orders = await history_orders(client)
    assert len(orders) == ORDERS
    customers = await customers_by_user(client)
    catalog = CatalogReader(client)
    first_customer = min(ticks(customer["createdIn"]) for customer in customers.values())
    opening = Catalog(store_config(), CatalogChanges())
    for order in orders:
        await assert_items_are_sellable_skus(order, catalog)
        customer = customers[order["clientProfileData"]["userProfileId"]]
        assert_buyer_is_the_customer(order, customer)
        # Nobody buys before signing up, nothing is sold before it is in the catalog; only the orders of the
        # store's first hours, before any customer or SKU existed, take whatever there is.
        created = ticks(order["creationDate"])
        assert ticks(customer["createdIn"]) <= created or created < first_customer
        if not opening.registered_by(created):
            continue
        for item in order["items"]:
            sku, _ = await catalog.sku(item["id"])
            assert ticks(sku["CreationDate"]) <= created
    # The orders spread over the catalog and reach back to its early SKUs.
    skus = {item["id"] for order in orders for item in order["items"]}
    assert len(skus) > ORDERS // 2 and min(map(int, skus)) < SKUS // 4


async def test_live_orders_take_what_the_catalog_sells_now_and_customers_as_they_are_now(
    client: httpx.AsyncClient,
) -> None:
    changes = await client.post(
        "/_control/vtex/catalog/change", json={"count": 60, "deactivate": 250, "delete": 30}
    )
    assert changes.status_code == 200, changes.text
    gone = set(changes.json()["deactivated"]) | set(changes.json()["deleted"])
    updated = await client.post("/_control/vtex/customers/update", json={"count": CUSTOMERS})
    assert updated.status_code == 200, updated.text
    customers = await customers_by_user(client)  # phones changed since generation
    catalog = CatalogReader(client)  # names and prices changed since generation
    orders = [(await client.post("/_control/vtex/orders")).json()["order"] for _ in range(40)]
    for order in orders:
        await assert_items_are_sellable_skus(order, catalog)
        assert_buyer_is_the_customer(order, customers[order["clientProfileData"]["userProfileId"]])
    sold = {int(item["id"]) for order in orders for item in order["items"]}
    assert sold.isdisjoint(gone)
    assert sold & set(changes.json()["changed"])  # a renamed, repriced SKU sells under its new name and price


def test_customers_buy_again_some_often_most_once_or_twice() -> None:
    # The default shape: about two orders per customer over the history.
    history = OrderHistory.from_config(store_config(vtex_history_orders=2000, vtex_customers=1000))
    orders = every_document(history)
    per_customer = Counter(order["clientProfileData"]["userProfileId"] for order in orders)
    counts = sorted(per_customer.values())
    assert 500 < len(counts) < 1000  # most customers bought, not all
    assert sum(1 for count in counts if count <= 2) > len(counts) / 2
    assert sum(1 for count in counts if count >= 5) > len(counts) / 10
    assert counts[-1] >= 15
    # A customer's orders show the CL e-mail or one masked relay, the same on every order of theirs.
    emails: defaultdict[str, set[str]] = defaultdict(set)
    for order in orders:
        profile = order["clientProfileData"]
        emails[profile["userProfileId"]].add(profile["email"])
    assert all(len(addresses) <= 2 for addresses in emails.values())
    assert all(
        sum(a.endswith(f"@{MASKED_EMAIL_DOMAIN}") for a in addresses) <= 1 for addresses in emails.values()
    )
    masked = sum(order["clientProfileData"]["email"].endswith(f"@{MASKED_EMAIL_DOMAIN}") for order in orders)
    assert 0.25 < masked / len(orders) < 0.42  # about a third, as before orders had customers


def test_the_same_config_gives_the_same_orders_and_other_seeds_other_items_or_buyers() -> None:
    config = store_config()
    first = every_document(OrderHistory.from_config(config))
    # As a new process would: nothing cached.
    for cache in (catalog_layout, customer_base, buyer_frequencies):
        cache.cache_clear()
    again = every_document(OrderHistory.from_config(config))
    assert again == first

    def items(orders: list[dict[str, Any]]) -> list[list[str]]:
        return [[item["id"] for item in order["items"]] for order in orders]

    def buyers(orders: list[dict[str, Any]]) -> list[str]:
        return [order["clientProfileData"]["userProfileId"] for order in orders]

    other_catalog = OrderHistory.from_config(store_config(vtex_catalog_seed=1))
    other_customers = OrderHistory.from_config(store_config(vtex_customers_seed=1))
    for history in (other_catalog, other_customers):
        assert [history.order_id(n) for n in range(ORDERS)] == [order["orderId"] for order in first]
        assert [history.creation_date(n) for n in range(ORDERS)] == [order["creationDate"] for order in first]
    assert items(every_document(other_catalog)) != items(first)
    assert buyers(every_document(other_customers)) != buyers(first)


async def test_an_empty_catalog_or_customer_base_leaves_orders_as_they_were() -> None:
    fixed = {product.sku_id for product in PRODUCTS}
    async with in_process(create_app(store_config(vtex_catalog_skus=0, vtex_customers=0))) as http:
        live = (await http.post("/_control/vtex/orders")).json()["order"]
        orders = [*(await history_orders(http))[:20], live]
        assert all(item["id"] in fixed for order in orders for item in order["items"])
        assert all(order["clientProfileData"]["document"] for order in orders)
    async with in_process(create_app(store_config(vtex_catalog_skus=0))) as http:
        customers = await customers_by_user(http)
        for order in [
            *(await history_orders(http))[:20],
            (await http.post("/_control/vtex/orders")).json()["order"],
        ]:
            assert all(item["id"] in fixed for item in order["items"])
            assert_buyer_is_the_customer(order, customers[order["clientProfileData"]["userProfileId"]])

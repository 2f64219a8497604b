"""Gold against a recomputation from bronze in Python, with BigQuery's documented rules.

A generated store (its order times carry VTEX's 7 fractional digits, its buyers are Master Data
customers) is landed in bronze and built; then every customer's figures are computed again from the
documents that were landed: times cut to microseconds, days as whole 24-hour periods (BigQuery's
``TIMESTAMP_DIFF(..., DAY)``), ``ROUND`` half away from zero, only revenue orders counted (payment
approved through invoiced, as the README documents), and orders of a profile without a customer
document counted in a "profile:<user id>" row.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from core.settings import Settings
from simulators.config import SimulatorConfig
from simulators.vtex_history import OrderHistory
from simulators.vtex_store import Catalog, CatalogChanges, generated_customers
from tests.dbt.test_models import dbt_build
from warehouse.landing import BronzeRecord, Warehouse
from warehouse.streams import StreamCursor
from warehouse.tables import VTEX_CUSTOMERS, VTEX_ORDERS, VTEX_SKUS
from warehouse.vtex_catalog import sku_version
from warehouse.vtex_customers import customer_version
from warehouse.vtex_orders import order_version

STORE = SimulatorConfig(
    vtex_history_orders=300,
    vtex_history_days=400,
    vtex_history_end="2026-11-01T00:00:00Z",
    vtex_catalog_skus=40,
    vtex_customers=40,
)
SECONDS_PER_DAY = 86400
UNATTRIBUTED = "unknown"  # the user id of the orders that carry no VTEX profile
UNKNOWN = f"profile:{UNATTRIBUTED}"
# The documented revenue rule: from payment approval through invoicing.
REVENUE = {
    "payment-approved", "window-to-cancel", "authorize-fulfillment", "waiting-for-fulfillment",
    "waiting-seller-handling", "ready-for-handling", "start-handling", "handling", "ready-for-invoicing",
    "invoice", "invoiced", "invoice-after-cancellation-deny",
}  # fmt: skip


async def land(warehouse: Warehouse, table: str, records: Iterable[BronzeRecord]) -> None:
    await warehouse.land_at(table, StreamCursor(), list(records))


def bigquery_time(text: str) -> datetime:
    """A VTEX time as BigQuery's TIMESTAMP holds it: microseconds (the 7th digit cut)."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))


def rounded(value: float, places: int) -> float:
    """BigQuery's ROUND: half away from zero."""
    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def recomputed(
    customers: list[dict[str, Any]], orders: list[dict[str, Any]], as_of: datetime
) -> dict[str, dict[str, Any]]:
    """customer_360's figures for each buyer as of the build, from the landed documents."""
    known = {str(customer["userId"]): str(customer["id"]) for customer in customers}
    buyers = {str(customer["id"]) for customer in customers}
    bought: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for order in orders:
        user = str(order["clientProfileData"].get("userProfileId") or UNATTRIBUTED)
        buyer = known.get(user, f"profile:{user}")
        buyers.add(buyer)
        if order["status"] in REVENUE:
            bought[buyer].append(order)
    figures = {}
    for buyer in buyers:
        own = bought.get(buyer, [])
        value = sum((Decimal(order["value"]) / 100 for order in own), Decimal(0))
        times = [bigquery_time(order["creationDate"]) for order in own]
        expected: dict[str, Any] = {"orders_count": len(own), "lifetime_value": value}
        if own:
            days = int((max(times) - min(times)).total_seconds() // SECONDS_PER_DAY)
            expected["purchase_frequency"] = rounded(len(own) * 30 / max(days, 30), 4)
            expected["days_between_orders"] = rounded(days / (len(own) - 1), 1) if len(own) > 1 else None
            expected["first_order_at"], expected["last_order_at"] = min(times), max(times)
            expected["recency_days"] = int((as_of - max(times)).total_seconds() // SECONDS_PER_DAY)
            tenure = int((as_of - min(times)).total_seconds() // SECONDS_PER_DAY)
            expected["tenure_frequency"] = rounded(len(own) * 30 / max(tenure, 30), 4)
        figures[buyer] = expected
    # The orders without a VTEX profile are many buyers in one row: not scored, a segment of their own.
    scored = [figures[buyer] for buyer in figures if figures[buyer]["orders_count"] and buyer != UNKNOWN]
    for name, key in (
        ("recency_score", lambda f: -f["recency_days"]),
        ("frequency_score", lambda f: f["tenure_frequency"]),
        ("monetary_score", lambda f: f["lifetime_value"]),
    ):
        for figure in scored:
            below = sum(1 for other in scored if key(other) < key(figure))  # RANK() - 1
            fraction = below / (len(scored) - 1) if len(scored) > 1 else 0.0
            figure[name] = min(5, 1 + math.floor(fraction * 5))
    for buyer, figure in figures.items():
        score = segment(figure.get("recency_score"), figure.get("frequency_score"))
        figure["rfm_segment"] = "unattributed" if buyer == UNKNOWN else score
    return figures


def segment(recency: int | None, frequency: int | None) -> str:
    """The README's RFM segments."""
    if recency is None or frequency is None:
        return "prospect"
    if recency >= 4 and frequency >= 4:
        return "champions"
    if recency >= 3 and frequency >= 3:
        return "loyal"
    if recency >= 4:
        return "new"
    return ("at_risk" if frequency >= 3 else "hibernating") if recency <= 2 else "needs_attention"


async def test_gold_equals_a_recomputation_with_bigquerys_rules(
    warehouse: Warehouse, settings: Settings, tmp_path: Path
) -> None:
    history = OrderHistory.from_config(STORE)
    orders = [history.cached_document(position) for position in range(STORE.vtex_history_orders)]
    for position in range(0, len(orders), 25):  # a few from marketplaces that pass no buyer's profile
        order = orders[position]  # the history's cached document: changed in a copy
        orders[position] = {**order, "clientProfileData": {**order["clientProfileData"], "userProfileId": None}}
    customers, people = [], []
    for document in generated_customers(STORE).documents:
        try:
            people.append(customer_version(document).record)
        except ValueError:
            continue  # the generator's few invalid addresses: the customer sync quarantines them
        customers.append(document)
    catalog = Catalog(STORE, CatalogChanges())
    skus = [
        sku_version(n, catalog.sku_document(n), catalog.price_document(n)) for n in range(1, catalog.size + 1)
    ]
    await land(warehouse, VTEX_SKUS, skus)
    await land(warehouse, VTEX_CUSTOMERS, people)
    await land(warehouse, VTEX_ORDERS, (order_version(order) for order in orders))
    assert any(re.search(r"\.\d{7}", order["creationDate"]) for order in orders)  # VTEX's 7 digits

    summary = await dbt_build(settings, tmp_path, models_only=True)
    assert summary.models_failed == 0, summary.failures
    gold = await warehouse.query(
        f"select * from `{warehouse.table_id(warehouse.layers.gold, 'customer_360')}`"
    )
    served = {str(row["customer_id"]): row for row in gold}
    [as_of] = {row["figures_as_of"] for row in gold}  # one build, one moment
    expected = recomputed(customers, orders, as_of)
    assert sum(1 for figures in expected.values() if figures["orders_count"] > 1) >= 10  # spans to compare
    assert {order["status"] for order in orders} - REVENUE  # orders that are not revenue, to leave out

    differences = []
    for customer_id, figures in expected.items():
        row = served[customer_id]
        for name, value in figures.items():
            got = row[name]
            same = math.isclose(got, value, abs_tol=1e-9) if isinstance(value, float) else got == value
            if not same:
                differences.append(f"{customer_id} {name}: served {got!r}, BigQuery's rules {value!r}")
    assert differences == []
    assert set(served) == set(expected)
    assert served[UNKNOWN]["orders_count"] > 0 and served[UNKNOWN]["rfm_segment"] == "unattributed"

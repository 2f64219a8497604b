"""A small store in bronze, landed through the warehouse layer, whose gold figures are computed by hand.

Ana: o-1 (100.00, with an older version too, and landed twice), o-2 (50.00), o-3 (999.00, canceled).
Bruno: o-4 (80.10); his e-mail is VTEX's masked relay. Carla: no orders.
customer_360 by hand: Ana 2 orders, LTV 150.00, ticket 75.00, 2026-01-01 .. 2026-03-02 (60 days):
2 * 30 / 60 = 1.0 orders per 30 days, 60.0 days between orders. Bruno 1 order, 80.10, 1.0, no interval.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from google.cloud.bigquery import ScalarQueryParameter

from warehouse.landing import Warehouse
from warehouse.tables import BRONZE_TABLES, VTEX_CUSTOMERS, VTEX_ORDERS, VTEX_SKUS
from warehouse.vtex_catalog import sku_version
from warehouse.vtex_customers import customer_version
from warehouse.vtex_orders import order_version

SKUS = {"101": ("11", "Tapete de borracha", 4000), "102": ("12", "Engate reboque", 6000)}
UNPRICED_SKU = "103"
CUSTOMERS = [
    ("c-ana", "u-ana", "ana.souza@example.com.br"),
    ("c-bruno", "u-bruno", "5d1f0c2b9a@CT.vtex.com.br\n"),  # as Master Data may keep it, line break too
    ("c-carla", "u-carla", "carla.dias@example.com.br"),
]
EXPECTED_360 = {
    "c-ana": {
        "orders_count": 2,
        "lifetime_value": Decimal("150"),
        "average_ticket": Decimal("75"),
        "purchase_frequency": 1.0,
        "days_between_orders": 60.0,
    },
    "c-bruno": {
        "orders_count": 1,
        "lifetime_value": Decimal("80.1"),
        "average_ticket": Decimal("80.1"),
        "purchase_frequency": 1.0,
        "days_between_orders": None,
    },
    "c-carla": {
        "orders_count": 0,
        "lifetime_value": Decimal("0"),
        "average_ticket": None,
        "purchase_frequency": None,
        "days_between_orders": None,
    },
}


def order(
    order_id: str, user: str, cents: int, created: str, status: str = "invoiced", changed: str | None = None
) -> dict[str, Any]:
    """An OMS order whose items make up ``cents`` (one line of SKU 101 and the rest of SKU 102)."""
    first = SKUS["101"][2]
    items = [
        {"id": "101", "productId": "11", "name": "Tapete de borracha", "quantity": 1, "price": first,
         "sellingPrice": first},
        {"id": "102", "productId": "12", "name": "Engate reboque", "quantity": 1, "price": cents - first,
         "sellingPrice": cents - first},
    ]  # fmt: skip
    return {
        "orderId": order_id,
        "status": status,
        "creationDate": created,
        "lastChange": changed or created,
        "value": cents,
        "totals": [
            {"id": "Items", "value": cents},
            {"id": "Discounts", "value": 0},
            {"id": "Shipping", "value": 0},
        ],
        "items": items,
        "clientProfileData": {"userProfileId": user, "document": "12345678909", "email": "x@ct.vtex.com.br"},
    }


ORDERS = [
    order("o-1", "u-ana", 10000, "2026-01-01T10:00:00.0000000Z", "payment-pending"),
    order("o-1", "u-ana", 10000, "2026-01-01T10:00:00.0000000Z", changed="2026-01-02T09:00:00.0000000Z"),
    order("o-2", "u-ana", 5000, "2026-03-02T10:00:00.0000000Z"),
    order("o-3", "u-ana", 99900, "2026-02-01T10:00:00.0000000Z", "canceled"),
    order("o-4", "u-bruno", 8010, "2026-02-10T08:00:00.0000000Z"),
]


async def land_store(warehouse: Warehouse) -> None:
    """Land the store above in bronze; the invoiced version of o-1 twice, as a retried landing would."""
    versions = [order_version(document) for document in ORDERS]
    await warehouse.land(VTEX_ORDERS, versions)
    await warehouse.land(VTEX_ORDERS, [versions[1]])
    created = "2025-06-01T00:00:00.0000000Z"
    customers = [
        customer_version({"id": cid, "userId": uid, "email": email, "createdIn": created, "updatedIn": None})
        for cid, uid, email in CUSTOMERS
    ]
    await warehouse.land(VTEX_CUSTOMERS, [version.record for version in customers])
    skus = [
        sku_version(
            int(sku_id),
            {"Id": int(sku_id), "ProductId": int(product), "IsActive": True, "Name": name},
            {"basePrice": cents / 100, "listPrice": cents / 100},
        )
        for sku_id, (product, name, cents) in SKUS.items()
    ]
    # Active in the catalog but not priced yet: VTEX allows it; it cannot be bought.
    unpriced = sku_version(
        int(UNPRICED_SKU), {"Id": 103, "ProductId": 13, "IsActive": True, "Name": "Rack"}, None
    )
    await warehouse.land(VTEX_SKUS, [*skus, unpriced])


async def insert_bronze_row(warehouse: Warehouse, table: str, row: dict[str, Any]) -> None:
    """Write one bronze row with SQL, its columns as given: to land with a chosen ``ingested_at``, or
    without the columns an earlier version did not have."""
    types = {field.name: field.field_type for field in BRONZE_TABLES[table]}
    values = [f"parse_json(@{name})" if types[name] == "JSON" else f"@{name}" for name in row]
    await warehouse.query(
        f"insert into `{warehouse.table_id(warehouse.layers.bronze, table)}` ({', '.join(row)})"
        f" values ({', '.join(values)})",
        [
            ScalarQueryParameter(name, "STRING" if types[name] == "JSON" else types[name], value)
            for name, value in row.items()
        ],
    )

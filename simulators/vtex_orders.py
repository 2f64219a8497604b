"""Realistic VTEX OMS orders of a Brazilian car-accessory store, reproducible from a seed.

Money fields are integers in cents and timestamps carry the 7 fractional digits VTEX writes: times are
kept as ticks (100 ns since the Unix epoch) so that the seventh digit survives arithmetic.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from simulators.leads import CITIES, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, STATE_WEIGHTS, ascii_lower

TICKS_PER_SECOND = 10**7
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MASKED_EMAIL_DOMAIN = "ct.vtex.com.br"

OrderState = Literal[
    "order-created",
    "order-completed",
    "on-order-completed",
    "payment-pending",
    "waiting-for-order-authorization",
    "approve-payment",
    "payment-approved",
    "payment-denied",
    "request-cancel",
    "waiting-for-seller-decision",
    "authorize-fulfillment",
    "window-to-cancel",
    "ready-for-handling",
    "start-handling",
    "handling",
    "invoice-after-cancellation-deny",
    "order-accepted",
    "invoiced",
    "cancel",
    "canceled",
    "cancellation-requested",
]
ORDER_STATES: tuple[str, ...] = get_args(OrderState)
# What the VTEX admin of a Brazilian store shows next to each state.
STATUS_DESCRIPTIONS: dict[str, str] = {
    "order-created": "Processando",
    "order-completed": "Processando",
    "on-order-completed": "Processando",
    "payment-pending": "Pagamento Pendente",
    "waiting-for-order-authorization": "Aguardando Autorização do Pedido",
    "approve-payment": "Aprovando Pagamento",
    "payment-approved": "Pagamento Aprovado",
    "payment-denied": "Pagamento Negado",
    "request-cancel": "Solicitar Cancelamento",
    "waiting-for-seller-decision": "Aguardando Decisão do Seller",
    "authorize-fulfillment": "Aguardando Autorização para Despachar",
    "window-to-cancel": "Carência para Cancelamento",
    "ready-for-handling": "Pronto para o Manuseio",
    "start-handling": "Iniciar Manuseio",
    "handling": "Preparando Entrega",
    "invoice-after-cancellation-deny": "Faturar Após Negar Cancelamento",
    "order-accepted": "Pedido Aceito",
    "invoiced": "Faturado",
    "cancel": "Cancelar",
    "canceled": "Cancelado",
    "cancellation-requested": "Cancelamento Solicitado",
}


@dataclass(frozen=True)
class Product:
    """A SKU as an order item carries it: its ids, name and prices in cents.

    ``price`` is the "por" and ``list_price`` the "de"; without a ``price``, each order draws one a little
    under the list price (the fixed :data:`PRODUCTS`).
    """

    product_id: str
    sku_id: str
    ref_id: str
    name: str
    list_price: int
    price: int | None = None


class Store(Protocol):
    """What orders are placed in: a catalog to take items from, customers to buy them."""

    def pick_products(self, rng: random.Random, count: int) -> list[Product]:
        """Up to ``count`` distinct SKUs for an order's items; ``[]`` when the catalog has none."""
        ...

    def pick_buyer(self, rng: random.Random) -> dict[str, Any] | None:
        """The ``clientProfileData`` of an order's buyer; None when there are no customers."""
        ...


# What orders are made of when no store is given, or its catalog is empty.
PRODUCTS = (
    Product("1001", "2001", "TAP-ONX-BOR", "Jogo de Tapetes de Borracha Onix", 18990),
    Product("1002", "2002", "ENG-TRK-REM", "Engate Reboque Removível Tracker", 89900),
    Product("1003", "2003", "RCK-S10-ALU", "Rack de Teto em Alumínio S10", 124900),
    Product("1004", "2004", "CAP-MNT-MAR", "Capota Marítima Montana", 159900),
    Product("1005", "2005", "SNS-EST-4PT", "Sensor de Estacionamento 4 Pontos", 34990),
    Product("1006", "2006", "CAL-CHV-SPN", "Calha de Chuva Spin 4 Portas", 14990),
    Product("1007", "2007", "PRT-CRT-EQX", "Protetor de Cárter Equinox", 42900),
    Product("1008", "2008", "PEL-INS-G20", "Película Insulfilm G20 Kit Completo", 29990),
    Product("1009", "2009", "MLT-9PL-AND", 'Central Multimídia 9" Android', 149900),
    Product("1010", "2010", "CAP-ARO-14", "Jogo de Calotas Aro 14", 21990),
    Product("1011", "2011", "CAM-RE-HD", "Câmera de Ré HD", 27990),
    Product("1012", "2012", "ALR-PRS-ONX", "Alarme com Presença Onix", 39900),
)
STREETS = (
    "Rua das Flores",
    "Avenida Brasil",
    "Rua XV de Novembro",
    "Avenida Paulista",
    "Rua Sete de Setembro",
)
NEIGHBORHOODS = ("Centro", "Jardim América", "Vila Nova", "Boa Vista", "Santa Cecília")
# About a third of marketplace orders carry VTEX's masked relay address instead of the buyer's.
MASKED_EMAIL_SHARE = 1 / 3
SHIPPING_PRICES = (0, 1990, 2490, 3290, 4590, 6990)


def now_ticks() -> int:
    """The wall-clock time in ticks (100 ns since the Unix epoch)."""
    return time.time_ns() // 100


def ticks_of(moment: datetime) -> int:
    """An aware datetime in ticks (its microseconds times ten)."""
    return (moment - EPOCH) // timedelta(microseconds=1) * 10


def vtex_timestamp(ticks: int, *, zulu: bool = False) -> str:
    """Format ticks the way VTEX does: UTC, seconds and 7 fractional digits.

    Args:
        ticks: 100 ns since the Unix epoch.
        zulu: End with ``Z`` (hooks, feed) rather than ``+00:00`` (OMS documents).

    Returns:
        A string such as ``2026-11-24T17:12:48.0965893+00:00``.
    """
    seconds, fraction = divmod(ticks, TICKS_PER_SECOND)
    base = (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction:07d}{'Z' if zulu else '+00:00'}"


_TIMESTAMP = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?(?P<zone>Z|[+-]\d{2}:\d{2})$"
)


def parse_ticks(value: Any) -> int | None:
    """A VTEX timestamp in ticks, or None if it is not one (an override may put anything there)."""
    match = _TIMESTAMP.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    try:
        moment = datetime.fromisoformat(match["base"] + zone)
    except ValueError:
        return None
    fraction = int((match["fraction"] or "").ljust(7, "0")[:7])
    return (moment - EPOCH) // timedelta(seconds=1) * TICKS_PER_SECOND + fraction


def deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: nested objects merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def generate_order(
    rng: random.Random | int | str | None = None,
    *,
    order_id: str | None = None,
    sequence: str | None = None,
    now: datetime | None = None,
    overrides: Mapping[str, Any] | None = None,
    store: Store | None = None,
) -> dict[str, Any]:
    """Make one order as VTEX's OMS API (``GET /api/oms/pvt/orders/{orderId}``) returns it.

    Args:
        rng: A random generator or a seed; the same seed, ``now`` and store give the same order.
        order_id: The order id; a random ``<13 digits>-01`` one when omitted.
        sequence: The store's order sequence number; derived from the id when omitted.
        now: The moment the order is generated; it was placed up to 30 minutes before.
        overrides: Fields to merge into the generated document (nested objects merge key by key).
        store: Where the items and the buyer come from (:class:`simulators.vtex_store.GeneratedStore`);
            without one, or where it has none, a dozen fixed products and a made-up buyer.

    Returns:
        The order in status ``order-created``, with ``orderId, sequence, status, statusDescription,
        creationDate, lastChange, value, totals, items, clientProfileData, shippingData, origin,
        salesChannel`` among others; ``value`` is the sum of ``totals``.
    """
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    order_id = order_id or f"{rng.randrange(10**12, 10**13)}-01"
    group = order_id.rsplit("-", 1)[0]
    created = ticks_of(now or datetime.now(UTC)) - rng.randint(0, 30 * 60 * TICKS_PER_SECOND)
    count = rng.choices((1, 2, 3), (6, 3, 1))[0]
    products = store.pick_products(rng, count) if store is not None else []
    items = [_item(rng, product) for product in products or rng.sample(PRODUCTS, count)]
    items_total = sum(item["price"] * item["quantity"] for item in items)
    discounts = sum((item["sellingPrice"] - item["price"]) * item["quantity"] for item in items)
    shipping = rng.choice(SHIPPING_PRICES)
    totals = [
        {"id": "Items", "name": "Total dos Itens", "value": items_total},
        {"id": "Discounts", "name": "Total dos Descontos", "value": discounts},
        {"id": "Shipping", "name": "Total do Frete", "value": shipping},
        {"id": "Tax", "name": "Total da Taxa", "value": 0},
    ]
    buyer = store.pick_buyer(rng) if store is not None else None
    if buyer is None:  # made up; the draws keep the order they had before stores existed
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if rng.random() < MASKED_EMAIL_SHARE:
            email = f"{rng.getrandbits(128):032x}@{MASKED_EMAIL_DOMAIN}"
        else:
            local = f"{ascii_lower(first)}.{ascii_lower(last)}{rng.randint(1, 99)}"
            email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
    else:
        first, last = buyer["firstName"], buyer["lastName"]
    uf = rng.choices(list(STATE_WEIGHTS), weights=list(STATE_WEIGHTS.values()))[0]
    city = rng.choice(CITIES[uf])
    cep = f"{rng.randint(city.cep_low, city.cep_high):08d}"
    if buyer is None:
        buyer = {
            "email": email,
            "firstName": first,
            "lastName": last,
            "documentType": "cpf",
            "document": cpf(rng),
            "phone": f"+55{city.ddd}9{rng.randint(60000000, 99999999)}",
            "isCorporate": False,
            "userProfileId": _uuid(rng),
        }
    order: dict[str, Any] = {
        "orderId": order_id,
        "sequence": sequence or group[-7:],
        "marketplaceOrderId": "",
        "sellerOrderId": f"00-{order_id}",
        "orderGroup": group,
        "origin": "Marketplace",
        "affiliateId": "",
        "salesChannel": "1",
        "status": "order-created",
        "statusDescription": STATUS_DESCRIPTIONS["order-created"],
        "value": sum(total["value"] for total in totals),
        "creationDate": vtex_timestamp(created),
        "lastChange": vtex_timestamp(created),
        "totals": totals,
        "items": items,
        "clientProfileData": buyer,
        "shippingData": {
            "address": {
                "addressType": "residential",
                "receiverName": f"{first} {last}",
                "postalCode": f"{cep[:5]}-{cep[5:]}",
                "city": city.name,
                "state": uf,
                "country": "BRA",
                "street": rng.choice(STREETS),
                "number": str(rng.randint(1, 2500)),
                "neighborhood": rng.choice(NEIGHBORHOODS),
            }
        },
        "storePreferencesData": {"countryCode": "BRA", "currencyCode": "BRL", "currencySymbol": "R$"},
    }
    return deep_merge(order, overrides or {})


def _item(rng: random.Random, product: Product) -> dict[str, Any]:
    # The list price is the "de", the price the "por"; some items carry a promotion on top.
    price = product.price
    if price is None:
        price = product.list_price - rng.choice((0, 0, 1000, 2000))
    selling_price = price - (price * rng.choice((0, 0, 0, 5, 10)) // 100)
    return {
        "uniqueId": f"{rng.getrandbits(128):032X}",
        "id": product.sku_id,
        "productId": product.product_id,
        "refId": product.ref_id,
        "name": product.name,
        "quantity": rng.choices((1, 2, 4), (8, 3, 1))[0],
        "seller": "1",
        "price": price,
        "listPrice": product.list_price,
        "sellingPrice": selling_price,
    }


def cpf(rng: random.Random) -> str:
    # A CPF with valid check digits, so document validation in the project sees a plausible one.
    digits = [rng.randint(0, 9) for _ in range(9)]
    for length in (9, 10):
        total = sum(digit * (length + 1 - index) for index, digit in enumerate(digits[:length]))
        digits.append(total * 10 % 11 % 10)
    return "".join(map(str, digits))


def _uuid(rng: random.Random) -> str:
    text = f"{rng.getrandbits(128):032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

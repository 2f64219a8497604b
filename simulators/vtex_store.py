"""The store behind the VTEX simulators: its generated catalog and customers, and what orders take from them.

The catalog (SKU ids 1 to ``vtex_catalog_skus``, grouped into products, with prices) and the Master Data CL
customers are generated from the configuration on first use and kept per configuration for the process:
a million SKUs cost a small index, customers are built once. The control API's changes are small overlays
(:class:`CatalogChanges`, the changed CL documents of :class:`simulators.state.MasterDataState`) that a
reset forgets. :class:`GeneratedStore` is what orders (:mod:`simulators.vtex_orders`) are placed in: their
items are active, priced SKUs of the catalog and their buyers customers of the CL base, so the warehouse
can join orders to both. The HTTP faces are :mod:`simulators.vtex_catalog` and
:mod:`simulators.vtex_customers`.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import itertools
import math
import random
import re
import uuid
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from simulators.config import SimulatorConfig
from simulators.leads import CITIES, EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, ascii_lower
from simulators.vtex_orders import (
    MASKED_EMAIL_DOMAIN,
    TICKS_PER_SECOND,
    Product,
    cpf,
    ticks_of,
    vtex_timestamp,
)
from simulators.vtex_orders import MASKED_EMAIL_SHARE as ORDER_MASKED_EMAIL_SHARE

TICKS_PER_HOUR = 3600 * TICKS_PER_SECOND

# The catalog.
INACTIVE_SHARE = 0.08
UNPRICED_SHARE = 0.03
SKUS_PER_PRODUCT = (1, 2, 3, 4, 5, 6)
SKUS_PER_PRODUCT_WEIGHTS = (30, 25, 18, 12, 9, 6)
CATALOG_DAYS = 730
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
# A changed SKU is renamed: consecutive versions always carry different labels (version 0 has none).
RENAME_LABELS = ("Nova Versão", "Linha 2027", "Edição Especial", "Premium", "Reforçado")
# A changed SKU's cost rises by 2 to 12 %: at R$ 15 or more that is always a different price.
PRICE_RISE = (0.02, 0.12)
LIST_PRICE_FACTORS = (1.1, 1.15, 1.2, 1.3)
_INACTIVE = 1
_UNPRICED = 2

# The Master Data CL customers.
CUSTOMER_DAYS = 730
NEVER_UPDATED_SHARE = 0.4
MASKED_EMAIL_SHARE = 0.2
INVALID_EMAIL_SHARE = 0.01
NEWSLETTER_SHARE = 0.35
# Addresses people mistype into a sign-up form; none passes a syntax check.
INVALID_EMAIL_FORMS = ("{local}@@{domain}", "{local}.{domain}", "{local} @{domain}", "{local}@{domain},")
FIELDS = (
    "id", "email", "firstName", "lastName", "document", "documentType", "phone", "userId",
    "isNewsletterOptIn", "accountName", "dataEntityId", "createdIn", "updatedIn",
)  # fmt: skip
AREA_CODES = tuple(sorted({city.ddd for cities in CITIES.values() for city in cities}))
# Stricter than RFC 5322 on purpose: every address generated here passes, every mistyped one fails.
_VALID_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")

# What orders take from the store.
# How often a customer buys, relative to the others: heavy-tailed, so most customers buy once or twice
# over the history and a few many times.
BUYER_FREQUENCY_ALPHA = 3.0
# Orders show VTEX's masked relay for about a third of buyers (the share generate_order uses): a masked CL
# address stays masked, and this share of the other customers' orders carry the buyer's relay instead.
RELAY_SHARE = (ORDER_MASKED_EMAIL_SHARE - MASKED_EMAIL_SHARE) / (1 - MASKED_EMAIL_SHARE)
# Draws per wanted SKU before a pick gives up on a range: inactive and unpriced SKUs are a tenth.
PICK_ATTEMPTS = 20


@dataclass
class CatalogChanges:
    """What the control API did to the generated catalog since the last reset, by SKU id.

    The generated SKUs stay as the configuration makes them; these overlay them.
    """

    # Picks the SKUs to change: a seeded app changes the same SKUs every run.
    rng: random.Random = field(default_factory=random.Random)
    versions: dict[int, int] = field(default_factory=dict)
    deactivated: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)  # SKUs whose record read VTEX answers with a 400


@dataclass(frozen=True)
class Category:
    """A kind of product: its name, RefId code, the six SKU variants, cost range, size and weight."""

    name: str
    code: str
    variants: tuple[str, str, str, str, str, str]
    cost: tuple[int, int]  # BRL
    size_cm: tuple[float, float, float]  # height, length, width
    weight_g: int


CATEGORIES = (
    Category("Jogo de Tapetes de Borracha", "TAP", ("Preto", "Grafite", "Bege", "Cinza", "Azul", "Vermelho"),
             (40, 120), (3.0, 70.0, 50.0), 2400),
    Category("Engate Reboque", "ENG", ("Fixo", "Removível", "Fixo Reforçado", "Removível Reforçado",
             "Fixo com Chicote", "Removível com Chicote"), (250, 600), (20.0, 90.0, 30.0), 14000),
    Category("Rack de Teto", "RCK", ("Alumínio", "Preto Fosco", "Prata", "Aço", "Slim", "Longo"),
             (300, 800), (12.0, 130.0, 20.0), 6500),
    Category("Calha de Chuva", "CAL", ("2 Portas", "4 Portas", "Fumê 4 Portas", "Cristal 4 Portas",
             "Fumê 2 Portas", "Cristal 2 Portas"), (35, 90), (4.0, 95.0, 12.0), 600),
    Category("Protetor de Cárter", "PRT", ("Aço", "Alumínio", "Aço Reforçado", "Com Kit", "Sem Kit",
             "Off-Road"), (90, 260), (8.0, 65.0, 50.0), 5200),
    Category("Sensor de Estacionamento", "SNS", ("4 Pontos Preto", "4 Pontos Prata", "4 Pontos Branco",
             "2 Pontos Preto", "8 Pontos Preto", "4 Pontos Grafite"), (60, 180), (8.0, 20.0, 15.0), 700),
    Category("Pastilha de Freio", "PAS", ("Dianteira", "Traseira", "Dianteira Cerâmica", "Traseira Cerâmica",
             "Dianteira Esportiva", "Traseira Esportiva"), (45, 160), (6.0, 16.0, 12.0), 1100),
    Category("Palheta Limpador", "PAL", ('14"', '16"', '18"', '20"', '22"', '24"'), (15, 45),
             (3.0, 60.0, 6.0), 250),
    Category("Filtro de Ar", "FAR", ("Motor", "Cabine", "Motor Esportivo", "Cabine Carvão Ativado",
             "Motor Turbo", "Cabine Antibactéria"), (20, 80), (6.0, 25.0, 20.0), 350),
    Category("Câmera de Ré", "CAM", ("HD", "Full HD", "HD Visão Noturna", "Full HD Visão Noturna",
             "HD com Linhas", "Full HD com Linhas"), (70, 220), (6.0, 12.0, 10.0), 300),
    Category("Farol Auxiliar de Neblina", "FRL", ("Lado Direito", "Lado Esquerdo", "Par", "LED Direito",
             "LED Esquerdo", "LED Par"), (80, 350), (12.0, 25.0, 20.0), 1500),
    Category("Capa de Banco", "CPB", ("Couro Preto", "Couro Bege", "Tecido Preto", "Tecido Cinza",
             "Couro Caramelo", "Neoprene Preto"), (120, 480), (15.0, 45.0, 35.0), 3000),
)  # fmt: skip
MODELS = (
    ("Onix", "ONX"), ("Onix Plus", "ONP"), ("Tracker", "TRK"), ("Spin", "SPN"),
    ("S10", "S10"), ("Montana", "MNT"), ("Equinox", "EQX"), ("Cruze", "CRZ"),
)  # fmt: skip


@dataclass(frozen=True)
class CatalogLayout:
    """Which SKUs make each product, and which are inactive or unpriced: a few bytes per SKU."""

    product_starts: array[int]  # the first SKU id of each product, ascending; product ids are 1-based
    flags: bytes  # by SKU id (index 0 unused): _INACTIVE, _UNPRICED

    def product_of(self, sku: int) -> int:
        """The id of the product a SKU belongs to."""
        return bisect.bisect_right(self.product_starts, sku)

    def first_sku(self, product: int) -> int:
        """The id of a product's first SKU."""
        return self.product_starts[product - 1]


@functools.lru_cache(maxsize=4)
def catalog_layout(seed: int, skus: int) -> CatalogLayout:
    """The layout of a catalog of ``skus`` SKUs: the same seed and size give the same one.

    Kept per (seed, size) for the process: it is read-only, and apps made from one config share it.
    """
    rng = random.Random(f"vtex-catalog:{seed}:layout")
    starts: array[int] = array("l")
    sku = 1
    while sku <= skus:
        starts.append(sku)
        sku += rng.choices(SKUS_PER_PRODUCT, SKUS_PER_PRODUCT_WEIGHTS)[0]
    flags = bytearray(skus + 1)
    for sku in range(1, skus + 1):
        inactive = _INACTIVE if rng.random() < INACTIVE_SHARE else 0
        flags[sku] = inactive | (_UNPRICED if rng.random() < UNPRICED_SHARE else 0)
    return CatalogLayout(starts, bytes(flags))


class NotEnoughSkus(ValueError):
    """A change asked for more SKUs than the catalog has to give."""


class Catalog:
    """The generated catalog of a configuration with the control API's changes on top.

    Args:
        config: The app's configuration (catalog size and seed, the history end the catalog was built up to).
        changes: The changes made since the last reset; :meth:`change` adds to them.
    """

    def __init__(self, config: SimulatorConfig, changes: CatalogChanges) -> None:
        self.size = config.vtex_catalog_skus
        self.seed = config.vtex_catalog_seed
        self.layout = catalog_layout(self.seed, self.size)
        self.changes = changes
        self.start_ticks = (
            ticks_of(datetime.fromisoformat(config.vtex_history_end)) - CATALOG_DAYS * TICKS_PER_DAY
        )

    def exists(self, sku: int) -> bool:
        """Whether a SKU id is one of the catalog's and was not deleted."""
        return 1 <= sku <= self.size and sku not in self.changes.deleted

    def is_active(self, sku: int) -> bool:
        """Whether an existing SKU is active (generated so and not deactivated since)."""
        return not self.layout.flags[sku] & _INACTIVE and sku not in self.changes.deactivated

    def is_priced(self, sku: int) -> bool:
        """Whether an existing SKU has a price; changes never add or remove one."""
        return not self.layout.flags[sku] & _UNPRICED

    def is_sellable(self, sku: int) -> bool:
        """Whether an order may carry a SKU id: it exists, is active and has a price."""
        return self.exists(sku) and self.is_active(sku) and self.is_priced(sku)

    def registered_by(self, ticks: int) -> int:
        """The highest SKU id such that it and every lower one had been created by ``ticks`` (0: none).

        Cheap, and on the safe side by a few hours: product ``p`` of ``P`` is created before
        ``span * p / P`` into the catalog's two years, its SKUs within six hours after it.
        """
        products = len(self.layout.product_starts)
        settled = ticks - self.start_ticks - len(SKUS_PER_PRODUCT) * TICKS_PER_HOUR
        complete = 0 if settled < 0 else min(products, settled * products // (CATALOG_DAYS * TICKS_PER_DAY))
        return self.size if complete == products else self.layout.first_sku(complete + 1) - 1

    def listed_count(self) -> int:
        """How many SKUs the id list serves: every one not deleted."""
        return self.size - len(self.changes.deleted)

    def listed_ids(self, offset: int, limit: int) -> list[int]:
        """The ids the id list serves from position ``offset`` (0-based), at most ``limit``, ascending."""
        deleted = self.changes.deleted
        first = offset + 1
        # Each deleted id at or before the candidate pushes the offset-th listed id one further.
        for gone in sorted(deleted):
            if gone > first:
                break
            first += 1
        listed = (sku for sku in range(first, self.size + 1) if sku not in deleted)
        return list(itertools.islice(listed, limit))

    def sku_document(self, sku: int) -> dict[str, Any] | None:
        """A SKU as ``GET /api/catalog/pvt/stockkeepingunit/{skuId}`` answers; None if there is none."""
        if not self.exists(sku):
            return None
        product = self.layout.product_of(sku)
        category, (model, model_code), product_ticks = self._product(product)
        rng = random.Random(f"vtex-catalog:{self.seed}:sku:{sku}")
        # Draws happen in a fixed order: size, weight, then the creation time.
        height, length, width = (round(side * rng.uniform(0.85, 1.15), 1) for side in category.size_cm)
        weight = float(round(category.weight_g * rng.uniform(0.85, 1.15)))
        variant = sku - self.layout.first_sku(product)
        # A product's SKUs are registered one after the other, within hours of the product.
        created = product_ticks + variant * 3600 * TICKS_PER_SECOND + rng.randrange(3600 * TICKS_PER_SECOND)
        packed = (height + 2, length + 4, width + 4)
        version = self.changes.versions.get(sku, 0)
        name = f"{category.name} {model} {category.variants[variant]}"
        return {
            "Id": sku,
            "ProductId": product,
            "IsActive": self.is_active(sku),
            "ActivateIfPossible": True,
            "Name": name if version == 0 else f"{name} - {RENAME_LABELS[(version - 1) % len(RENAME_LABELS)]}",
            "RefId": f"{category.code}-{model_code}-{sku:07d}",
            "PackagedHeight": packed[0],
            "PackagedLength": packed[1],
            "PackagedWidth": packed[2],
            # Weights are in the store's unit, grams by default, despite the names.
            "PackagedWeightKg": weight + 150.0,
            "Height": height,
            "Length": length,
            "Width": width,
            "WeightKg": weight,
            # Volume in cm³ over 6000: the carriers' volumetric weight in kg.
            "CubicWeight": round(packed[0] * packed[1] * packed[2] / 6000, 4),
            "IsKit": False,
            # The catalog writes UTC times without a zone.
            "CreationDate": vtex_timestamp(created).removesuffix("+00:00"),
            "RewardValue": None,
            "EstimatedDateArrival": None,
            "ManufacturerCode": "",
            "CommercialConditionId": 1,
            "MeasurementUnit": "un",
            "UnitMultiplier": 1.0,
            "ModalType": None,
            "KitItensSellApart": False,
            "Videos": [],
        }

    def price_document(self, sku: int) -> dict[str, Any] | None:
        """A SKU's price as ``GET /pricing/prices/{itemId}`` answers (currency units), or None if it has none.

        ``basePrice`` is ``costPrice`` plus ``markup`` percent; ``listPrice`` (the "from" price) is above it.
        """
        if not (self.exists(sku) and self.is_priced(sku)):
            return None
        category, _, _ = self._product(self.layout.product_of(sku))
        rng = random.Random(f"vtex-catalog:{self.seed}:price:{sku}")
        cost = round(rng.uniform(*category.cost), 2)
        markup = rng.randint(40, 120)
        list_factor = rng.choice(LIST_PRICE_FACTORS)
        for version in range(1, self.changes.versions.get(sku, 0) + 1):
            rise = random.Random(f"vtex-catalog:{self.seed}:price:{sku}:v{version}").uniform(*PRICE_RISE)
            cost = round(cost * (1 + rise), 2)
        base = round(cost * (100 + markup) / 100, 2)
        return {
            "itemId": str(sku),
            # Shops price in ",90": the next such price above the base price times the factor.
            "listPrice": round(math.floor(base * list_factor) + 0.9, 2),
            "costPrice": cost,
            "markup": markup,
            "basePrice": base,
            "fixedPrices": [],
        }

    def stats(self) -> dict[str, int]:
        """How many SKUs are listed, active, inactive and priced (deleted ones left out), and deleted."""
        listed = [sku for sku in range(1, self.size + 1) if sku not in self.changes.deleted]
        active = sum(1 for sku in listed if self.is_active(sku))
        return {
            "skus": len(listed),
            "active": active,
            "inactive": len(listed) - active,
            "priced": sum(1 for sku in listed if self.is_priced(sku)),
            "deleted": len(self.changes.deleted),
        }

    def change(self, count: int, deactivate: int, delete: int) -> dict[str, list[int]]:
        """Change, deactivate and delete distinct existing SKUs picked by the changes' generator.

        A changed SKU gets a new version: a new name and, if it has a price, a higher one. Only active SKUs
        are deactivated, so each deactivation changes a document too. Nothing is changed unless every
        pick succeeds.

        Returns:
            ``{"changed", "deactivated", "deleted"}``: the ids of each, ascending.

        Raises:
            NotEnoughSkus: When the catalog has fewer eligible SKUs than asked for.
        """
        taken: set[int] = set()
        changed = self._pick(count, taken, self.exists, "change")
        deactivated = self._pick(
            deactivate, taken, lambda sku: self.exists(sku) and self.is_active(sku), "deactivate"
        )
        deleted = self._pick(delete, taken, self.exists, "delete")
        versions = self.changes.versions
        for sku in changed:
            versions[sku] = versions.get(sku, 0) + 1
        self.changes.deactivated.update(deactivated)
        self.changes.deleted.update(deleted)
        return {"changed": changed, "deactivated": deactivated, "deleted": deleted}

    def _pick(self, wanted: int, taken: set[int], eligible: Callable[[int], bool], verb: str) -> list[int]:
        if wanted == 0:
            return []
        candidates = [sku for sku in range(1, self.size + 1) if sku not in taken and eligible(sku)]
        if len(candidates) < wanted:
            raise NotEnoughSkus(f"asked to {verb} {wanted} SKUs, but only {len(candidates)} can be")
        picked = sorted(self.changes.rng.sample(candidates, wanted))
        taken.update(picked)
        return picked

    def _product(self, product: int) -> tuple[Category, tuple[str, str], int]:
        # A product's category, car model and creation time (ticks); products are created in id order.
        rng = random.Random(f"vtex-catalog:{self.seed}:product:{product}")
        category, model = rng.choice(CATEGORIES), rng.choice(MODELS)
        span = CATALOG_DAYS * TICKS_PER_DAY
        products = len(self.layout.product_starts)
        created = self.start_ticks + int(span * (product - 1 + rng.random()) / products)
        return category, model, created


def md_timestamp(ticks: int) -> str:
    """Ticks the way Master Data writes them: UTC, 7 fractional digits, ``Z``."""
    return vtex_timestamp(ticks, zulu=True)


def customer_document(
    rng: random.Random, *, account: str, created: int, updated: int | None
) -> dict[str, Any]:
    """A CL document as Master Data v1 serves it.

    Args:
        rng: Draws everything but the times.
        account: The VTEX account (``accountName``).
        created: ``createdIn`` in ticks.
        updated: ``updatedIn`` in ticks, or None for a document never updated (``updatedIn`` null).

    Returns:
        The document with every field of :data:`FIELDS`.
    """
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    # Dict displays evaluate in order: the draws below always happen in this order.
    return {
        "id": _uuid(rng),
        "email": _email(rng, first, last),
        "firstName": first,
        "lastName": last,
        "document": cpf(rng),
        "documentType": "CPF",
        "phone": phone_number(rng),
        "userId": _uuid(rng),
        "isNewsletterOptIn": rng.random() < NEWSLETTER_SHARE,
        "accountName": account,
        "dataEntityId": "CL",
        "createdIn": md_timestamp(created),
        "updatedIn": None if updated is None else md_timestamp(updated),
    }


def email_kind(email: Any) -> Literal["masked", "invalid", "plain"]:
    """Whether an address is VTEX's masked relay, not an address at all, or a plain one."""
    if not (isinstance(email, str) and _VALID_EMAIL.fullmatch(email)):
        return "invalid"
    return "masked" if email.endswith(f"@{MASKED_EMAIL_DOMAIN}") else "plain"


@dataclass(frozen=True)
class CustomerBase:
    """The generated customers, in creation order; nobody changes them."""

    documents: tuple[dict[str, Any], ...]
    positions: dict[str, int]
    latest_ticks: int  # the latest createdIn or updatedIn among them
    created_ticks: array[int]  # each document's createdIn, ascending


@functools.lru_cache(maxsize=4)
def customer_base(seed: int, count: int, end: str, account: str) -> CustomerBase:
    """``count`` customers created over the two years before ``end``; the same arguments give the same ones.

    About 40 % were never updated; the others were, after their creation and before ``end``. Kept per
    arguments for the process: it is read-only, and apps made from one config share it.
    """
    end_ticks = ticks_of(datetime.fromisoformat(end))
    span = CUSTOMER_DAYS * TICKS_PER_DAY
    rng = random.Random(f"vtex-md:{seed}")
    created = sorted(end_ticks - span + rng.randrange(span) for _ in range(count))
    documents, latest = [], 0
    for ticks in created:
        updated = None
        if rng.random() >= NEVER_UPDATED_SHARE:
            updated = ticks + 1 + rng.randrange(max(1, end_ticks - ticks - 1))
        documents.append(customer_document(rng, account=account, created=ticks, updated=updated))
        latest = max(latest, ticks, updated or 0)
    positions = {document["id"]: position for position, document in enumerate(documents)}
    return CustomerBase(tuple(documents), positions, latest, array("q", created))


def generated_customers(config: SimulatorConfig) -> CustomerBase:
    """The generated customers of a configuration (built on first use, then shared)."""
    return customer_base(
        config.vtex_customers_seed, config.vtex_customers, config.vtex_history_end, config.vtex_account
    )


@functools.lru_cache(maxsize=4)
def buyer_frequencies(seed: int, count: int) -> array[float]:
    """Cumulative relative buying frequencies of ``count`` customers, in creation order.

    Kept per (seed, count) for the process, like the customers themselves.
    """
    rng = random.Random(f"vtex-md:{seed}:buyers")
    weights = (rng.paretovariate(BUYER_FREQUENCY_ALPHA) for _ in range(count))
    return array("d", itertools.accumulate(weights))


def relay_address(user_id: str) -> str:
    """The masked address VTEX shows for a buyer: the same one on every order of theirs."""
    return f"{hashlib.blake2b(user_id.encode(), digest_size=16).hexdigest()}@{MASKED_EMAIL_DOMAIN}"


def client_profile(customer: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """An order's ``clientProfileData`` for a CL customer: their ids, names, phone and an e-mail.

    The e-mail is the CL one, or the buyer's masked relay on some orders (:data:`RELAY_SHARE`); a masked
    CL address stays as it is.
    """
    email = customer["email"]
    if email_kind(email) != "masked" and rng.random() < RELAY_SHARE:
        email = relay_address(customer["userId"])
    return {
        "email": email,
        "firstName": customer["firstName"],
        "lastName": customer["lastName"],
        "documentType": "cpf",
        "document": customer["document"],
        "phone": customer["phone"],
        "isCorporate": False,
        "userProfileId": customer["userId"],
    }


@dataclass(frozen=True)
class GeneratedStore:
    """The catalog and customers of a configuration, as orders take from them (a ``vtex_orders.Store``).

    Items are distinct active, priced SKUs, priced as the Pricing API prices them. Buyers are generated CL
    customers, some far more often than others, with their current content. Nothing is built until the
    first pick; the catalog and customers come from the per-configuration caches.

    Args:
        config: The app's configuration.
        catalog_changes: The control API's changes to the catalog (none for the history).
        changed_customers: The current content of the CL documents changed since the last reset, by id.
        as_of: When set (ticks), only customers and SKUs created by then are taken, while there are any.
    """

    config: SimulatorConfig
    catalog_changes: CatalogChanges = field(default_factory=CatalogChanges)
    changed_customers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    as_of: int | None = None

    def at(self, ticks: int) -> GeneratedStore:
        """The same store for an order created at ``ticks``: it takes only what existed by then."""
        return dataclasses.replace(self, as_of=ticks)

    def pick_products(self, rng: random.Random, count: int) -> list[Product]:
        """Up to ``count`` distinct sellable SKUs as order items carry them; ``[]`` when there are none."""
        catalog = Catalog(self.config, self.catalog_changes)
        if catalog.size == 0:
            return []
        registered = catalog.size if self.as_of is None else catalog.registered_by(self.as_of)
        skus = _draw_distinct(rng, count, registered, catalog.is_sellable)
        if not skus:  # nothing sellable yet, or drawn: any time will do
            skus = _draw_distinct(rng, count, catalog.size, catalog.is_sellable)
        if not skus:  # almost nothing is sellable: find what is
            sellable = [sku for sku in range(1, catalog.size + 1) if catalog.is_sellable(sku)]
            skus = rng.sample(sellable, min(count, len(sellable)))
        return [_product(catalog, sku) for sku in skus]

    def pick_buyer(self, rng: random.Random) -> dict[str, Any] | None:
        """A customer's ``clientProfileData``, by buying frequency; None when there are no customers."""
        base = generated_customers(self.config)
        count = len(base.documents)
        if count == 0:
            return None
        frequencies = buyer_frequencies(self.config.vtex_customers_seed, count)
        registered = count if self.as_of is None else bisect.bisect_right(base.created_ticks, self.as_of)
        pool = registered or count  # an order older than every customer: any will do
        position = min(bisect.bisect_right(frequencies, rng.random() * frequencies[pool - 1]), pool - 1)
        customer = base.documents[position]
        return client_profile(self.changed_customers.get(customer["id"], customer), rng)


def _draw_distinct(
    rng: random.Random, count: int, highest: int, eligible: Callable[[int], bool]
) -> list[int]:
    # Distinct eligible ids from 1 to highest; fewer than count when draws keep missing.
    picked: list[int] = []
    for _ in range(PICK_ATTEMPTS * count if highest else 0):
        sku = rng.randint(1, highest)
        if sku not in picked and eligible(sku):
            picked.append(sku)
            if len(picked) == count:
                break
    return picked


def _product(catalog: Catalog, sku: int) -> Product:
    # A sellable SKU as an order item carries it; prices in cents, as the Pricing API gives them times 100.
    document, price = catalog.sku_document(sku), catalog.price_document(sku)
    assert document is not None and price is not None, f"SKU {sku} is not sellable"
    return Product(
        product_id=str(document["ProductId"]),
        sku_id=str(sku),
        ref_id=document["RefId"],
        name=document["Name"],
        list_price=round(price["listPrice"] * 100),
        price=round(price["basePrice"] * 100),
    )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _email(rng: random.Random, first: str, last: str) -> str:
    draw = rng.random()
    if draw < MASKED_EMAIL_SHARE:
        return f"{rng.getrandbits(128):032x}@{MASKED_EMAIL_DOMAIN}"
    local = f"{ascii_lower(first)}.{ascii_lower(last)}{rng.randint(1, 999)}"
    domain = rng.choice(EMAIL_DOMAINS)
    if draw < MASKED_EMAIL_SHARE + INVALID_EMAIL_SHARE:
        return rng.choice(INVALID_EMAIL_FORMS).format(local=local, domain=domain)
    return f"{local}@{domain}"


def phone_number(rng: random.Random) -> str:
    """A Brazilian mobile number as CL stores it: ``+55``, an area code, ``9`` and eight digits."""
    return f"+55{rng.choice(AREA_CODES)}9{rng.randint(60_000_000, 99_999_999)}"

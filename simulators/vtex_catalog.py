"""VTEX catalog and pricing: a generated car-accessory catalog of ``vtex_catalog_skus`` SKUs.

SKU ids run from 1 to N and consecutive SKUs share a product (1 to 6 each). A document is generated on
request from the seed, the SKU id and the SKU's version, so a million SKUs cost a small index rather than
a million documents. The control API changes, deactivates and deletes SKUs; those are small overlays
(:class:`simulators.state.CatalogChanges`) that a reset forgets.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from simulators.config import SimulatorConfig
from simulators.state import CatalogChanges, EarlyReply, StateDep
from simulators.vtex import query_number, vtex_api_guard, vtex_error
from simulators.vtex_orders import TICKS_PER_SECOND, ticks_of, vtex_timestamp

LIST_MAX_PAGE_SIZE = 1000
LIST_DEFAULT_PAGE_SIZE = 10
# VTEX's ids and page numbers are 32-bit integers.
LIST_MAX_PAGE = 2**31 - 1
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
_INTEGER = re.compile(r"-?[0-9]+")


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


router = APIRouter(prefix="/vtex/api", tags=["vtex"])
control_router = APIRouter(prefix="/_control/vtex", tags=["control"])


@router.get("/catalog_system/pvt/sku/stockkeepingunitids")
async def list_sku_ids(
    request: Request,
    state: StateDep,
    page: Annotated[str | None, Query()] = None,
    pagesize: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    """SKU ids, ascending, ``pagesize`` (1 to 1000, default 10) a page from ``page`` 1.

    Deleted SKUs are left out, inactive ones are not; a page past the end is ``[]``.
    """
    state.vtex.counters.catalog_sku_lists += 1
    await vtex_api_guard(request, state)
    page_number = query_number("page", page, 1, LIST_MAX_PAGE, "CAT001")
    size = query_number("pagesize", pagesize, LIST_DEFAULT_PAGE_SIZE, LIST_MAX_PAGE_SIZE, "CAT001")
    catalog = Catalog(state.config, state.vtex.catalog_changes)
    return JSONResponse(catalog.listed_ids((page_number - 1) * size, size))


@router.get("/catalog/pvt/stockkeepingunit/{sku_id}")
async def get_sku(sku_id: str, request: Request, state: StateDep) -> JSONResponse:
    """One SKU; 404 when unknown or deleted, 400 when the id is not an integer."""
    state.vtex.counters.catalog_sku_gets += 1
    await vtex_api_guard(request, state)
    document = Catalog(state.config, state.vtex.catalog_changes).sku_document(_sku_number(sku_id))
    if document is None:
        return vtex_error(404, "CAT003", f"SKU {sku_id} not found")
    return JSONResponse(document)


@router.get("/pricing/prices/{item_id}")
async def get_price(item_id: str, request: Request, state: StateDep) -> JSONResponse:
    """One SKU's price; 404 when the SKU has none, is unknown or deleted; 400 for a non-integer id."""
    state.vtex.counters.pricing_gets += 1
    await vtex_api_guard(request, state)
    document = Catalog(state.config, state.vtex.catalog_changes).price_document(_sku_number(item_id))
    if document is None:
        return vtex_error(404, "PRC001", f"No price found for SKU {item_id}")
    return JSONResponse(document)


class CatalogChange(BaseModel):
    """How many SKUs to change (new name and price), deactivate and delete."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=0, ge=0)
    deactivate: int = Field(default=0, ge=0)
    delete: int = Field(default=0, ge=0)


@control_router.post("/catalog/change")
async def change_catalog(
    state: StateDep, body: Annotated[CatalogChange | None, Body()] = None
) -> JSONResponse:
    """Change, deactivate and delete distinct SKUs: ``{"changed", "deactivated", "deleted"}`` (ids).

    409, and nothing changed, when the catalog has fewer eligible SKUs than asked for.
    """
    spec = body or CatalogChange()
    catalog = Catalog(state.config, state.vtex.catalog_changes)
    try:
        return JSONResponse(catalog.change(spec.count, spec.deactivate, spec.delete))
    except NotEnoughSkus as exc:
        return JSONResponse({"error": "not_enough_skus", "message": str(exc)}, status_code=409)


@control_router.get("/catalog")
async def show_catalog(state: StateDep) -> dict[str, int]:
    """``{"skus", "active", "inactive", "priced", "deleted"}``: listed SKUs by kind, and deleted ones."""
    return Catalog(state.config, state.vtex.catalog_changes).stats()


def _sku_number(value: str) -> int:
    """A SKU id from the path; a 400 in VTEX's shape when it is not an integer."""
    if _INTEGER.fullmatch(value) is None:
        raise EarlyReply(vtex_error(400, "CAT002", f"The SKU id must be an integer, not {value!r}"))
    return int(value)

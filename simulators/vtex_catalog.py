"""VTEX catalog and pricing: a generated car-accessory catalog of ``vtex_catalog_skus`` SKUs.

SKU ids run from 1 to N and consecutive SKUs share a product (1 to 6 each). A document is generated on
request from the seed, the SKU id and the SKU's version, so a million SKUs cost a small index rather than
a million documents. The control API changes, deactivates and deletes SKUs; those are small overlays
(:class:`simulators.vtex_store.CatalogChanges`) that a reset forgets. The catalog itself is
:class:`simulators.vtex_store.Catalog`, which orders take their items from too.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from simulators.state import EarlyReply, StateDep
from simulators.vtex import query_number, vtex_api_guard, vtex_error
from simulators.vtex_store import Catalog, NotEnoughSkus

LIST_MAX_PAGE_SIZE = 1000
LIST_DEFAULT_PAGE_SIZE = 10
# VTEX's ids and page numbers are 32-bit integers.
LIST_MAX_PAGE = 2**31 - 1
_INTEGER = re.compile(r"-?[0-9]+")


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
    number = _sku_number(sku_id)
    if number in state.vtex.catalog_changes.refused:  # a SKU the catalog itself cannot serve
        return vtex_error(400, "CAT004", f"SKU {sku_id} could not be loaded")
    document = Catalog(state.config, state.vtex.catalog_changes).sku_document(number)
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


class RefusedSkus(BaseModel):
    """SKUs whose record read is answered 400 from now on (until a reset)."""

    model_config = ConfigDict(extra="forbid")

    sku_ids: list[int] = Field(min_length=1)


@control_router.post("/catalog/refuse")
async def refuse_skus(state: StateDep, body: Annotated[RefusedSkus, Body()]) -> JSONResponse:
    """Make the catalog refuse these SKUs' reads (HTTP 400, CAT004), as a SKU broken in VTEX is."""
    state.vtex.catalog_changes.refused.update(body.sku_ids)
    return JSONResponse({"refused": sorted(state.vtex.catalog_changes.refused)})


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

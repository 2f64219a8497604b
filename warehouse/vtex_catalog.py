"""VTEX SKUs on their way into bronze: one version per content, validation, the removed-SKU record.

A version is what the catalog sync read for one SKU: its catalog record and its price, side by side, as
VTEX served them (``{"sku": {...}, "price": {...} | null}``). Its event key carries a hash of that
content, so the sync lands a SKU again only when the key of its latest row differs: unchanged SKUs cost
one read and no row. A SKU that VTEX stopped listing (deleted) lands as ``{"sku": null, "price": null}``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from warehouse.landing import BronzeRecord, InvalidRecord, QuarantineRecord, validation_reason
from warehouse.tables import VTEX_SKUS

SOURCE = "vtex"
REMOVED: dict[str, Any] = {"sku": None, "price": None}
INVALID_SKU = "invalid_sku"  # the quarantine code: a field missing or of the wrong type, a negative price
UNREADABLE_SKU = "unreadable_sku"  # the quarantine code: VTEX refused this one SKU's read for good


class _Sku(BaseModel):
    model_config = ConfigDict(extra="allow")

    Id: StrictInt
    ProductId: StrictInt
    IsActive: StrictBool
    Name: str = Field(min_length=1)


class _Price(BaseModel):
    # Prices are decimals in the store's currency; a negative or missing base price is a broken record.
    model_config = ConfigDict(extra="allow")

    basePrice: float = Field(ge=0)
    listPrice: float | None = Field(default=None, ge=0)
    costPrice: float | None = Field(default=None, ge=0)


def sku_version(
    sku_id: int, sku: dict[str, Any] | None, price: dict[str, Any] | None, read_at: datetime | None = None
) -> BronzeRecord:
    """The bronze record of a SKU as read now; ``sku`` None means VTEX no longer has it. ``read_at``: when
    it was read, its version's time (VTEX's SKU carries no change time): a version read earlier by an
    attempt that landed late (a worker out of touch, superseded by its retry) is not taken for the newest.

    Raises:
        InvalidRecord: the record's id is not the SKU's, a required field is missing or of the wrong type,
            or a price is negative; the quarantine record names every problem.
    """
    payload = REMOVED if sku is None else {"sku": sku, "price": price}
    key = sku_version_key(sku_id, payload)
    if sku is not None:
        _check(sku_id, sku, price, key, payload)
    return BronzeRecord(
        source=SOURCE, entity_id=str(sku_id), event_key=key, payload=payload, source_updated_at=read_at
    )


def sku_version_key(sku_id: int, payload: dict[str, Any]) -> str:
    """``<sku id>@<hash of the content>``: equal for equal content, whatever the order of its fields."""
    return f"{sku_id}@{content_hash(payload)}"


def content_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


REMOVED_HASH = content_hash(REMOVED)


def is_removed_key(key: str, sku_id: int) -> bool:
    """Whether a SKU's event key is that of its removed-from-the-catalog record."""
    return key == f"{sku_id}@{REMOVED_HASH}"


def _check(
    sku_id: int, sku: dict[str, Any], price: dict[str, Any] | None, key: str, payload: dict[str, Any]
) -> None:
    problems = []
    try:
        record = _Sku.model_validate(sku)
        if record.Id != sku_id:
            problems.append(f"sku.Id: {record.Id} is not the SKU read ({sku_id})")
    except ValidationError as error:
        problems.append(validation_reason(error, "sku"))
    if price is not None:
        try:
            _Price.model_validate(price)
        except ValidationError as error:
            problems.append(validation_reason(error, "price"))
    if problems:
        reason = "; ".join(problems)
        quarantine = QuarantineRecord(SOURCE, VTEX_SKUS, key, reason, payload, str(sku_id), INVALID_SKU)
        raise InvalidRecord(reason, quarantine)


def unreadable_sku(sku_id: int, refusal: str) -> InvalidRecord:
    """A SKU whose record or price VTEX refuses to serve for good (``refusal``: status and error code,
    never a body): quarantined once per refusal, so one broken SKU does not stop the catalog's sync."""
    payload = {"refused": refusal}
    key = f"{sku_id}@refused-{content_hash(payload)}"
    reason = f"VTEX refused the read of SKU {sku_id}: {refusal}"
    return InvalidRecord(
        reason, QuarantineRecord(SOURCE, VTEX_SKUS, key, reason, payload, str(sku_id), UNREADABLE_SKU)
    )

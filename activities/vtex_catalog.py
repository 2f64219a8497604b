"""Activities of the catalog sync: land a page of SKUs whose content changed, then the SKUs VTEX dropped.

Each SKU costs two catalog requests (its record and its price) under the sync's budget. What was landed
before is read back from bronze, not kept in workflow history: one query per page returns the latest
event key of each SKU on it, and that key carries the hash of the content it landed. A SKU lands again
only when the hash differs. Rows are appended at the workflow's stream cursors: a retried page lands
nothing twice.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiolimiter import AsyncLimiter
from temporalio import activity

from activities.errors import external_call
from activities.heartbeats import heartbeating
from activities.pacing import RequestBudgets, first_attempt, paced
from clients.errors import PermanentError
from clients.vtex import SKU_IDS_MAX_PAGE_SIZE, VtexClient
from core.metrics import count_sync
from core.timeutil import utcnow
from warehouse.landing import LATEST_PER_ENTITY, BronzeRecord, InvalidRecord, QuarantineRecord, Warehouse
from warehouse.libraries import ScalarQueryParameter
from warehouse.streams import StreamCursor
from warehouse.tables import QUARANTINE, VTEX_SKUS, every_partition
from warehouse.vtex_catalog import REMOVED_HASH, is_removed_key, sku_version, unreadable_sku

# SKUs of one page read at once (two requests each): enough to fill the budget while VTEX answers.
READ_CONCURRENCY = 16
# Refusals of the hub itself (its app key or token, its permissions), not of one SKU: the page fails.
SYSTEMIC_REFUSALS = frozenset({401, 403})


@dataclass
class CatalogCursors:
    """Where the sync appends next, per table: kept in workflow state."""

    skus: StreamCursor = field(default_factory=StreamCursor)
    quarantine: StreamCursor = field(default_factory=StreamCursor)


@dataclass
class CatalogPageInput:
    page: int  # from 1
    cursors: CatalogCursors
    requests_per_second: float
    page_size: int = SKU_IDS_MAX_PAGE_SIZE


@dataclass
class CatalogCounts:
    """What a page (or a whole sync, summed) found."""

    read: int = 0  # SKUs listed and read
    changed: int = 0  # landed a new version (new SKUs included)
    unchanged: int = 0
    quarantined: int = 0  # read, but failed validation (landed in quarantine once per version)
    removed: int = 0  # no longer in the catalog: landed as removed
    vtex_requests: int = 0

    def add(self, other: CatalogCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class CatalogPageResult:
    cursors: CatalogCursors
    counts: CatalogCounts
    listed: int  # ids on the page: fewer than the page size means it was the last


@dataclass
class RemovedSkusInput:
    cursors: CatalogCursors
    requests_per_second: float
    page_size: int = SKU_IDS_MAX_PAGE_SIZE


@dataclass
class RemovedSkusResult:
    cursors: CatalogCursors
    counts: CatalogCounts


class VtexCatalogActivities:
    """Holds the VTEX client and the warehouse, built once per worker."""

    def __init__(self, vtex: VtexClient, warehouse: Warehouse, budgets: RequestBudgets) -> None:
        self._vtex = vtex
        self._warehouse = warehouse
        self._budgets = budgets

    @activity.defn
    async def land_catalog_page(self, params: CatalogPageInput) -> CatalogPageResult:
        """List one page of SKU ids, read each SKU and its price, land the ones whose content changed."""
        limiter = self._budgets.at(params.requests_per_second)
        counts = CatalogCounts()
        with external_call():
            async with heartbeating():
                ids = await paced(limiter, partial(self._vtex.list_sku_ids, params.page, params.page_size))
                counts.vtex_requests += 1
                versions = await self._read_skus(ids, counts, params.requests_per_second)
                landed = await self._warehouse.latest_keys(VTEX_SKUS, [str(sku_id) for sku_id in ids])
                changed, invalid = _changes(versions, landed, counts)
                invalid = await self._not_quarantined(invalid)
                cursors = await self._land(params.cursors, changed, invalid)
        counts.removed = sum(1 for record in changed if _is_removed(record))
        counts.changed = len(changed) - counts.removed
        count_sync(
            "catalog",
            read=counts.read,
            landed=counts.changed,
            unchanged=counts.unchanged,
            quarantined=counts.quarantined,
            removed=counts.removed,
        )
        return CatalogPageResult(cursors, counts, listed=len(ids))

    @activity.defn
    async def land_removed_skus(self, params: RemovedSkusInput) -> RemovedSkusResult:
        """Land SKUs that bronze has as present but VTEX no longer lists, as removed.

        Lists every SKU id again (one request per page of 1,000) and compares ids only: no SKU record is
        held, only two sets of ids.
        """
        limiter = self._budgets.at(params.requests_per_second)
        counts = CatalogCounts()
        listed: set[str] = set()
        with external_call():
            async with heartbeating():
                for page in itertools.count(1):
                    ids = await paced(limiter, partial(self._vtex.list_sku_ids, page, params.page_size))
                    counts.vtex_requests += 1
                    if not ids:
                        break
                    listed.update(str(sku_id) for sku_id in ids)
                present = await self._present_skus()
                unlisted = sorted(present - listed, key=int)
                gone = [
                    sku_version(sku_id, None, None, utcnow())
                    for sku_id in await self._gone(unlisted, limiter, counts)
                ]
                cursors = await self._land(params.cursors, gone, [])
        counts.removed = len(gone)
        count_sync("catalog", removed=counts.removed)
        return RemovedSkusResult(cursors, counts)

    async def _gone(self, unlisted: list[str], limiter: AsyncLimiter, counts: CatalogCounts) -> list[int]:
        """The unlisted SKUs VTEX does not serve either. The list pages by position: a SKU deleted while
        it was paged shifts a live one out of the pages read, and that one is not gone (one read each;
        the removals of a sync are few)."""
        gate = asyncio.Semaphore(READ_CONCURRENCY)  # a mass deletion is read as fast as the budget allows

        async def served(sku_id: int) -> bool:
            async with gate:
                sku = await paced(limiter, partial(self._vtex.get_sku, sku_id))
            counts.vtex_requests += 1
            return sku is not None

        ids = [int(sku_id) for sku_id in unlisted]
        still = await asyncio.gather(*(served(sku_id) for sku_id in ids))
        return [sku_id for sku_id, live in zip(ids, still, strict=True) if not live]

    async def _read_skus(
        self, ids: list[int], counts: CatalogCounts, requests_per_second: float
    ) -> list[BronzeRecord | InvalidRecord]:
        """Each SKU's version, in the order of ``ids``; READ_CONCURRENCY readers share the page.

        The readers run in a task group: when one read fails for good, the others stop at once rather
        than keep calling VTEX beside the retried page.
        """
        limiter = self._budgets.at(requests_per_second)
        versions: dict[int, BronzeRecord | InvalidRecord] = {}
        queue = iter(ids)

        async def reader() -> None:
            for sku_id in queue:  # every reader takes the next id left
                try:
                    sku = await paced(limiter, partial(self._vtex.get_sku, sku_id))
                    price = (
                        None if sku is None else await paced(limiter, partial(self._vtex.get_price, sku_id))
                    )
                except PermanentError as refused:
                    if refused.status_code in SYSTEMIC_REFUSALS:
                        raise  # the hub's credentials, not this SKU: the page fails, by name
                    counts.vtex_requests += 1
                    versions[sku_id] = unreadable_sku(sku_id, str(refused))
                    continue
                counts.vtex_requests += 1 if sku is None else 2
                versions[sku_id] = _version(sku_id, sku, price)

        try:
            async with asyncio.TaskGroup() as readers:
                for _ in range(min(READ_CONCURRENCY, len(ids))):
                    readers.create_task(reader())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # the first failure, as the retry policy knows it
        counts.read = sum(1 for version in versions.values() if not _is_removed(version))
        return [versions[sku_id] for sku_id in ids]

    async def _not_quarantined(self, invalid: list[QuarantineRecord]) -> list[QuarantineRecord]:
        """The invalid versions not quarantined by an earlier sync (a broken SKU is kept once per version)."""
        kept = await self._warehouse.landed_keys(
            [QUARANTINE], [record.event_key for record in invalid], entity_ids=[r.entity_id for r in invalid]
        )
        return [record for record in invalid if record.event_key not in kept]

    async def _present_skus(self) -> set[str]:
        """SKU ids whose latest version in bronze is not the removed record (ids only)."""
        table = self._warehouse.table_id(self._warehouse.layers.bronze, VTEX_SKUS)
        rows = await self._warehouse.query(
            f"select entity_id from `{table}` where {every_partition(VTEX_SKUS)} {LATEST_PER_ENTITY}"
            " and not ends_with(event_key, @removed)",
            [ScalarQueryParameter("removed", "STRING", "@" + REMOVED_HASH)],
        )
        return {str(row["entity_id"]) for row in rows}

    async def _land(
        self, cursors: CatalogCursors, records: list[BronzeRecord], invalid: list[QuarantineRecord]
    ) -> CatalogCursors:
        if not first_attempt():
            cursors = CatalogCursors()
        return CatalogCursors(
            skus=await self._warehouse.land_at(VTEX_SKUS, cursors.skus, records),
            quarantine=await self._warehouse.quarantine_at(cursors.quarantine, invalid),
        )


def _version(
    sku_id: int, sku: dict[str, Any] | None, price: dict[str, Any] | None
) -> BronzeRecord | InvalidRecord:
    try:
        return sku_version(sku_id, sku, price, utcnow())  # read just now
    except InvalidRecord as invalid:
        return invalid


def _is_removed(version: BronzeRecord | InvalidRecord) -> bool:
    return isinstance(version, BronzeRecord) and is_removed_key(version.event_key, int(version.entity_id))


def _changes(
    versions: list[BronzeRecord | InvalidRecord], landed: dict[str, str], counts: CatalogCounts
) -> tuple[list[BronzeRecord], list[QuarantineRecord]]:
    """The versions to land (content differs from the latest landed), and the invalid ones."""
    changed: list[BronzeRecord] = []
    invalid: list[QuarantineRecord] = []
    for version in versions:
        if isinstance(version, InvalidRecord):
            counts.quarantined += 1
            invalid.append(version.quarantine)
        elif landed.get(version.entity_id) == version.event_key:
            if not _is_removed(version):  # a SKU still gone is not counted: it was not read
                counts.unchanged += 1
        elif _is_removed(version) and version.entity_id not in landed:
            continue  # listed, then deleted before it was ever landed: nothing to record
        else:
            changed.append(version)
    return changed, invalid

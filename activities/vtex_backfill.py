"""Activities of the order history backfill: count and list orders by creation date, read and land them.

Every VTEX request of a backfill waits for its turn under the backfill's own rate budget (requests per
second, shared by every backfill activity in this worker), so a backfill leaves VTEX's account limit
to the live flows. A page's orders are landed exactly once: the workflow keeps the stream cursors and
passes them in, and a retried page lands only the versions bronze does not hold yet.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import activity

from activities.errors import external_call
from activities.heartbeats import heartbeating
from activities.pacing import RequestBudgets, first_attempt, paced
from clients.errors import PermanentError
from clients.vtex import VtexClient
from core.metrics import count_sync
from core.vtex import readable_change_time
from warehouse.landing import BronzeRecord, InvalidRecord, QuarantineRecord, Warehouse, landed_since
from warehouse.streams import StreamCursor
from warehouse.tables import QUARANTINE, VTEX_ORDERS
from warehouse.vtex_orders import order_version, order_version_key

log = logging.getLogger("activities.vtex_backfill")

# Refusals of the account, not of one order (a key revoked, a missing permission): a backfill stops.
ACCOUNT_REFUSALS = frozenset({401, 403, 407})

# Orders of one page read at once: enough to use the budget while VTEX answers, few enough to be polite.
READ_CONCURRENCY = 8


@dataclass
class CreationWindow:
    """Orders created from ``start`` to ``end``, both inclusive (ISO 8601, UTC, milliseconds)."""

    start: str
    end: str


@dataclass
class CountOrdersInput:
    window: CreationWindow
    requests_per_second: float


@dataclass
class CountOrdersResult:
    total: int


@dataclass
class PlanPageInput:
    window: CreationWindow
    page: int
    per_page: int
    requests_per_second: float


@dataclass
class PlanPageResult:
    """The page's orders whose current version is not in the warehouse yet (ids only: no personal data)."""

    order_ids: list[str]
    listed: int  # orders on the page
    total: int  # orders in the window, as the list counted them now
    pages: int


@dataclass
class BackfillCursors:
    """Where the backfill appends next, per table: kept in workflow state."""

    orders: StreamCursor = field(default_factory=StreamCursor)
    quarantine: StreamCursor = field(default_factory=StreamCursor)


@dataclass
class LandOrdersInput:
    order_ids: list[str]
    cursors: BackfillCursors
    requests_per_second: float


@dataclass
class LandOrdersResult:
    cursors: BackfillCursors
    landed: int = 0
    quarantined: int = 0
    missing: list[str] = field(default_factory=list)  # listed, but the OMS did not serve them


class VtexBackfillActivities:
    """Holds the VTEX client and the warehouse, built once per worker."""

    def __init__(self, vtex: VtexClient, warehouse: Warehouse, budgets: RequestBudgets) -> None:
        self._vtex = vtex
        self._warehouse = warehouse
        self._budgets = budgets

    @activity.defn
    async def count_orders(self, params: CountOrdersInput) -> CountOrdersResult:
        """How many orders the window holds (one VTEX request)."""
        await self._budgets.at(params.requests_per_second).acquire()
        with external_call():
            page = await self._vtex.list_orders(*_bounds(params.window), page=1, per_page=1)
        return CountOrdersResult(total=page.total)

    @activity.defn
    async def plan_page(self, params: PlanPageInput) -> PlanPageResult:
        """List one page of the window (one VTEX request) and keep the orders not landed in this version.

        An order whose ``orderId@lastChange`` is already in bronze (or quarantine), by an earlier backfill
        or by the live flow, is not read again: the same range backfilled twice lands nothing new.
        """
        await self._budgets.at(params.requests_per_second).acquire()
        with external_call():
            page = await self._vtex.list_orders(
                *_bounds(params.window), page=params.page, per_page=params.per_page
            )
            keys = {_summary_key(order): str(order["orderId"]) for order in page.orders if "orderId" in order}
            landed = await self._warehouse.landed_keys(
                [VTEX_ORDERS, QUARANTINE],
                list(keys),
                entity_ids=list(keys.values()),
                # No version landed before its lastChange: the read starts at the page's oldest.
                landed_since=landed_since(
                    readable_change_time(order.get("lastChange"))
                    for order in page.orders
                    if "orderId" in order
                ),
            )
        order_ids = [order_id for key, order_id in keys.items() if key not in landed]
        count_sync("backfill", unchanged=len(keys) - len(order_ids))
        return PlanPageResult(order_ids, listed=len(page.orders), total=page.total, pages=page.pages)

    @activity.defn
    async def land_orders(self, params: LandOrdersInput) -> LandOrdersResult:
        """Read each order from the OMS (one request each, under the budget) and land its current version.

        Valid versions go to ``bronze.vtex_orders``, invalid ones to quarantine with their reason, each at
        the workflow's cursor: a retried page lands nothing twice.
        """
        limiter = self._budgets.at(params.requests_per_second)
        gate = asyncio.Semaphore(READ_CONCURRENCY)
        done = 0
        refused: list[PermanentError] = []

        async def read(order_id: str) -> dict[str, Any] | None:
            nonlocal done
            async with gate:
                try:
                    document = await paced(limiter, lambda: self._vtex.get_order(order_id))
                except PermanentError as error:
                    if error.status_code in ACCOUNT_REFUSALS:
                        raise  # every order would be refused alike: the backfill fails, named
                    # One order the OMS will not serve (an answer the hub cannot read, a 4xx about it):
                    # counted missing, as one it does not know, so the rest of the range still lands;
                    # a run over the same range reads it again.
                    log.warning("order %s: the OMS refused its read (%s); counted missing", order_id, error)
                    refused.append(error)
                    document = None
            done += 1
            activity.heartbeat(f"{done}/{len(params.order_ids)} orders read")
            return document

        with external_call():
            documents = await asyncio.gather(*(read(order_id) for order_id in params.order_ids))
            if refused and len(refused) == len(params.order_ids):
                raise refused[0]  # every read of the page refused alike: a fault of the request, named
            records, invalid, missing = _records(params.order_ids, documents)
            # The page's versions are in bronze once this returns: landed by this attempt, or (retried)
            # by the one before it, whose answer was lost; the counts are the page's either way.
            to_land, to_quarantine, cursors = records, invalid, params.cursors
            # No version landed before its lastChange: a read of what landed starts at the page's oldest.
            since = landed_since(
                readable_change_time(document.get("lastChange")) for document in documents if document
            )
            # A read of bronze or an append can take BigQuery's deadline, longer than a heartbeat.
            async with heartbeating():
                if not first_attempt():
                    to_land, to_quarantine = await self._not_landed(cursors, records, invalid, since)
                warehouse = self._warehouse
                cursors = BackfillCursors(
                    orders=await warehouse.land_at(VTEX_ORDERS, cursors.orders, to_land, landed_since=since),
                    quarantine=await warehouse.quarantine_at(
                        cursors.quarantine, to_quarantine, landed_since=since
                    ),
                )
        count_sync(
            "backfill",
            read=len(params.order_ids) - len(missing),
            landed=len(records),
            quarantined=len(invalid),
            missing=len(missing),
        )
        return LandOrdersResult(cursors, landed=len(records), quarantined=len(invalid), missing=missing)

    async def _not_landed(
        self,
        cursors: BackfillCursors,
        records: list[BronzeRecord],
        invalid: list[QuarantineRecord],
        since: datetime | None,
    ) -> tuple[list[BronzeRecord], list[QuarantineRecord]]:
        """What a retried page still has to land. Where the page opened its stream (the first, or the
        first after a stream was lost), the attempt before may have landed it and died before the
        workflow heard of the stream: only the versions bronze does not hold go to a new one. At a
        stream's offset, BigQuery itself refuses what was written there already; at a stream lost since,
        the writer asks bronze (``StorageWriter.append_at``). ``since``: no version landed before it."""
        checked: list[BronzeRecord | QuarantineRecord] = [
            *([] if cursors.orders.stream else records),
            *([] if cursors.quarantine.stream else invalid),
        ]
        if not checked:
            return records, invalid
        landed = await self._warehouse.landed_keys(
            [VTEX_ORDERS, QUARANTINE],
            [record.event_key for record in checked],
            entity_ids=[record.entity_id for record in checked],
            landed_since=since,
        )
        if landed:
            log.info("a retried page: %d of its versions landed before, not again", len(landed))
        if not cursors.orders.stream:
            records = [record for record in records if record.event_key not in landed]
        if not cursors.quarantine.stream:
            invalid = [record for record in invalid if record.event_key not in landed]
        return records, invalid


def _bounds(window: CreationWindow) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(window.start), datetime.fromisoformat(window.end)


def _summary_key(order: dict[str, Any]) -> str:
    """The event key the order's current version lands under, from its list summary."""
    try:
        return order_version_key(str(order["orderId"]), str(order.get("lastChange")))
    except ValueError:  # no readable lastChange: read the order, its version decides
        return f"{order['orderId']}@?"


def _records(
    order_ids: list[str], documents: list[dict[str, Any] | None]
) -> tuple[list[BronzeRecord], list[QuarantineRecord], list[str]]:
    records: list[BronzeRecord] = []
    invalid: list[QuarantineRecord] = []
    missing: list[str] = []
    for order_id, document in zip(order_ids, documents, strict=True):
        if document is None:
            missing.append(order_id)
            continue
        try:
            records.append(order_version(document))
        except InvalidRecord as error:
            invalid.append(error.quarantine)
    return records, invalid, missing

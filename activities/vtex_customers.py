"""Activities of the customer sync: scroll Master Data CL a page at a time, land new versions, watermark.

Master Data keeps one scroll per account and moves it forward on every call: a page that was served but
not landed (the worker died in between) cannot be asked for again with the same token. So a retried
page, a token Master Data no longer knows (20 minutes idle) or a scroll replaced by another all lead to
the same recovery: a new scroll over the run's window, from its start. Pages read again are harmless:
each version's event key is checked against bronze and quarantine before landing, and what lands is
appended at the workflow's stream cursors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from aiolimiter import AsyncLimiter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import external_call
from activities.pacing import RequestBudgets, paced
from clients.vtex import SCROLL_MAX_SIZE, ScrollExpired, ScrollPage, VtexClient
from db.watermarks import advance_watermark, read_watermark
from warehouse import BronzeRecord, QuarantineRecord, Warehouse
from warehouse.landing import InvalidRecord
from warehouse.streams import StreamCursor
from warehouse.tables import QUARANTINE, VTEX_CUSTOMERS
from warehouse.vtex_customers import customer_version


@dataclass
class CustomerWindow:
    """Changes from ``since`` (None: every document) to ``until``; ISO 8601 UTC."""

    since: str | None
    until: str

    def where(self) -> str | None:
        """Master Data's ``_where``: updated in the window, or never updated and created in it."""
        if self.since is None:
            return None
        bounds = f"between {_md_time(self.since)} AND {_md_time(self.until)}"
        return f"(updatedIn {bounds}) OR (updatedIn is null AND createdIn {bounds})"


@dataclass
class CustomerCursors:
    customers: StreamCursor = field(default_factory=StreamCursor)
    quarantine: StreamCursor = field(default_factory=StreamCursor)


@dataclass
class CustomerPageInput:
    window: CustomerWindow
    token: str | None  # None: open a new scroll
    cursors: CustomerCursors
    requests_per_second: float
    page_size: int = SCROLL_MAX_SIZE


@dataclass
class CustomerPageResult:
    token: str | None
    done: bool  # the scroll served an empty page: the window is landed
    cursors: CustomerCursors
    read: int = 0
    landed: int = 0
    already_landed: int = 0  # this version was in bronze (or quarantine) already
    quarantined: int = 0
    checks: dict[str, int] = field(default_factory=dict)  # data-quality code -> documents
    restarted: bool = False  # the scroll was opened again from the window's start


@dataclass
class WatermarkInput:
    name: str


@dataclass
class WatermarkResult:
    watermark: str | None


@dataclass
class AdvanceWatermarkInput:
    name: str
    to: str


class VtexCustomerActivities:
    """Holds the VTEX client, the warehouse and the central database, built once per worker."""

    def __init__(
        self, vtex: VtexClient, warehouse: Warehouse, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._vtex = vtex
        self._warehouse = warehouse
        self._sessions = sessions
        self._budgets = RequestBudgets()

    @activity.defn
    async def read_watermark(self, params: WatermarkInput) -> WatermarkResult:
        """Where the sync landed up to, or None before its first complete run."""
        watermark = await read_watermark(self._sessions, params.name)
        return WatermarkResult(None if watermark is None else watermark.isoformat())

    @activity.defn
    async def advance_watermark(self, params: AdvanceWatermarkInput) -> WatermarkResult:
        """Move the watermark forward to ``to`` (never back); call it once the window is landed."""
        moved = await advance_watermark(self._sessions, params.name, datetime.fromisoformat(params.to))
        return WatermarkResult(moved.isoformat())

    @activity.defn
    async def land_customer_page(self, params: CustomerPageInput) -> CustomerPageResult:
        """Read the scroll's next page and land the versions bronze does not hold yet."""
        limiter = self._budgets.at(params.requests_per_second)
        with external_call():
            page, restarted = await self._next_page(params, limiter)
            result = CustomerPageResult(page.token, not page.documents, params.cursors, restarted=restarted)
            if page.documents:
                await self._land(page, result)
        return result

    async def _next_page(self, params: CustomerPageInput, limiter: AsyncLimiter) -> tuple[ScrollPage, bool]:
        """The next page, and whether the scroll had to be opened again from the window's start."""
        scroll = self._vtex.scroll_customers
        fresh = partial(scroll, where=params.window.where(), size=params.page_size)
        # A retried attempt may have consumed the page its token pointed at: start the window again.
        if params.token is None or activity.info().attempt > 1:
            return await paced(limiter, fresh), params.token is not None
        try:
            return await paced(limiter, partial(scroll, token=params.token, size=params.page_size)), False
        except ScrollExpired:
            activity.logger.info("Master Data scroll token expired: scrolling the window again")
            return await paced(limiter, fresh), True

    async def _land(self, page: ScrollPage, result: CustomerPageResult) -> None:
        valid: list[BronzeRecord] = []
        invalid: list[QuarantineRecord] = []
        checks: Counter[str] = Counter()
        for document in page.documents:
            try:
                version = customer_version(document)
            except InvalidRecord as error:
                checks[error.code] += 1
                invalid.append(error.quarantine)
                continue
            checks.update(version.notes)
            valid.append(version.record)
        keys = [record.event_key for record in valid] + [record.event_key for record in invalid]
        landed = await self._warehouse.landed_keys([VTEX_CUSTOMERS, QUARANTINE], keys)
        new_valid = _unique([record for record in valid if record.event_key not in landed])
        new_invalid = [record for record in invalid if record.event_key not in landed]
        # A retry chooses its rows by what bronze holds, so it may land fewer than an earlier attempt did at
        # the same offsets: it lands in new streams rather than be mistaken for that earlier append.
        cursors = result.cursors if activity.info().attempt == 1 else CustomerCursors()
        result.cursors = CustomerCursors(
            customers=await self._warehouse.land_at(VTEX_CUSTOMERS, cursors.customers, new_valid),
            quarantine=await self._warehouse.quarantine_at(cursors.quarantine, new_invalid),
        )
        result.read = len(page.documents)
        result.landed = len(new_valid)
        result.quarantined = len(new_invalid)
        result.already_landed = result.read - result.landed - result.quarantined
        result.checks = dict(checks)


def _unique(records: list[BronzeRecord]) -> list[BronzeRecord]:
    """One record per event key (a scroll may serve a document twice while it is being updated)."""
    seen: dict[str, BronzeRecord] = {}
    for record in records:
        seen.setdefault(record.event_key, record)
    return list(seen.values())


def _md_time(value: str) -> str:
    """Master Data's timestamp format: UTC with milliseconds and ``Z``."""
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

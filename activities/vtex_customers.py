"""Activities of the customer sync: scroll Master Data CL a page at a time, land new versions, watermark.

Master Data keeps one scroll per account and moves it forward on every call: a page that was served but
not landed (the worker died in between) cannot be asked for again with the same token. So a retried
page, a token Master Data no longer knows (20 minutes idle) or a scroll replaced by another all lead to
the same recovery: a new scroll over the run's window, from its start. So does a token used further
than the run knows (``db.scrolls``: a run reset to an earlier page holds a token Master Data has moved
on). Pages read again are harmless: each version's event key is checked against bronze and quarantine
before landing, and what lands is appended at the workflow's stream cursors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from aiolimiter import AsyncLimiter
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.errors import external_call
from activities.heartbeats import heartbeating
from activities.pacing import RequestBudgets, first_attempt, paced, wait_alive
from clients.errors import TransientError
from clients.vtex import SCROLL_MAX_SIZE, ScrollExpired, ScrollPage, VtexClient, vtex_filter_time
from core.metrics import count_sync
from core.vtex import readable_change_time
from db.engine import database_unavailable
from db.scrolls import claim_scroll_call
from warehouse.landing import InvalidRecord, Warehouse, landed_since
from warehouse.streams import StreamCursor
from warehouse.tables import QUARANTINE, VTEX_CUSTOMERS
from warehouse.vtex_customers import CustomerVersion, customer_version


@dataclass
class CustomerWindow:
    """Changes from ``since`` (None: every document) to ``until``; ISO 8601 UTC."""

    since: str | None
    until: str

    def where(self) -> str | None:
        """Master Data's ``_where``: updated in the window, or never updated and created in it."""
        if self.since is None:
            return None
        since, until = (vtex_filter_time(datetime.fromisoformat(bound)) for bound in (self.since, self.until))
        bounds = f"between {since} AND {until}"
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
    # Calls made with the token, as far as the run knows; None: not counted (a run, or an attempt, of
    # code from before db.scrolls, during a rollout), its calls made unclaimed as they were then.
    token_calls: int | None = None


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
    token_calls: int | None = None  # calls made with the token returned (None: not counted)


# A scroll call Master Data refuses with 429 is tried again with its token, after its Retry-After, up to
# this many times in all and this many seconds of waiting (well within the page's 5-minute timeout),
# before the window is scrolled again from its start.
RATE_LIMITED_TRIES = 4
RATE_LIMITED_WAIT = 90.0
# A scroll call's claim (db.scrolls) is tried this often, this far apart, while the database is away.
CLAIM_TRIES = 4
CLAIM_RETRY_SECONDS = 5.0


class VtexCustomerActivities:
    """Holds the VTEX client and the warehouse, built once per worker."""

    def __init__(
        self,
        vtex: VtexClient,
        warehouse: Warehouse,
        budgets: RequestBudgets,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self._vtex = vtex
        self._warehouse = warehouse
        self._budgets = budgets
        self._sessions = sessions  # where each scroll call is claimed (db.scrolls)

    @activity.defn
    async def land_customer_page(self, params: CustomerPageInput) -> CustomerPageResult:
        """Read the scroll's next page and land the versions bronze does not hold yet."""
        limiter = self._budgets.at(params.requests_per_second)
        with external_call():
            async with heartbeating():
                page, restarted, calls = await self._next_page(params, limiter)
                result = CustomerPageResult(
                    page.token, not page.documents, params.cursors, restarted=restarted, token_calls=calls
                )
                if page.documents:
                    await self._land(page, result)
        count_sync(
            "customers",
            read=result.read,
            landed=result.landed,
            unchanged=result.already_landed,
            quarantined=result.quarantined,
        )
        return result

    async def _next_page(
        self, params: CustomerPageInput, limiter: AsyncLimiter
    ) -> tuple[ScrollPage, bool, int | None]:
        """The next page, whether the scroll had to be opened again from the window's start, and the calls
        made with the token it returns."""
        fresh = partial(self._vtex.scroll_customers, where=params.window.where(), size=params.page_size)
        # A retried attempt may have consumed the page its token pointed at: start the window again.
        if params.token is None or not first_attempt():
            return await paced(limiter, fresh), params.token is not None, 0
        made, waited = params.token_calls, 0.0
        for tried in range(1, RATE_LIMITED_TRIES + 1):
            if made is not None:
                claimed = await self._claim(params.token, made)
                if claimed is None:
                    activity.logger.info(
                        "Master Data scroll token used further than this run knows (a reset"
                        " run): scrolling the window again"
                    )
                    break
                made = claimed
            try:
                # Master Data moves the scroll on every call it serves, so a call that failed after the
                # server answered may have taken a page with it: such a failure opens the window again.
                async with limiter:
                    page = await self._vtex.scroll_customers(token=params.token, size=params.page_size)
                return page, False, made if page.token == params.token else 0
            except ScrollExpired:
                activity.logger.info("Master Data scroll token expired: scrolling the window again")
            except TransientError as error:
                wait = error.retry_after if error.retry_after is not None else 60.0
                if (
                    error.status_code == 429
                    and tried < RATE_LIMITED_TRIES
                    and waited + wait <= RATE_LIMITED_WAIT
                ):
                    # Refused before it was served: the scroll stayed where it was, the token goes on.
                    await wait_alive(wait, "Master Data rate limit")
                    waited += wait
                    continue
                if waited or error.status_code == 429:
                    # Still limited after waiting, or asked to wait longer than this attempt may: the
                    # attempt ends, and its retry waits the Retry-After (next_retry_delay), then scrolls
                    # anew. Scrolling anew at once would call Master Data within the wait it asked for
                    # (and a fresh scroll's own waits here could outlast the page's timeout).
                    raise
                activity.logger.info("Master Data scroll call failed (%s): scrolling the window again", error)
            break
        return await paced(limiter, fresh), True, 0

    async def _claim(self, token: str, made: int) -> int | None:
        """``claim_scroll_call``, waiting out a database briefly away: the token has not moved, so the
        page goes on with it rather than scroll the window again on the attempt's retry."""
        for tried in range(1, CLAIM_TRIES + 1):
            try:
                return await claim_scroll_call(self._sessions, token, made)
            except SQLAlchemyError as error:
                if tried == CLAIM_TRIES or not database_unavailable(error):
                    raise
                await wait_alive(CLAIM_RETRY_SECONDS, "the portal database")
        raise AssertionError("unreachable")

    async def _land(self, page: ScrollPage, result: CustomerPageResult) -> None:
        """Land the page's versions not in bronze or quarantine yet; count the checks of those only."""
        versions: dict[str, CustomerVersion | InvalidRecord] = {}
        for document in page.documents:
            try:
                version: CustomerVersion | InvalidRecord = customer_version(document)
            except InvalidRecord as error:
                version = error
            # A scroll may serve a document twice while it is updated: its first version counts.
            versions.setdefault(_key(version), version)
        landed = await self._warehouse.landed_keys(
            [VTEX_CUSTOMERS, QUARANTINE],
            list(versions),
            entity_ids=[_entity(v) for v in versions.values()],
            # No version landed before Master Data changed it: the read starts at the page's oldest
            # change (customer ids spread over every clustered block, so only days prune the read).
            landed_since=landed_since(
                readable_change_time(doc.get("updatedIn") or doc.get("createdIn")) for doc in page.documents
            ),
        )
        new = [version for key, version in versions.items() if key not in landed]
        valid = [version.record for version in new if isinstance(version, CustomerVersion)]
        invalid = [version.quarantine for version in new if isinstance(version, InvalidRecord)]
        cursors = result.cursors if first_attempt() else CustomerCursors()
        result.cursors = CustomerCursors(
            customers=await self._warehouse.land_at(VTEX_CUSTOMERS, cursors.customers, valid),
            quarantine=await self._warehouse.quarantine_at(cursors.quarantine, invalid),
        )
        result.read = len(page.documents)
        result.landed = len(valid)
        result.quarantined = len(invalid)
        result.already_landed = result.read - result.landed - result.quarantined
        result.checks = dict(Counter(_check_codes(new)))


def _key(version: CustomerVersion | InvalidRecord) -> str:
    return version.record.event_key if isinstance(version, CustomerVersion) else version.quarantine.event_key


def _entity(version: CustomerVersion | InvalidRecord) -> str | None:
    """The customer id the version lands (or is quarantined) under; None for a document without one."""
    return version.record.entity_id if isinstance(version, CustomerVersion) else version.quarantine.entity_id


def _check_codes(versions: list[CustomerVersion | InvalidRecord]) -> list[str]:
    codes: list[str] = []
    for version in versions:
        codes.extend(version.notes if isinstance(version, CustomerVersion) else [version.code])
    return codes

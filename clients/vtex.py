"""VTEX REST client: OMS orders, Feed v3, the Orders hook configuration, the catalog and Master Data CL.

Each method makes exactly one request, so a rate limit on the activities that call them is a rate
limit on requests to VTEX.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clients.errors import (
    PermanentError,
    TransientError,
    describe,
    json_object,
    raise_for_status,
    readable_body,
    retry_after_seconds,
)
from core.settings import Settings
from core.vtex import HOOK_ORDER_STATES, ORDER_ID_PATTERN, ChangeTime, OrderEvent, order_event

SERVICE = "vtex"
FEED_MAX_LOT = 10  # VTEX serves at most 10 feed items per call
# VTEX asks clients to back off about a minute after a 429 that names no delay.
RATE_LIMIT_BACKOFF_SECONDS = 60.0
# VTEX's List orders serves at most 30 pages of at most 100 orders for one filter: a creationDate window
# holding more than LIST_MAX_PAGES * LIST_MAX_PER_PAGE orders must be split, its total still says how many.
LIST_MAX_PER_PAGE = 100
LIST_MAX_PAGES = 30
SKU_IDS_MAX_PAGE_SIZE = 1000  # stockkeepingunitids serves at most 1,000 ids a page
SCROLL_MAX_SIZE = 1000  # a Master Data scroll serves at most 1,000 documents a page
MD_TOKEN_HEADER = "X-VTEX-MD-TOKEN"


class FeedItem(BaseModel):
    """A Feed v3 item: the same facts as an Orders hook, in camelCase."""

    model_config = ConfigDict(extra="allow")

    orderId: str = Field(pattern=ORDER_ID_PATTERN)
    state: str = Field(min_length=1, max_length=64)
    lastState: str | None = None
    lastChange: ChangeTime = None
    currentChange: ChangeTime = None

    @model_validator(mode="after")
    def _has_a_time(self) -> FeedItem:
        if self.currentChange is None and self.lastChange is None:
            raise ValueError("currentChange or lastChange is required")
        return self

    def event(self) -> OrderEvent:
        payload = self.model_dump(mode="json")
        return order_event(self.orderId, self.state, self.currentChange, self.lastChange, payload)


@dataclass(frozen=True)
class OrderPage:
    """One page of the OMS list: order summaries (not full documents), and how many match in all.

    Attributes:
        orders: The summaries (``orderId, creationDate, lastChange, status, totalValue, ...``).
        total: How many orders the filter matches, beyond the pages that can be read too.
        pages: How many pages of this size ``total`` makes.
    """

    orders: list[dict[str, Any]]
    total: int
    pages: int


@dataclass(frozen=True)
class ScrollPage:
    """One page of a Master Data scroll and the token that reads the next one (empty documents: done)."""

    documents: list[dict[str, Any]]
    token: str | None


class ScrollExpired(PermanentError):
    """The scroll token is unknown to Master Data: idle for 20 minutes, or replaced by a newer scroll."""


class VtexClient:
    """Calls one VTEX account's APIs with its app key and token."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._base_url = settings.vtex_api_base_url.rstrip("/")
        self._headers = {
            "X-VTEX-API-AppKey": settings.vtex_app_key,
            "X-VTEX-API-AppToken": settings.vtex_app_token.get_secret_value(),
            "Accept": "application/json",
        }
        self._timeout = settings.vtex_http_timeout_seconds

    async def get_order(self, order_id: str) -> dict[str, Any] | None:
        """The order as the OMS has it now, or None if VTEX does not know it."""
        response = await self._request("GET", f"/api/oms/pvt/orders/{order_id}")
        if response.status_code == 404:
            return None
        raise_for_status(SERVICE, response)
        return json_object(SERVICE, response, "order")

    async def list_orders(
        self, created_from: datetime, created_to: datetime, page: int, per_page: int
    ) -> OrderPage:
        """One page of the orders created between two moments (both inclusive), oldest first.

        VTEX compares creation dates to the millisecond, so windows that meet at consecutive milliseconds
        (``...59.999`` then ``...00.000``) see every order once.

        Args:
            created_from: The first creation moment (aware); sub-millisecond digits are dropped.
            created_to: The last creation moment (aware); sub-millisecond digits are dropped.
            page: From 1 to ``LIST_MAX_PAGES``.
            per_page: From 1 to ``LIST_MAX_PER_PAGE``.

        Returns:
            The page.

        Raises:
            ValueError: For a naive moment or a page or size VTEX would refuse (a bug in the caller).
            TransientError: 429, 5xx, network failure.
            PermanentError: Any other refusal, or a body that is not a list page.
        """
        if not 1 <= page <= LIST_MAX_PAGES:
            raise ValueError(f"page must be from 1 to {LIST_MAX_PAGES}: split the window instead")
        if not 1 <= per_page <= LIST_MAX_PER_PAGE:
            raise ValueError(f"per_page must be from 1 to {LIST_MAX_PER_PAGE}")
        window = f"creationDate:[{vtex_filter_time(created_from)} TO {vtex_filter_time(created_to)}]"
        params = {"f_creationDate": window, "page": page, "per_page": per_page, "orderBy": "creationDate,asc"}
        response = await self._request("GET", "/api/oms/pvt/orders", params=params)
        raise_for_status(SERVICE, response)
        try:
            body = response.json()
            orders, paging = body["list"], body["paging"]
            page_of_orders = OrderPage(
                orders=[dict(order) for order in orders],
                total=int(paging["total"]),
                pages=int(paging["pages"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            message = f"unexpected order list body ({type(error).__name__}): {describe(response)}"
            raise PermanentError(SERVICE, message, response.status_code) from error
        return page_of_orders

    async def list_sku_ids(self, page: int, page_size: int = SKU_IDS_MAX_PAGE_SIZE) -> list[int]:
        """One page (from 1) of the catalog's SKU ids, active or not; an empty list past the last page."""
        if not 1 <= page_size <= SKU_IDS_MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be from 1 to {SKU_IDS_MAX_PAGE_SIZE}")
        response = await self._request(
            "GET",
            "/api/catalog_system/pvt/sku/stockkeepingunitids",
            params={"page": page, "pagesize": page_size},
        )
        raise_for_status(SERVICE, response)
        with readable_body(SERVICE, response, "SKU id list"):
            body = response.json()
        if not isinstance(body, list) or not all(isinstance(sku, int) for sku in body):
            raise PermanentError(SERVICE, f"unexpected SKU id list: {describe(response)}")
        return list(body)

    async def get_sku(self, sku_id: int) -> dict[str, Any] | None:
        """The SKU's catalog record (``Id, ProductId, IsActive, Name, RefId, ...``), or None if it is gone."""
        return await self._get_document(f"/api/catalog/pvt/stockkeepingunit/{sku_id}")

    async def get_price(self, sku_id: int) -> dict[str, Any] | None:
        """The SKU's price (Pricing API: ``listPrice, costPrice, basePrice, ...``), or None if unpriced."""
        return await self._get_document(f"/api/pricing/prices/{sku_id}")

    async def scroll_customers(
        self, *, token: str | None = None, where: str | None = None, size: int = SCROLL_MAX_SIZE
    ) -> ScrollPage:
        """The next page of a Master Data v1 scroll over entity ``CL`` (customers), every field.

        Without ``token`` a new scroll opens (Master Data keeps one per account: the previous one dies);
        with it, the scroll goes on where its last page ended.

        Raises:
            ScrollExpired: The token is no longer served; open a new scroll.
            TransientError: 429 (with its ``Retry-After``), 5xx, network failure.
            PermanentError: Any other refusal, such as a ``_where`` Master Data cannot parse.
        """
        if not 1 <= size <= SCROLL_MAX_SIZE:
            raise ValueError(f"size must be from 1 to {SCROLL_MAX_SIZE}")
        params: dict[str, Any] = {"_size": size, "_fields": "_all"}
        if token is not None:
            params["_token"] = token
        elif where:
            params["_where"] = where
        response = await self._request("GET", "/api/dataentities/CL/scroll", params=params)
        if token is not None and response.status_code in (400, 404):
            raise ScrollExpired(SERVICE, f"scroll token refused: {describe(response)}", response.status_code)
        raise_for_status(SERVICE, response)
        with readable_body(SERVICE, response, "scroll page"):
            body = response.json()
            if not isinstance(body, list):
                raise TypeError(f"a JSON {type(body).__name__}, not a list")
            documents = [dict(document) for document in body]
        return ScrollPage(documents=documents, token=response.headers.get(MD_TOKEN_HEADER) or token)

    async def read_feed(self, max_lot: int = FEED_MAX_LOT) -> list[dict[str, Any]]:
        """The next Feed v3 items; each stays invisible to other readers until committed or timed out."""
        response = await self._request(
            "GET", "/api/orders/feed", params={"maxlot": min(max_lot, FEED_MAX_LOT)}
        )
        raise_for_status(SERVICE, response)
        with readable_body(SERVICE, response, "feed items"):
            return [dict(item) for item in response.json() or []]

    async def commit_feed(self, handles: list[str]) -> None:
        """Remove the items with these handles from the feed for good."""
        response = await self._request("POST", "/api/orders/feed", json={"handles": handles})
        raise_for_status(SERVICE, response)

    async def save_hook_config(self, url: str, headers: dict[str, str]) -> dict[str, Any]:
        """Save (or re-save) the Orders hook; VTEX pings ``url`` and refuses the config if it fails."""
        body = {
            "filter": {"type": "FromWorkflow", "status": list(HOOK_ORDER_STATES)},
            "hook": {"url": url, "headers": headers},
        }
        response = await self._request("POST", "/api/orders/hook/config", json=body)
        raise_for_status(SERVICE, response)
        with readable_body(SERVICE, response, "hook config"):
            return dict(response.json() or {})

    async def _get_document(self, path: str) -> dict[str, Any] | None:
        response = await self._request("GET", path)
        if response.status_code == 404:
            return None
        raise_for_status(SERVICE, response)
        return json_object(SERVICE, response, f"body at {path}")

    async def _request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method, self._base_url + path, params=params, json=json, headers=self._headers,
                timeout=self._timeout,
            )  # fmt: skip
        except httpx.TransportError as error:
            raise TransientError(SERVICE, f"{type(error).__name__}: {error}") from error
        if response.status_code == 429 and retry_after_seconds(response) is None:
            raise TransientError(SERVICE, "HTTP 429: rate limited", 429, RATE_LIMIT_BACKOFF_SECONDS)
        return response


def vtex_filter_time(moment: datetime) -> str:
    """A moment as VTEX's filters take it (OMS list, Master Data ``_where``): UTC, milliseconds, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"an aware datetime is needed, got {moment!r}")
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"

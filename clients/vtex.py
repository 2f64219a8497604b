"""VTEX REST client: OMS orders, Feed v3 and the Orders hook configuration.

Each method makes exactly one request, so a rate limit on the activities that call them is a rate
limit on requests to VTEX.
"""

from __future__ import annotations

from typing import Any

import httpx

from clients.errors import TransientError, raise_for_status, retry_after_seconds
from core.settings import Settings
from core.vtex import HOOK_ORDER_STATES

SERVICE = "vtex"
FEED_MAX_LOT = 10  # VTEX serves at most 10 feed items per call
# VTEX asks clients to back off about a minute after a 429 that names no delay.
RATE_LIMIT_BACKOFF_SECONDS = 60.0


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
        return dict(response.json())

    async def read_feed(self, max_lot: int = FEED_MAX_LOT) -> list[dict[str, Any]]:
        """The next Feed v3 items; each stays invisible to other readers until committed or timed out."""
        response = await self._request(
            "GET", "/api/orders/feed", params={"maxlot": min(max_lot, FEED_MAX_LOT)}
        )
        raise_for_status(SERVICE, response)
        return list(response.json() or [])

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
        return dict(response.json() or {})

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

"""Zoho CRM REST client: OAuth refresh-token flow with one token shared through the database."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

import httpx

from clients.errors import (
    PermanentError,
    TransientError,
    as_code,
    error_code,
    raise_for_status,
    readable_body,
)
from core.settings import Settings
from core.timeutil import utcnow
from core.tokens import StoredToken, TokenStore

SERVICE = "zoho"
REFRESH_LEASE = timedelta(seconds=30)
LEASE_WAIT_SECONDS = 0.25
TOKEN_QUOTA_BACKOFF_SECONDS = 60.0
# How long a call waits for another process's refresh (one takes about a second), within the steps'
# timeouts; then it fails, to be retried, rather than be cut off by its own timeout.
LEASE_WAIT_LIMIT = 10.0
# A token due for a refresh (within the margin) but valid this much longer is used while another process
# refreshes it, or while a refused refresh holds the others off.
STILL_VALID = timedelta(seconds=30)
# 401 codes a new token cannot cure (the refresh token's grant lacks the scope, the user the permission):
# refreshing for them would spend the 10-tokens-per-10-minutes quota on every call, and hide the refusal.
NOT_THE_TOKEN = frozenset({"OAUTH_SCOPE_MISMATCH", "NO_PERMISSION"})

# Looking for the lead a deal was converted from: conversions since a little before the deal's creation
# (clocks differ), in pages of Zoho's largest size, a few at most (conversions are a few a minute).
CONVERSION_LOOKBACK = timedelta(minutes=10)
CONVERSION_PAGE_SIZE = 200
CONVERSION_MAX_PAGES = 5


class ZohoClient:
    """Reads and updates Zoho CRM records."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings, tokens: TokenStore) -> None:
        self._http = http
        self._settings = settings
        self._tokens = tokens  # shared by every process (``db.tokens.DatabaseTokens``)
        self._token_name = f"zoho:{settings.zoho_client_id}"
        self._cached: StoredToken | None = None

    async def get_lead(self, lead_id: str) -> dict[str, Any] | None:
        """The lead's fields, or None if Zoho has no such lead."""
        return await self._get_record("Leads", lead_id)

    async def get_deal(self, deal_id: str) -> dict[str, Any] | None:
        """The deal's fields, or None if Zoho has no such deal."""
        return await self._get_record("Deals", deal_id)

    async def _get_record(self, module: str, record_id: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"/{module}/{record_id}")
        if response.status_code == 204:  # Zoho's answer for an id it does not know
            return None
        with readable_body(SERVICE, response, f"{module} record"):
            records = response.json().get("data") or []
            return whole_characters(dict(records[0])) if records else None

    async def update_lead(self, lead_id: str, fields: dict[str, Any]) -> None:
        """Update a lead without firing Zoho workflow rules (which would call our webhook again)."""
        body = {"data": [{"id": lead_id, **fields}], "trigger": []}
        response = await self._request("PUT", f"/Leads/{lead_id}", json=body)
        with readable_body(SERVICE, response, "lead update answer"):
            result = (response.json().get("data") or [{}])[0]
            succeeded = result.get("status") == "success"
        if not succeeded:
            # Only Zoho's code: the result's message and details echo the fields sent (e-mail, phone).
            code = as_code(result.get("code")) or "(no code)"
            raise PermanentError(SERVICE, f"lead update refused: {code}", response.status_code)

    async def converted_lead_of(self, deal_id: str, created: datetime) -> str | None:
        """The lead whose conversion created the deal, or None.

        Zoho keeps the link on the lead only (``$converted_detail.deal``), so this lists the leads
        converted since shortly before the deal was created (``converted=true``, ``If-Modified-Since``),
        oldest first, a few pages at most.
        """
        since = (created - CONVERSION_LOOKBACK).isoformat(timespec="seconds")
        params = {
            "converted": "true",
            "fields": "id,$converted_detail",
            "sort_by": "Modified_Time",
            "sort_order": "asc",
            "per_page": str(CONVERSION_PAGE_SIZE),
        }
        for page in range(1, CONVERSION_MAX_PAGES + 1):
            response = await self._request(
                "GET", "/Leads", params={**params, "page": str(page)}, headers={"If-Modified-Since": since}
            )
            if response.status_code == 204:  # none converted since
                return None
            with readable_body(SERVICE, response, "converted lead list"):
                body = response.json()
                for lead in body.get("data") or []:
                    detail = lead.get("$converted_detail") or {}
                    if str(detail.get("deal") or "") == deal_id:
                        return str(lead["id"])
                if not (body.get("info") or {}).get("more_records"):
                    return None
        return None

    async def _request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = f"{self._settings.zoho_api_base_url}/crm/{self._settings.zoho_api_version}{path}"

        async def send(token: str) -> httpx.Response:
            authorized = {**(headers or {}), **_auth(token)}
            return await self._http.request(method, url, json=json, params=params, headers=authorized)

        token = await self.access_token()
        response = await send(token)
        if response.status_code == 401 and error_code(response) not in NOT_THE_TOKEN:
            # The shared token was revoked or expired early: replace it once, then give up.
            response = await send(await self.access_token(rejected=token))
        raise_for_status(SERVICE, response)
        return response

    async def access_token(self, rejected: str | None = None) -> str:
        """A valid access token, refreshed by at most one process at a time.

        Args:
            rejected: a token the API just refused; it is replaced even if not yet expired.
        """
        margin = timedelta(seconds=self._settings.zoho_token_refresh_margin_seconds)
        cached = self._cached
        if cached and cached.access_token != rejected and cached.expires_at - margin > utcnow():
            return cached.access_token  # the shared token, already read from the database
        deadline = asyncio.get_running_loop().time() + LEASE_WAIT_LIMIT
        while True:
            stored = await self._tokens.read(self._token_name)
            now = utcnow()
            if stored and stored.access_token != rejected and stored.expires_at - margin > now:
                self._cached = stored
                return stored.access_token
            if await self._tokens.take_refresh_lease(
                self._token_name,
                now,
                REFRESH_LEASE,
                stale_before=now + margin,
                rejected=rejected,
            ):
                return await self._refresh()
            if stored and stored.access_token != rejected and stored.expires_at - STILL_VALID > now:
                return stored.access_token  # due for a refresh another process makes, but still valid
            if asyncio.get_running_loop().time() > deadline:
                raise TransientError(
                    SERVICE, "waited for another process to refresh the token", retry_after=LEASE_WAIT_LIMIT
                )
            await asyncio.sleep(LEASE_WAIT_SECONDS)

    async def _refresh(self) -> str:
        # The secrets go in a form body, as Zoho accepts them: URLs end up in access logs and traces.
        settings = self._settings
        form = {
            "grant_type": "refresh_token",
            "client_id": settings.zoho_client_id,
            "client_secret": settings.zoho_client_secret.get_secret_value(),
            "refresh_token": settings.zoho_refresh_token.get_secret_value(),
        }
        try:
            response = await self._http.post(f"{settings.zoho_accounts_url}/oauth/v2/token", data=form)
            if response.status_code == 400 and "too many requests" in response.text.lower():
                # Over the 10-tokens-per-10-minutes quota: waiting is the only cure.
                raise TokenQuotaExceeded(
                    SERVICE, "token refresh quota exceeded", 400, TOKEN_QUOTA_BACKOFF_SECONDS
                )
            raise_for_status(SERVICE, response)
            with readable_body(SERVICE, response, "token answer"):
                body = response.json()
                if not isinstance(body, dict) or "access_token" not in body:
                    # Zoho answers bad credentials with 200 and an "error" key; only a code-like one is kept.
                    code = as_code(body.get("error")) if isinstance(body, dict) else ""
                    raise PermanentError(SERVICE, f"token refresh refused: {code or '(no code)'}")
                lifetime = timedelta(seconds=int(body.get("expires_in", 3600)))
        except TokenQuotaExceeded:
            # The lease is kept for the backoff: the processes waiting for a token do not each ask the
            # token endpoint again at once (each asking would only prolong the refusal).
            held = utcnow() + timedelta(seconds=TOKEN_QUOTA_BACKOFF_SECONDS)
            await self._tokens.release_lease(self._token_name, held_until=held)
            raise
        except BaseException:
            await self._tokens.release_lease(self._token_name)
            raise
        expires_at = utcnow() + lifetime
        await self._tokens.store(self._token_name, body["access_token"], expires_at)
        self._cached = StoredToken(access_token=str(body["access_token"]), expires_at=expires_at)
        return self._cached.access_token


class TokenQuotaExceeded(TransientError):
    """Zoho refused a token refresh: over its 10 tokens per refresh token in 10 minutes."""


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {token}"}


# Half of a UTF-16 surrogate pair, which Zoho's JSON can carry (a text cut inside an emoji): no UTF-8
# encoder takes it, so a record holding one could never be passed to a workflow, and its lead or deal
# would be retried for ever.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def whole_characters(value: Any) -> Any:
    """``value`` (a record read from JSON) with each lone surrogate in its texts and keys replaced by
    U+FFFD, the replacement character."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {whole_characters(key): whole_characters(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_characters(item) for item in value]
    return value

"""Dependencies routes declare: settings, Temporal, database sessions, the warehouse, and each caller's
authentication.

Each is ``async``, though none waits: FastAPI runs a plain function dependency on its thread pool, a thread
hop per dependency per request that costs latency and, with a thread per concurrent request, memory.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.body import json_object, parse_model, read_limited
from api.relay import ReportRelay
from api.temporal import Intake
from api.vtex_hook import OrderHook
from core.settings import Settings
from warehouse.views import WarehouseReads


async def request_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def get_intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


async def get_relay(request: Request) -> ReportRelay:
    relay: ReportRelay = request.app.state.relay
    return relay


async def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


async def get_warehouse_reads(request: Request) -> WarehouseReads:
    """The warehouse client of the read routes, opened at the first read.

    Only those routes use BigQuery: its client and pyarrow would be most of an API process's memory, so
    they are loaded when a read first needs them, and a replica that only takes webhooks never loads them.
    Loading them takes a moment and blocks: it runs on a thread, so webhooks meanwhile are not held up.
    """
    state = request.app.state
    async with state.warehouse_reads_opening:
        if state.warehouse_reads is None:
            state.warehouse_reads = await asyncio.to_thread(open_warehouse_reads, state.settings)
    reads: WarehouseReads = state.warehouse_reads
    return reads


def open_warehouse_reads(settings: Settings) -> WarehouseReads:
    from warehouse.reads import BigQueryReads

    return BigQueryReads(settings)


SettingsDep = Annotated[Settings, Depends(request_settings)]
TemporalClientDep = Annotated[Client, Depends(get_temporal)]
IntakeDep = Annotated[Intake, Depends(get_intake)]
RelayDep = Annotated[ReportRelay, Depends(get_relay)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
WarehouseReadsDep = Annotated[WarehouseReads, Depends(get_warehouse_reads)]


def check_secret(expected: Sequence[SecretStr], presented: str | None, header: str) -> None:
    """Accept any of the configured secrets (the current one, and the previous one while it rotates).

    Distinct answers: not configured (503), header missing (401), wrong secret (401).
    """
    accepted = [secret.get_secret_value().encode() for secret in expected if secret.get_secret_value()]
    if not accepted:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "webhook secret is not configured")
    if presented is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing {header} header")
    # Compare with every secret, not stopping at a match: the time taken does not tell which matched.
    matches = [hmac.compare_digest(presented.encode(), secret) for secret in accepted]
    if not any(matches):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid {header}")


async def verify_zoho_secret(request: Request, settings: SettingsDep) -> None:
    """Zoho webhooks carry our shared secret in a static custom header."""
    header = settings.zoho_webhook_secret_header
    secrets = (settings.zoho_webhook_secret, settings.zoho_webhook_previous_secret)
    check_secret(secrets, request.headers.get(header), header)


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


async def verify_read_token(request: Request, settings: SettingsDep) -> None:
    """The internal read API takes ``Authorization: Bearer <token>``."""
    check_secret([settings.read_api_token], bearer_token(request), "Authorization")


VerifiedHook = tuple[OrderHook, dict[str, Any]]
# VTEX's ping is ``{"hookConfig": "ping"}``: a request without the secret is read no further than this.
PING_MAX_BYTES = 1024


async def verified_order_hook(request: Request, settings: SettingsDep) -> VerifiedHook | None:
    """The Orders hook and its raw body, once it proves to come from our VTEX store; None for the ping.

    VTEX does not sign hooks. It sends the static headers saved with the hook configuration (our
    secret) and names the store in ``Origin.Account`` (and the app key in ``Origin.Key``); both are
    checked. The ping that saving the configuration sends comes without the secret: only a request
    without the header has its body read before the secret is checked, and only to recognise the ping.
    A wrong secret is refused before its body is parsed.
    """
    header = settings.vtex_hook_secret_header
    secrets = (settings.vtex_hook_secret, settings.vtex_hook_previous_secret)
    presented = request.headers.get(header)
    if presented is None and await _is_ping(request):
        return None
    check_secret(secrets, presented, header)
    body = json_object(await read_limited(request, settings.webhook_max_body_bytes))
    if body.get("hookConfig") == "ping":
        return None
    hook = parse_model(OrderHook, body)
    if not hmac.compare_digest(hook.origin.account.encode(), settings.vtex_account.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, f"Origin.Account {hook.origin.account!r} is not ours"
        )
    expected_key = settings.vtex_hook_origin_key
    if expected_key and not hmac.compare_digest((hook.origin.key or "").encode(), expected_key.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Origin.Key is not the expected app key")
    return hook, body


async def _is_ping(request: Request) -> bool:
    """Whether an unauthenticated body is VTEX's ping; anything else (too long, not JSON) is not."""
    try:
        body = json_object(await read_limited(request, PING_MAX_BYTES))
    except HTTPException:
        return False
    return body.get("hookConfig") == "ping"


ZohoSecretDep = Depends(verify_zoho_secret)
ReadTokenDep = Depends(verify_read_token)
VerifiedOrderHookDep = Annotated[VerifiedHook | None, Depends(verified_order_hook)]

"""Dependencies routes declare: settings, the Temporal client, database sessions, secret checks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from core.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalClientDep = Annotated[Client, Depends(get_temporal)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]


def check_secret(expected: str, presented: str | None, header: str) -> None:
    """Distinct answers: not configured (503), header missing (401), wrong secret (401)."""
    if not expected:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "webhook secret is not configured")
    if presented is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"missing {header} header")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid {header}")


def verify_zoho_secret(request: Request, settings: SettingsDep) -> None:
    """Zoho webhooks carry our shared secret in a static custom header."""
    header = settings.zoho_webhook_secret_header
    check_secret(settings.zoho_webhook_secret.get_secret_value(), request.headers.get(header), header)


def verify_read_token(request: Request, settings: SettingsDep) -> None:
    """The internal read API takes ``Authorization: Bearer <token>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token if scheme.lower() == "bearer" and token else None
    check_secret(settings.read_api_token.get_secret_value(), presented, "Authorization")


ZohoSecretDep = Depends(verify_zoho_secret)
ReadTokenDep = Depends(verify_read_token)

"""The OpenAPI document: request bodies the routes read themselves, and how each caller authenticates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from core.settings import Settings

ZOHO_SECRET = "ZohoWebhookSecret"
VTEX_SECRET = "VtexHookSecret"
READ_TOKEN = "ReadApiToken"
DEALER_SECRET = "DealerWebhookSecret"


def security(scheme: str) -> dict[str, Any]:
    """``openapi_extra`` of a route that needs ``scheme``."""
    return {"security": [{scheme: []}]}


def document(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's document plus the security schemes, whose header names are settings."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {
            ZOHO_SECRET: {
                "type": "apiKey",
                "in": "header",
                "name": settings.zoho_webhook_secret_header,
                "description": "The shared secret Zoho sends in a custom header of the webhook.",
            },
            VTEX_SECRET: {
                "type": "apiKey",
                "in": "header",
                "name": settings.vtex_hook_secret_header,
                "description": "The secret header saved with the VTEX Orders hook configuration.",
            },
            DEALER_SECRET: {
                "type": "apiKey",
                "in": "header",
                "name": settings.dealer_webhook_secret_header,
                "description": "The dealer's own secret (HUB_DEALER_WEBHOOK_SECRETS).",
            },
            READ_TOKEN: {"type": "http", "scheme": "bearer", "description": "HUB_READ_API_TOKEN"},
        }
        # Models that request bodies refer to (api.body.request_body) join the shared schemas.
        schemas = components.setdefault("schemas", {})
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                schemas.update(operation.pop("x-schemas", {}))
        app.openapi_schema = schema
        return schema

    return openapi

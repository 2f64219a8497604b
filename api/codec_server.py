"""The codec server: support staff read decoded payloads in the Temporal Web UI and CLI.

Histories stay encrypted at rest; the UI (in the staff member's browser) or ``temporal --codec-endpoint``
sends the payloads it shows here and displays what comes back. It speaks Temporal's remote codec
protocol: ``POST /decode`` and ``POST /encode`` with ``{"payloads": [...]}`` in protobuf JSON (bytes
as base64) both ways, and the namespace in ``X-Namespace``.

    uvicorn --factory api.codec_server:app --port 8234
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, status
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from api.body import read_limited
from core.codec import PayloadKeyError
from core.settings import CodecServerSettings, Settings
from core.temporal import payload_codec
from core.tracing import start_tracing, trace_requests, tracing_on

# The UI sends the payloads of what it shows; Temporal refuses payloads over 2 MB, so this is generous.
MAX_BODY_BYTES = 16 * 1024 * 1024

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


def create_codec_app(settings: Settings | None = None) -> FastAPI:
    """The codec server for the configured key ring and namespace.

    Raises:
        RuntimeError: in production without ``codec_server_token``: it would decrypt for anyone.
    """
    settings = settings or CodecServerSettings()
    token = settings.codec_server_token.get_secret_value()
    if settings.environment == "production" and not token:
        raise RuntimeError("the codec server refuses to start in production without HUB_CODEC_SERVER_TOKEN")
    codec = payload_codec(settings)

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if not token:
            return  # optional outside production, where the local stack serves it on 127.0.0.1 only
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def our_namespace(x_namespace: Annotated[str | None, Header()] = None) -> None:
        # The key ring belongs to one namespace; the UI and the CLI always say which one they show.
        namespace = settings.temporal_namespace
        if x_namespace is not None and x_namespace != namespace:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this codec server serves {namespace!r}")

    codec_routes = APIRouter(dependencies=[Depends(authorized), Depends(our_namespace)])

    @codec_routes.post("/decode")
    async def decode(request: Request) -> dict[str, Any]:
        """Decrypt the payloads; ones that were never encrypted come back as they are."""
        return await transform(request, codec.decode)

    @codec_routes.post("/encode")
    async def encode(request: Request) -> dict[str, Any]:
        """Encrypt the payloads with the active key (the UI's signal and start inputs)."""
        return await transform(request, codec.encode)

    app = FastAPI(title="Payload codec server", summary="Temporal's remote codec protocol")
    if tracing_on():
        trace_requests(app)
    app.include_router(codec_routes)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    # The browser calls this server from the UI's origin, with the UI user's token when the UI passes it.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.codec_server_cors_origins,
        allow_methods=["POST"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
        max_age=600,
    )
    return app


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def transform(request: Request, apply: Transform) -> dict[str, Any]:
    """Run the payloads of the request body through ``apply``: one clear 400 for each fault."""
    body = await read_limited(request, MAX_BODY_BYTES)
    try:
        payloads = json_format.Parse(body.decode(), Payloads())
    except (json_format.ParseError, UnicodeDecodeError, RecursionError) as error:
        # Not UTF-8, or nested past the JSON reader's depth, is as wrong as any other body.
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"not a payloads JSON body: {error}") from error
    try:
        result = Payloads(payloads=await apply(payloads.payloads))
    except PayloadKeyError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from error
    answer: dict[str, Any] = json_format.MessageToDict(result)
    answer.setdefault("payloads", [])  # protobuf JSON leaves empty lists out
    return answer


def app() -> FastAPI:
    """Factory for ``uvicorn --factory api.codec_server:app``."""
    start_tracing("hub-codec-server", http_clients=False)  # the OTEL_* variables say whether
    return create_codec_app()

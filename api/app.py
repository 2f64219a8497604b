"""The webhook API: ``uvicorn api.app:app`` or ``create_app(settings)`` in tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.client import Client

from api.metrics import ACK_SECONDS, WEBHOOKS
from api.routes import health, leads, opportunities, vtex, zoho
from core.settings import Settings, get_settings
from db.engine import create_engine, session_factory

WEBHOOK_PREFIX = "/webhooks/"


async def metrics(_: Request) -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def outcome_of(status_code: int) -> str:
    if status_code < 300:
        return "accepted"
    return "rejected" if status_code < 500 else "unavailable"


def create_app(settings: Settings | None = None, temporal: Client | None = None) -> FastAPI:
    """The API with one Temporal client and one database engine, opened and closed by the lifespan."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Lazy: the API starts (and answers 503) while Temporal is down, and connects when it is back.
        app.state.temporal = temporal or await Client.connect(
            settings.temporal_address, namespace=settings.temporal_namespace, lazy=True
        )
        engine = create_engine(settings.database_url)
        app.state.sessions = session_factory(engine)
        yield
        await engine.dispose()

    app = FastAPI(title="Integrations hub", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(zoho.router)
    app.include_router(leads.router)
    app.include_router(opportunities.webhooks)
    app.include_router(opportunities.reads)
    app.include_router(vtex.router)
    app.include_router(health.router)
    app.add_route("/metrics", metrics, include_in_schema=False)

    @app.middleware("http")
    async def measure_webhooks(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not request.url.path.startswith(WEBHOOK_PREFIX):
            return await call_next(request)
        source = request.url.path.removeprefix(WEBHOOK_PREFIX).replace("/", "_")
        started = time.perf_counter()
        response = await call_next(request)
        ACK_SECONDS.labels(source).observe(time.perf_counter() - started)
        WEBHOOKS.labels(source, outcome_of(response.status_code)).inc()
        return response

    return app


def app() -> FastAPI:
    """Factory for ``uvicorn --factory api.app:app``."""
    return create_app()

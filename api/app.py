"""The webhook API: ``uvicorn api.app:app`` or ``create_app(settings)`` in tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import Client

from api.body import validation_message
from api.deps import bearer_token, check_secret
from api.metrics import UNKNOWN_SOURCE, WebhookMetrics, webhook_series
from api.openapi import document
from api.relay import ReportRelay
from api.routes import dealers, health, leads, opportunities, vtex, warehouse_reads
from api.temporal import Intake, connect_for_api
from core.background import in_background
from core.logs import configure_logging
from core.memory import give_back_periodically
from core.metrics import start_at_zero
from core.production import api_tls_problem
from core.settings import ApiSettings, Settings, get_settings
from core.tracing import start_tracing, trace_requests, tracing_on
from db.engine import database_unavailable, engine_for, session_factory

log = logging.getLogger("api")

WEBHOOK_PREFIX = "/webhooks/"


async def metrics(request: Request) -> Response:
    """Prometheus exposition of this process's metrics, or of every API process when several run.

    With ``metrics_token`` set the scraper must send it as a bearer token (401 otherwise); the endpoint
    shares the public API's port. Without one it is open, which production refuses to start with.
    """
    settings: Settings = request.app.state.settings
    if settings.metrics_token.get_secret_value():
        check_secret([settings.metrics_token], bearer_token(request), "Authorization")
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def invalid_request(_: Request, error: Exception) -> JSONResponse:
    """Path and query parameters that fail validation: 422 naming them, in the same shape as every error."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": validation_message(error.errors(), "request")}, status_code=422)


async def database_error(request: Request, error: Exception) -> Response:
    """The portal database could not serve the request (down, out of connections, busy): 503 with
    Retry-After, so a webhook's sender sends it again and nothing it reported is lost. Any other database
    error is a bug: raised on, a 500 with its stack in the log."""
    if not database_unavailable(error):
        raise error
    route = request.scope.get("route")
    where = route.path if isinstance(route, APIRoute) else "?"
    # The error's class only: its text names tables and statements, of no use to the sender.
    log.warning("portal database unavailable for %s %s: %s", request.method, where, type(error).__name__)
    settings: Settings = request.app.state.settings
    return JSONResponse(
        {"detail": "the portal database is unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": str(settings.temporal_unavailable_retry_after_seconds)},
    )


def create_app(settings: Settings | None = None, temporal: Client | None = None) -> FastAPI:
    """The API with one Temporal client and one database engine, opened and closed by the lifespan."""
    settings = settings or get_settings(ApiSettings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = temporal or await connect_for_api(settings)
        app.state.temporal = client
        app.state.intake = Intake(client, settings)
        engine = engine_for(settings)
        app.state.sessions = session_factory(engine)
        app.state.relay = ReportRelay(client, settings, app.state.sessions)
        app.state.warehouse_reads = None  # opened by the first read (api.deps.get_warehouse_reads)
        app.state.warehouse_reads_opening = asyncio.Lock()
        try:
            async with (
                in_background(app.state.relay.sweep_forever()),
                in_background(give_back_periodically(settings.memory_trim_seconds)),
            ):
                yield
        finally:
            if app.state.warehouse_reads is not None:
                await app.state.warehouse_reads.aclose()
            await engine.dispose()

    app = FastAPI(title="Integrations hub", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    webhooks = (leads.webhooks, dealers.webhooks, opportunities.webhooks, vtex.router)
    reads = (
        leads.reads,
        opportunities.reads,
        warehouse_reads.customers,
        warehouse_reads.orders,
        warehouse_reads.dealers,
    )
    for router in (*webhooks, *reads, health.router):
        app.include_router(router)
    app.add_route("/metrics", metrics, include_in_schema=False)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(SQLAlchemyError, database_error)
    app.openapi = document(app, settings)  # type: ignore[method-assign]
    sources = {
        route.path: route.path.removeprefix(WEBHOOK_PREFIX).replace("/", "_")
        for router in webhooks
        for route in router.routes
        if isinstance(route, APIRoute)
    }
    start_at_zero(webhook_series([*sources.values(), UNKNOWN_SOURCE]))
    if tracing_on():
        trace_requests(app)
    app.add_middleware(WebhookMetrics, prefix=WEBHOOK_PREFIX, sources=sources)
    return app


def app() -> FastAPI:
    """Factory for ``uvicorn --factory api.app:app`` (``python -m api`` adds the TLS and keep-alive
    settings: run bare, uvicorn closes idle connections after its own 5 s).

    Refuses in production without TLS settings or a TLS-terminating proxy, however uvicorn was started.
    Logging is set up here, the one place every API process passes (uvicorn has set up its own loggers
    by now; their lines join ours as JSON).
    """
    settings = get_settings(ApiSettings)
    configure_logging(settings.log_level)
    if problem := api_tls_problem(settings):
        raise RuntimeError(problem)
    # Each uvicorn process its own, before its Temporal client connects.
    start_tracing("hub-api", http_clients=False)
    return create_app(settings)

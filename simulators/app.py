"""The simulators app: Zoho CRM, VTEX, dealer CRMs (REST, SOAP), the outbound-event receiver, control API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response

from simulators import (
    dealer_adf,
    dealer_rest,
    dealer_soap,
    events,
    faults,
    vtex,
    vtex_catalog,
    vtex_customers,
    zoho,
    zoho_conversion,
    zoho_deals,
)
from simulators.config import CLIENT_KEEPALIVE_SECONDS, SimulatorConfig
from simulators.state import Clock, EarlyReply, SimulatorState


def create_app(config: SimulatorConfig | None = None, *, clock: Clock = time.monotonic) -> FastAPI:
    """Build a simulators app with its own, empty, in-memory state.

    Args:
        config: Addresses and credentials; defaults match the hub's local settings.
        clock: Monotonic seconds, for token expiry, the token rate window, VTEX feed visibility, OMS
            request times and Master Data scroll idling; tests pass a fake one.

    Returns:
        The app. Its state is reachable with :func:`simulators.state.app_state`.
    """
    config = config or SimulatorConfig()
    state = SimulatorState(config, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The simulator posts webhooks (and VTEX hook pings) straight to the project's API: no proxies
        # from the environment.
        inbox = dealer_adf.start_inbox(state)
        limits = httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE_SECONDS)
        async with httpx.AsyncClient(
            timeout=config.webhook_timeout_seconds, trust_env=False, limits=limits
        ) as http:
            state.http = http
            try:
                yield
            finally:
                state.http = None
                if inbox is not None:
                    inbox.stop()

    app = FastAPI(title="Integration simulators", lifespan=lifespan)
    app.state.simulator = state
    app.add_exception_handler(EarlyReply, _early_reply)
    for router in (
        zoho.router,
        zoho.control_router,
        zoho_deals.router,
        zoho_deals.control_router,
        zoho_conversion.router,
        zoho_conversion.control_router,
        vtex.router,
        vtex.control_router,
        vtex_catalog.router,
        vtex_catalog.control_router,
        vtex_customers.router,
        vtex_customers.control_router,
        dealer_rest.router,
        dealer_soap.router,
        dealer_adf.router,
        events.router,
        events.control_router,
        faults.router,
    ):
        app.include_router(router)
    return app


async def _early_reply(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, EarlyReply)
    return exc.response

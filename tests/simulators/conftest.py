"""Fixtures: a simulators app per test, reached in-process or over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from simulators import SimulatorConfig, create_app
from simulators.config import SERVER_KEEPALIVE_SECONDS

ZOHO_CREDENTIALS = {
    "grant_type": "refresh_token",
    "client_id": "test-client",
    "client_secret": "test-client-secret",
    "refresh_token": "test-refresh-token",
}
EVENT_SECRET = "whsec_dGVzdC1ldmVudC1zaWduaW5nLXNlY3JldA=="
VTEX_HEADERS = {
    "X-VTEX-API-AppKey": "vtexappkey-teststore-TEST",
    "X-VTEX-API-AppToken": "test-vtex-app-token",
}
VTEX_HOOK_SECRET = "test-vtex-hook-secret"


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(**overrides: object) -> SimulatorConfig:
    """A config with test credentials, independent of any SIM_* variable in the environment."""
    values: dict[str, object] = {
        "public_base_url": "http://sim.test",
        "api_url": "http://api.test",
        "zoho_webhook_secret": "test-webhook-secret",
        "zoho_client_id": ZOHO_CREDENTIALS["client_id"],
        "zoho_client_secret": ZOHO_CREDENTIALS["client_secret"],
        "zoho_refresh_token": ZOHO_CREDENTIALS["refresh_token"],
        "event_signing_secret": EVENT_SECRET,
        "vtex_account": "teststore",
        "vtex_app_key": VTEX_HEADERS["X-VTEX-API-AppKey"],
        "vtex_app_token": VTEX_HEADERS["X-VTEX-API-AppToken"],
        "vtex_hook_secret": VTEX_HOOK_SECRET,
        "seed": 7,
    }
    values.update(overrides)
    return SimulatorConfig.model_validate(values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> FastAPI:
    return create_app(make_config(), clock=clock)


@asynccontextmanager
async def in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ``app``; its lifespan runs as it would under uvicorn."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim.test") as http,
    ):
        yield http


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of the test's app."""
    async with in_process(app) as http:
        yield http


async def zoho_token(client: httpx.AsyncClient) -> str:
    response = await client.post("/zoho/oauth/v2/token", params=ZOHO_CREDENTIALS)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


@contextmanager
def live_server(build: Callable[[str], FastAPI]) -> Iterator[str]:
    """Serve an app with uvicorn in a thread on a free 127.0.0.1 port.

    Args:
        build: Makes the app, given the base URL it will be served at.

    Yields:
        The base URL.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        build(base_url),
        log_level="warning",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=SERVER_KEEPALIVE_SECONDS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

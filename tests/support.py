"""Helpers for tests that drive real servers: free ports, in-process uvicorn, polling."""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.testing import WorkflowEnvironment

from core.codec import KEY_BYTES
from core.settings import Settings

T = TypeVar("T")
API_KEEP_ALIVE = Settings.model_fields["api_keep_alive_seconds"].default


def free_port() -> int:
    """A port nothing listens on right now: for an address that must not answer. A server's port comes
    from ``reserved_port`` instead (another test process may take a port let go before it binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return port_of(sock)


def reserved_port() -> socket.socket:
    """A socket bound to a free 127.0.0.1 port and held until ``serve`` listens on it, so the URL can be
    handed out before the server starts and no other test process can take the port meanwhile."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(app: Any, listen_on: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on 127.0.0.1 for the duration of the block, on ``listen_on``
    (from ``reserved_port``) or a new port; yields its base URL."""
    sock = listen_on or reserved_port()
    # As `python -m api` does: longer than httpx keeps an idle connection (5 s), so a client never sends
    # on a connection the server is closing (uvicorn's default is 5 s too).
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=API_KEEP_ALIVE)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port_of(sock)}"
    finally:
        server.should_exit = True
        await task


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = 30.0, interval: float = 0.1
) -> T:
    """Poll ``check`` until it returns something other than None/False, or fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {result!r})")
        await asyncio.sleep(interval)


def until_ready(
    ready: Callable[[], T | None], process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> T:
    """Poll ``ready`` until it returns something other than None/False, and return that; fail with the
    end of the process's ``log`` when the process ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not (result := ready()):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{process.args[0]} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return result


# The test server moves its clock only while no activity runs, so a skip waits in real time for every
# activity its timers wake. WorkflowEnvironment.sleep gives that the client's default RPC deadline
# (30 s), which a loaded machine has exceeded; the skip then failed though nothing was wrong.
SKIP_DEADLINE = timedelta(minutes=3)
SLOW_SKIP_SECONDS = 10.0


async def skip_time(env: WorkflowEnvironment, duration: timedelta) -> None:
    """Move the time-skipping server's clock on by ``duration``, as ``env.sleep`` does, waiting up to
    ``SKIP_DEADLINE`` for the activities on the way; a skip slower than ``SLOW_SKIP_SECONDS`` is reported
    as a warning, so a stalled activity shows in the test report instead of passing unseen."""
    request = SleepRequest()
    request.duration.FromTimedelta(duration)
    started = time.monotonic()
    await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SKIP_DEADLINE)
    took = time.monotonic() - started
    if took > SLOW_SKIP_SECONDS:
        warnings.warn(f"skipping {duration} of server time took {took:.1f} s of real time", stacklevel=2)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a server; ``stop()`` cuts every connection as a dead server would."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


# Settings a real production deployment could run on: every check of core/production.py passes.
PRODUCTION_SETTINGS: dict[str, Any] = {
    "environment": "production",
    "zoho_webhook_secret": "zs-8f2a",
    "zoho_client_secret": "zc-41d9",
    "zoho_refresh_token": "1000.refresh",
    "zoho_client_id": "1000.CLIENT",
    "read_api_token": "rt-77c1",
    "metrics_token": "mt-3c9d",
    "vtex_app_token": "vt-0b3e",
    "vtex_app_key": "vtexappkey-carmaker-ABCDEF",
    "vtex_hook_secret": "vh-5a5a",
    "event_signing_secret": "whsec_cHJvZHVjdGlvbi1rZXk=",
    "dealer_api_keys": {"dealer-sp-centro": "dk-123"},
    "zoho_api_base_url": "https://www.zohoapis.example",
    "zoho_accounts_url": "https://accounts.zoho.example",
    "vtex_api_base_url": "https://carmaker.vtexcommercestable.example",
    "vtex_hook_url": "https://hub.carmaker.example/webhooks/vtex/orders",
    "event_subscribers": ["https://portal.carmaker.example/hooks"],
    "bigquery_endpoint": "",
    "payload_keys": {"2026-11": "cHJvZHVjdGlvbiBwYXlsb2FkIGtleSAyMDI2LTExISE="},
    "database_url": "postgresql+psycopg://hub:pg-6d1e@postgresql.carmaker.example:5432/hub",
}


# A simulator store small enough for a test to run every flow on it in seconds: 30 history orders over
# 10 days, 40 SKUs, 30 customers.
SMALL_STORE: dict[str, Any] = {
    "vtex_history_orders": 30,
    "vtex_history_days": 10,
    "vtex_history_end": "2026-11-01T00:00:00Z",
    "vtex_catalog_skus": 40,
    "vtex_customers": 30,
}


def new_key() -> str:
    """A fresh random payload key in the form ``HUB_PAYLOAD_KEYS`` takes (base64 of 32 bytes)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode()

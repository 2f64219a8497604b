"""The benchmarks' HTTP clients."""

from __future__ import annotations

import httpx

from simulators.config import CLIENT_KEEPALIVE_SECONDS


def bench_client(
    connections: int = 100, timeout: float = 30, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """A client keeping up to ``connections`` open, none idle for longer than ``CLIENT_KEEPALIVE_SECONDS``:
    a request sent on a connection as uvicorn closes it would count as a failure of the hub."""
    limits = httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=CLIENT_KEEPALIVE_SECONDS,
    )
    return httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers)

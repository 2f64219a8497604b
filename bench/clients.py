"""The benchmarks' HTTP clients."""

from __future__ import annotations

import httpx

# uvicorn closes a connection idle for 5 s: a request sent on it just then is cut and would count as a
# failure of the hub. The benchmarks drop idle connections after 2 s, before uvicorn does (as the
# simulators do).
KEEPALIVE_SECONDS = 2.0


def bench_client(
    connections: int = 100, timeout: float = 30, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """A client keeping up to ``connections`` open, none idle for longer than ``KEEPALIVE_SECONDS``."""
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=KEEPALIVE_SECONDS
    )
    return httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers)

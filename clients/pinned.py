"""HTTP transports whose connections go only to addresses ``core.outbound`` checked, as they open.

A check made before a call is not enough on its own: the connection looks the name up again, and a name
whose answers change in between (DNS rebinding) passes with a public address and connects to an internal
one. These transports look each name up once per connection, check every address, and connect to a
checked one. The dealer CRM clients use them: their URLs come from configuration files and WSDLs.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

import httpcore
import httpx

from core.outbound import AddressRules

# httpx's own connection limits, kept for the pinned transports.
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens each connection to an address :class:`AddressRules` checked, never to a fresh lookup.

    TLS is started on the returned stream by the connection, with the URL's host name: SNI and the
    certificate check still use the name, only the address is pinned.
    """

    def __init__(self, rules: AddressRules, backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._rules = rules
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:  # getaddrinfo blocks: off the event loop, within the connect timeout
            addresses = await asyncio.wait_for(asyncio.to_thread(self._rules.addresses, host), timeout)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"looking up {host} timed out") from error
        failure: Exception = httpcore.ConnectError(f"{host} does not resolve")
        for address in addresses:  # every one was checked: try them in the resolver's order
            try:
                return await self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not outbound calls")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class PinnedSyncBackend(httpcore.NetworkBackend):
    """:class:`PinnedBackend` for blocking clients (zeep loads WSDLs and their imports with one)."""

    def __init__(self, rules: AddressRules, backend: httpcore.NetworkBackend | None = None) -> None:
        self._rules = rules
        self._backend = backend or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception = httpcore.ConnectError(f"{host} does not resolve")
        for address in self._rules.addresses(host):
            try:
                return self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not outbound calls")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# httpx builds its connection pool in the transport's constructor and offers no way to hand it a network
# backend, so the pinned transports replace that pool with one that has the pinned backend. Environment
# proxies are not used: behind a proxy the proxy would look the name up, and the pin would be lost.


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting only to addresses :class:`AddressRules` checked.

    A refused address raises :class:`RefusedUrl` out of the request.
    """

    def __init__(
        self,
        rules: AddressRules,
        *,
        verify: ssl.SSLContext | bool = True,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(verify=verify, limits=LIMITS)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=PinnedBackend(rules, backend),
        )


class PinnedSyncTransport(httpx.HTTPTransport):
    """:class:`PinnedTransport` for blocking clients."""

    def __init__(
        self,
        rules: AddressRules,
        *,
        verify: ssl.SSLContext | bool = True,
        backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        super().__init__(verify=verify, limits=LIMITS)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=PinnedSyncBackend(rules, backend),
        )

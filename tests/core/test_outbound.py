"""Where outbound connections go: IPv4 addresses hidden in IPv6 ones, and names that change their answer.

``check_url`` looks a name up before a call; the connection must go to an address that was checked, or a
name answering a public address first and an internal one next (DNS rebinding) would get through. A
stand-in network backend plays the internet: the public address leads to a local server, and every
address a connection is opened to is recorded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import httpcore
import httpx
import pytest
import trustme

from clients.pinned import PinnedSyncTransport, PinnedTransport
from core.outbound import AddressRules, RefusedUrl, check_url

NAME = "crm.dealer.example"
PUBLIC = "93.184.215.14"


class Answers:
    """A resolver whose answers change from one lookup to the next (the last one repeats)."""

    def __init__(self, *rounds: list[str]) -> None:
        self.rounds = list(rounds)
        self.lookups = 0

    def __call__(self, host: str) -> list[str]:
        self.lookups += 1
        return self.rounds[min(self.lookups, len(self.rounds)) - 1]


class StandIn(httpcore.AsyncNetworkBackend):
    """The internet as a test sees it: the public address is a local server, every other address fails."""

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.opened: list[str] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.opened.append(host)
        if host != PUBLIC:
            raise httpcore.ConnectError(f"no route to {host} in this test")
        return await self._real.connect_tcp("127.0.0.1", self.server_port, timeout=timeout)


class SyncStandIn(httpcore.NetworkBackend):
    """:class:`StandIn` for blocking clients, with no server behind: it records and fails."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.opened.append(host)
        raise httpcore.ConnectError(f"no route to {host} in this test")


class Server:
    """A one-answer-per-connection HTTP server on 127.0.0.1 that records Host headers and TLS names."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.server_names: list[str | None] = []
        self.port = 0

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        self.hosts.append(headers.get("host", headers.get("Host", "")))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    def record_server_name(self, _: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        self.server_names.append(name)


@asynccontextmanager
async def serving(tls_name: str | None = None) -> AsyncIterator[tuple[Server, trustme.CA]]:
    """The server, speaking TLS with a certificate for ``tls_name`` when one is given."""
    authority, recorder, context = trustme.CA(), Server(), None
    if tls_name:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert(tls_name).configure_cert(context)
        context.sni_callback = recorder.record_server_name
    server = await asyncio.start_server(recorder.answer, "127.0.0.1", 0, ssl=context)
    recorder.port = server.sockets[0].getsockname()[1]
    async with server:
        yield recorder, authority


# --- IPv4 addresses inside IPv6 ones -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 (RFC 6052) of 169.254.169.254, the cloud metadata service
        "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
        "64:ff9b:1::7f00:1",  # local-use NAT64 (RFC 8215), /96 layout, of 127.0.0.1
        "64:ff9b:1:a9fe:a9:fe00::",  # local-use NAT64, /48 layout: the IPv4 address cannot be read
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:a9fe:a9fe",  # IPv4-mapped 169.254.169.254
        "::7f00:1",  # IPv4-compatible (deprecated) 127.0.0.1
        "fec0::1",  # site-local (deprecated), private by design
    ],
)
def test_ipv6_addresses_carrying_an_internal_ipv4_address_are_refused(address: str) -> None:
    refused = re.escape(f"{ipaddress.ip_address(address)} is an internal address")  # as Python writes it
    with pytest.raises(RefusedUrl, match=refused):
        check_url(f"https://[{address}]/wsdl", production=True)
    with pytest.raises(RefusedUrl, match=refused):
        check_url(f"https://{NAME}/wsdl", production=True, resolver=lambda _: [address])
    with pytest.raises(RefusedUrl, match=refused):
        AddressRules(production=True, resolver=lambda _: [address]).addresses(NAME)


def test_ipv6_addresses_carrying_a_public_ipv4_address_pass() -> None:
    """A DNS64 network gives every IPv4 partner a 64:ff9b:: address: those must keep working."""
    for address in ("64:ff9b::808:808", "2606:4700::1111"):
        check_url(f"https://[{address}]/wsdl", production=True)
        assert AddressRules(production=True, resolver=lambda _, a=address: [a]).addresses(NAME) == [address]


# --- pinned connections --------------------------------------------------------------------------------


async def test_a_name_that_rebinds_connects_only_to_the_address_that_was_checked() -> None:
    resolver = Answers([PUBLIC], ["127.0.0.1"])
    async with serving() as (server, _):
        network = StandIn(server.port)
        transport = PinnedTransport(AddressRules(production=True, resolver=resolver), backend=network)
        async with httpx.AsyncClient(transport=transport) as client:
            first = await client.get(f"http://{NAME}:8080/api/v1/leads")
            assert first.status_code == 200
            # The server closed that connection: the next one looks the name up again, and is refused.
            with pytest.raises(RefusedUrl, match=r"127\.0\.0\.1 is an internal address"):
                await client.get(f"http://{NAME}:8080/api/v1/leads")
    assert network.opened == [PUBLIC]
    assert server.hosts == [f"{NAME}:8080"]  # the request still names the host
    assert resolver.lookups == 2  # once per connection, never apart from it


async def test_a_check_then_a_rebinding_name_is_refused_at_connect() -> None:
    """The URL check sees the public answer; the connection's own lookup gets the internal one."""
    resolver = Answers([PUBLIC], ["127.0.0.1"])
    url = f"https://{NAME}/api/v1/leads"
    check_url(url, production=True, resolver=resolver)
    network = StandIn(server_port=0)
    transport = PinnedTransport(AddressRules(production=True, resolver=resolver), backend=network)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(RefusedUrl, match=r"127\.0\.0\.1 is an internal address"):
            await client.post(url, json={})
    assert network.opened == []


async def test_every_address_of_a_name_is_checked() -> None:
    network = StandIn(server_port=0)
    rules = AddressRules(production=True, resolver=lambda _: [PUBLIC, "10.20.0.7"])
    async with httpx.AsyncClient(transport=PinnedTransport(rules, backend=network)) as client:
        with pytest.raises(RefusedUrl, match=r"10\.20\.0\.7 is an internal address"):
            await client.get(f"https://{NAME}/")
    assert network.opened == []


async def test_tls_still_names_and_verifies_the_host() -> None:
    """Only the address is pinned: SNI and the certificate check use the URL's name."""
    rules = AddressRules(production=True, resolver=lambda _: [PUBLIC])
    for certificate_name, works in ((NAME, True), ("other.example", False)):
        async with serving(tls_name=certificate_name) as (server, authority):
            trusted = ssl.create_default_context()
            authority.configure_trust(trusted)
            transport = PinnedTransport(rules, verify=trusted, backend=StandIn(server.port))
            async with httpx.AsyncClient(transport=transport) as client:
                if works:
                    assert (await client.get(f"https://{NAME}/")).status_code == 200
                    assert server.hosts == [NAME]
                else:
                    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                        await client.get(f"https://{NAME}/")
            assert server.server_names == [NAME]


def test_blocking_clients_are_pinned_too() -> None:
    """zeep fetches WSDLs and their imports with a blocking client."""
    resolver = Answers([PUBLIC], ["169.254.169.254"])
    network = SyncStandIn()
    transport = PinnedSyncTransport(AddressRules(production=True, resolver=resolver), backend=network)
    with httpx.Client(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):  # the checked public address (nothing answers here)
            client.get(f"https://{NAME}/dealer.wsdl")
        with pytest.raises(RefusedUrl, match=r"169\.254\.169\.254 is an internal address"):
            client.get(f"https://{NAME}/dealer.wsdl")
    assert network.opened == [PUBLIC]


async def test_outside_production_names_are_left_to_the_system() -> None:
    """Locally the simulators are on 127.0.0.1; listed private hosts are not refused either."""

    def no_lookup(host: str) -> list[str]:
        raise AssertionError(f"{host} looked up")

    assert AddressRules(production=False, resolver=no_lookup).addresses("127.0.0.1") == ["127.0.0.1"]
    private = AddressRules(production=True, private_hosts=frozenset({"crm.internal"}), resolver=no_lookup)
    assert private.addresses("CRM.internal") == ["crm.internal"]
    with pytest.raises(RefusedUrl, match="localhost is an internal address"):
        AddressRules(production=True, resolver=no_lookup).addresses("localhost")
    async with serving() as (server, _):
        transport = PinnedTransport(AddressRules(production=False, resolver=no_lookup))
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(f"http://127.0.0.1:{server.port}/")).status_code == 200

"""Where the hub may send requests: checks on every partner URL before it is called.

Partner URLs come from settings (Zoho, VTEX, subscribers, BigQuery) and from the dealers' YAML, and a
SOAP dealer's WSDL names where its calls go. Those calls carry credentials and customer data, so in
production a URL must:
- use https, unless its host is in ``HUB_OUTBOUND_PLAIN_HTTP_HOSTS``;
- not point at a loopback, private, link-local or otherwise internal address (by literal address or by
  what its name resolves to, including an IPv4 address carried inside an IPv6 one: NAT64, 6to4,
  IPv4-mapped), unless its host is in ``HUB_OUTBOUND_PRIVATE_HOSTS``.
Locally and in tests every URL is allowed: the simulators and the emulator live on 127.0.0.1.

A check made before a call is not enough on its own: the connection looks the name up again, and a name
whose answers change in between (DNS rebinding) passes with a public address and connects to an internal
one. :class:`clients.pinned.PinnedTransport` closes that gap for the dealer CRMs, whose URLs come from
configuration files and WSDLs: it looks each name up once per connection, checks every address, and
connects to a checked one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

# Names that always mean this machine, whatever the resolver says.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# IPv6 addresses whose last 32 bits are an IPv4 address the traffic ends up at: NAT64's well-known prefix
# (RFC 6052), the /96 of the local-use NAT64 prefix (RFC 8215) and the deprecated IPv4-compatible
# addresses. Python reads IPv4-mapped (::ffff:0:0/96) and 6to4 (2002::/16) addresses itself.
IPV4_IN_LAST_32_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/96"),
    ipaddress.IPv6Network("::/96"),
)
# The local-use NAT64 prefix: where the IPv4 address sits depends on the operator's prefix length, so
# outside its /96 (read above) the address cannot be known, and RFC 8215 makes none of it global.
LOCAL_USE_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")

Resolver = Callable[[str], Iterable[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedUrl(ValueError):
    """A URL the hub will not call (in production)."""


def resolve(host: str) -> list[str]:
    """The addresses a host name resolves to; none when it does not resolve (the call will fail anyway)."""
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]
    except (socket.gaierror, UnicodeError):
        return []


def origin(url: str) -> str:
    """A URL's scheme, host and port (the scheme's default where none is written): where it sends,
    without its credentials, path or query, which may hold tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def check_url(
    url: str,
    *,
    production: bool,
    plain_http_hosts: Iterable[str] = (),
    private_hosts: Iterable[str] = (),
    resolver: Resolver = resolve,
) -> None:
    """Raise :class:`RefusedUrl` when ``url`` may not be called; the message names the URL and why.

    Only scheme, host and port are named in messages: paths and queries may carry ids or tokens.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    where = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    if parts.scheme not in ("http", "https") or not host:
        raise RefusedUrl(f"{where or url[:40]!r} is not an http(s) URL")
    if not production:
        return
    if parts.scheme == "http" and host not in {h.lower() for h in plain_http_hosts}:
        raise RefusedUrl(
            f"{where}: plain http is refused in production (use https, or list the host in"
            " HUB_OUTBOUND_PLAIN_HTTP_HOSTS)"
        )
    if host in {h.lower() for h in private_hosts}:
        return
    internal = host if _is_local_name(host) else _first_internal(_addresses(host, resolver))
    if internal:
        raise _refused(where, internal)


def is_internal(address: IPAddress) -> bool:
    """Whether a connection to ``address`` would reach an internal network, directly or through the IPv4
    address it carries (``64:ff9b::a9fe:a9fe`` is 169.254.169.254 behind a NAT64 gateway)."""
    if not address.is_global or address.is_multicast:
        return True
    if isinstance(address, ipaddress.IPv4Address):
        return False
    if address.is_site_local or (address in LOCAL_USE_NAT64 and address not in IPV4_IN_LAST_32_BITS[1]):
        return True
    embedded = _embedded_ipv4(address)
    return embedded is not None and is_internal(embedded)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in IPV4_IN_LAST_32_BITS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_local_name(host: str) -> bool:
    return host in LOCAL_NAMES or host.endswith(".localhost")


def _first_internal(addresses: list[IPAddress]) -> str:
    return next((str(address) for address in addresses if is_internal(address)), "")


def _addresses(host: str, resolver: Resolver) -> list[IPAddress]:
    """``host`` itself when it is an address, else what it resolves to (answers that are not addresses
    left out)."""
    addresses: list[IPAddress] = []
    for candidate in [host] if _is_address(host) else list(resolver(host)):
        try:
            addresses.append(ipaddress.ip_address(candidate.strip("[]").split("%")[0]))
        except ValueError:
            continue
    return addresses


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _refused(where: str, internal: str) -> RefusedUrl:
    return RefusedUrl(
        f"{where}: {internal} is an internal address, refused in production (list the host in"
        " HUB_OUTBOUND_PRIVATE_HOSTS if it is meant)"
    )


@dataclass(frozen=True)
class AddressRules:
    """The address half of :func:`check_url`, applied where a connection is opened.

    Attributes:
        production: Outside production every address is allowed and names are left to the system.
        private_hosts: Hosts allowed to be internal (``HUB_OUTBOUND_PRIVATE_HOSTS``), lower case.
        resolver: Looks names up; tests inject one.
    """

    production: bool
    private_hosts: frozenset[str] = frozenset()
    resolver: Resolver = resolve

    def addresses(self, host: str) -> list[str]:
        """Where a connection to ``host`` may go: addresses looked up once and all checked.

        Returns ``[host]`` unchanged where nothing would be refused (outside production, or a host listed
        as private), and ``[]`` when the name does not resolve.

        Raises:
            RefusedUrl: ``host`` is, or resolves to, an internal address.
        """
        host = host.lower()
        if not self.production or host in self.private_hosts:
            return [host]
        if _is_local_name(host):
            raise _refused(host, host)
        addresses = _addresses(host, self.resolver)
        if internal := _first_internal(addresses):
            raise _refused(host, internal)
        return list(dict.fromkeys(str(address) for address in addresses))

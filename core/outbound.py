"""Where the hub may send requests: checks on every partner URL before it is called.

Partner URLs come from settings (Zoho, VTEX, subscribers, BigQuery) and from the dealers' YAML, and a
SOAP dealer's WSDL names where its calls go. Those calls carry credentials and customer data, so in
production a URL must:
- use https, unless its host is in ``HUB_OUTBOUND_PLAIN_HTTP_HOSTS``;
- not point at a loopback, private, link-local or otherwise internal address (by literal address or by
  what its name resolves to), unless its host is in ``HUB_OUTBOUND_PRIVATE_HOSTS``.
Locally and in tests every URL is allowed: the simulators and the emulator live on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

# Names that always mean this machine, whatever the resolver says.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

Resolver = Callable[[str], Iterable[str]]


class RefusedUrl(ValueError):
    """A URL the hub will not call (in production)."""


def resolve(host: str) -> list[str]:
    """The addresses a host name resolves to; none when it does not resolve (the call will fail anyway)."""
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]
    except (socket.gaierror, UnicodeError):
        return []


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
    internal = _internal_address(host, resolver)
    if internal:
        raise RefusedUrl(
            f"{where}: {internal} is an internal address, refused in production (list the host in"
            " HUB_OUTBOUND_PRIVATE_HOSTS if it is meant)"
        )


def _internal_address(host: str, resolver: Resolver) -> str:
    """The first internal address ``host`` is or resolves to, or ``""``."""
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return host
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for candidate in [host] if _is_address(host) else list(resolver(host)):
        try:
            addresses.append(ipaddress.ip_address(candidate.strip("[]").split("%")[0]))
        except ValueError:
            continue
    for address in addresses:
        if not address.is_global or address.is_multicast:
            return str(address)
    return ""


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True

"""Which addresses the crawler may connect to: protection against SSRF.

A crawl service fetches URLs that strangers choose, so a page (or a redirect, or
a DNS name) must not make it connect to the machine itself, the private network
or a cloud metadata endpoint. The check runs on the resolved IP address of every
connection, in two places:

* :class:`GuardedResolver` drops forbidden addresses from every DNS answer, so a
  name that resolves to ``127.0.0.1`` fails like an unknown host would;
* :meth:`AddressGuard.socket_factory` checks the exact socket address right
  before ``connect()``, which also covers IP literals (aiohttp does not call the
  resolver for them) and every redirect hop, because each hop is a connection.

Networks named in ``allow_networks`` are exempt, which is how tests and
intranet crawls reach loopback or private hosts on purpose.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from crawler.errors import BlockedAddressError, InvalidOptionError

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Addresses that ipaddress does not flag on its own but that reach cloud
# metadata services or carrier-grade NAT.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (RFC 6598)
    ipaddress.ip_network("169.254.169.254/32"),  # AWS, GCP, Azure metadata
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking (RFC 2544)
)


def parse_networks(value: str | Iterable[str], *, option: str) -> tuple[IPNetwork, ...]:
    """Parse comma-separated (or listed) CIDRs, naming ``option`` on error."""
    items = value.split(",") if isinstance(value, str) else list(value)
    networks: list[IPNetwork] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise InvalidOptionError(
                option,
                f"{option} entry {text!r} is not a network in CIDR form; "
                "use for example 127.0.0.0/8 or 10.1.2.0/24",
            ) from exc
    return tuple(networks)


class AddressGuard:
    """Decides whether an IP address is a permitted connection target."""

    def __init__(self, allow_networks: Sequence[IPNetwork] = ()) -> None:
        self.allow_networks = tuple(allow_networks)

    def is_allowed(self, address: str | IPAddress) -> bool:
        """Return True if the crawler may connect to ``address``."""
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return False
        # An IPv4-mapped IPv6 address (::ffff:127.0.0.1) reaches the IPv4 host.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped

        if any(ip in network for network in self.allow_networks):
            return True
        if (
            ip.is_loopback
            or ip.is_private
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        ):
            return False
        return not any(ip in network for network in _EXTRA_BLOCKED)

    def check(self, host: str, address: str) -> None:
        """Raise BlockedAddressError unless ``address`` (of ``host``) is allowed."""
        if not self.is_allowed(address):
            raise BlockedAddressError(host, address)

    def socket_factory(self, addr_info: Any) -> socket.socket:
        """Create the socket for aiohttp's connector after checking its target.

        aiohttp (3.12+) passes the ``getaddrinfo`` tuple that it is about to
        connect to, so this is the last point where every connection, including
        IP literals and redirect hops, can be stopped.
        """
        family, type_, proto, _canonname, sockaddr = addr_info
        self.check(str(sockaddr[0]), str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    """A DNS resolver that drops every address the guard forbids.

    When nothing permitted is left, it raises :class:`BlockedAddressError`, so
    the error names the real reason instead of a generic DNS failure.
    """

    def __init__(
        self, guard: AddressGuard, resolver: AbstractResolver | None = None
    ) -> None:
        self._guard = guard
        self._resolver = resolver or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        allowed = [r for r in results if self._guard.is_allowed(r["host"])]
        if not allowed:
            blocked = results[0]["host"] if results else "no address"
            logger.info(
                "Blocked connection to %s (%s) by the address guard",
                host,
                blocked,
                extra={"host": host},
            )
            raise BlockedAddressError(host, blocked)
        return allowed

    async def close(self) -> None:
        await self._resolver.close()

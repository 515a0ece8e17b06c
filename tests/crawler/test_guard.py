"""Tests for the address guard: which IP addresses the crawler may connect to.

Public addresses appear here only as values passed to the guard; no test
connects to them. Every connection goes to a test server on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from pytest_aiohttp import AiohttpServer

from crawler.errors import BlockedAddressError, FetchError, InvalidOptionError
from crawler.fetch import Fetcher, create_session
from crawler.guard import AddressGuard, GuardedResolver, parse_networks
from crawler.options import CrawlOptions

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "10.0.0.1",
        "10.255.255.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "fd00:ec2::254",
        "fc00::1",
        "fe80::1",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
        "192.0.0.8",
        "198.18.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
    ],
)
def test_guard_blocks_address(address: str) -> None:
    assert not AddressGuard().is_allowed(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
        "::ffff:93.184.216.34",
        "172.32.0.1",
        "100.128.0.1",
        "100.63.255.255",
    ],
)
def test_guard_allows_public_address(address: str) -> None:
    assert AddressGuard().is_allowed(address)


def test_guard_accepts_address_objects() -> None:
    guard = AddressGuard()

    assert not guard.is_allowed(ipaddress.ip_address("10.0.0.1"))
    assert guard.is_allowed(ipaddress.ip_address("93.184.216.34"))


@pytest.mark.parametrize("address", ["", "localhost", "300.1.1.1", "1.2.3"])
def test_guard_blocks_non_address(address: str) -> None:
    assert not AddressGuard().is_allowed(address)


def test_guard_allow_networks_exemption() -> None:
    guard = AddressGuard(LOOPBACK)

    assert guard.is_allowed("127.0.0.1")
    assert guard.is_allowed("127.3.4.5")
    assert guard.is_allowed("::ffff:127.0.0.1")


def test_guard_allow_networks_keeps_other_blocks() -> None:
    guard = AddressGuard(LOOPBACK)

    assert not guard.is_allowed("::1")
    assert not guard.is_allowed("10.0.0.1")
    assert not guard.is_allowed("169.254.169.254")


def test_guard_check_raises_blocked_address() -> None:
    with pytest.raises(BlockedAddressError) as caught:
        AddressGuard().check("metadata.internal", "169.254.169.254")

    assert caught.value.host == "metadata.internal"
    assert caught.value.address == "169.254.169.254"
    assert "blocked by the address guard" in str(caught.value)


def test_guard_check_passes_public_address() -> None:
    AddressGuard().check("example.org", "93.184.216.34")


def test_socket_factory_rejects_blocked_target() -> None:
    addr_info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 80))

    with pytest.raises(BlockedAddressError):
        AddressGuard().socket_factory(addr_info)


def test_socket_factory_allowed_target() -> None:
    addr_info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))

    with AddressGuard(LOOPBACK).socket_factory(addr_info) as sock:
        assert sock.family == socket.AF_INET
        assert sock.type == socket.SOCK_STREAM


def test_parse_networks_comma_separated() -> None:
    networks = parse_networks(" 127.0.0.0/8, ,10.1.2.3/24 ", option="allow_network")

    assert networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("10.1.2.0/24"),
    )


def test_parse_networks_list_and_ipv6() -> None:
    networks = parse_networks(["::1/128", "192.168.0.0/16"], option="allow_network")

    assert networks == (
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("192.168.0.0/16"),
    )


def test_parse_networks_empty() -> None:
    assert parse_networks("", option="allow_network") == ()


@pytest.mark.parametrize("value", ["nope", "10.0.0.0/33", "127.0.0.0/8,300.0.0.0/8"])
def test_parse_networks_error_text(value: str) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        parse_networks(value, option="CRAWLER_ALLOW_NETWORKS")

    bad_entry = value.split(",")[-1]
    assert caught.value.option == "CRAWLER_ALLOW_NETWORKS"
    assert "CRAWLER_ALLOW_NETWORKS" in caught.value.message
    assert repr(bad_entry) in caught.value.message


class StaticResolver(AbstractResolver):
    """A resolver that resolves every name to the same fixed addresses."""

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=family,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._addresses
        ]

    async def close(self) -> None:
        pass


async def test_resolver_blocks_localhost_by_default() -> None:
    resolver = GuardedResolver(AddressGuard())
    try:
        with pytest.raises(BlockedAddressError) as caught:
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()

    assert caught.value.host == "localhost"


async def test_resolver_localhost_with_allow_networks() -> None:
    resolver = GuardedResolver(AddressGuard(LOOPBACK))
    try:
        results = await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()

    assert results
    for result in results:
        assert ipaddress.ip_address(result["host"]) in LOOPBACK[0]


async def test_resolver_drops_blocked_addresses_from_answer() -> None:
    answer = ["127.0.0.1", "93.184.216.34", "169.254.169.254"]
    resolver = GuardedResolver(AddressGuard(), StaticResolver(answer))

    results = await resolver.resolve("rebind.example", 443)

    assert [r["host"] for r in results] == ["93.184.216.34"]


async def test_resolver_names_first_blocked_address() -> None:
    answer = ["10.0.0.7", "192.168.0.7"]
    resolver = GuardedResolver(AddressGuard(), StaticResolver(answer))

    with pytest.raises(BlockedAddressError) as caught:
        await resolver.resolve("intranet.example", 80)

    assert caught.value.address == "10.0.0.7"


async def _start_logged_server(
    aiohttp_server: AiohttpServer,
) -> tuple[int, list[str]]:
    request_log: list[str] = []

    async def page(request: web.Request) -> web.Response:
        request_log.append(request.path)
        return web.Response(text="<title>loopback</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = await aiohttp_server(app, host="127.0.0.1")
    assert server.port is not None
    return server.port, request_log


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_session_blocks_loopback_server(
    aiohttp_server: AiohttpServer, host: str
) -> None:
    port, request_log = await _start_logged_server(aiohttp_server)
    options = CrawlOptions(seeds=("http://placeholder.invalid/",))

    async with create_session(AddressGuard()) as session:
        with pytest.raises(FetchError) as caught:
            await Fetcher(session, options).fetch(f"http://{host}:{port}/")

    assert caught.value.kind == "blocked_address"
    assert caught.value.retryable is False
    assert request_log == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_session_allow_networks_reach_loopback(
    aiohttp_server: AiohttpServer, host: str
) -> None:
    port, request_log = await _start_logged_server(aiohttp_server)
    options = CrawlOptions(seeds=("http://placeholder.invalid/",))

    async with create_session(AddressGuard(LOOPBACK)) as session:
        response = await Fetcher(session, options).fetch(f"http://{host}:{port}/")

    assert response.status == 200
    assert request_log == ["/"]

"""Tests for process settings read from environment variables."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp import web

from crawler.errors import InvalidOptionError
from crawler.fetch import create_session
from crawler.guard import AddressGuard, parse_networks
from crawler.settings import Settings, load_settings
from tests.sites.hostile import serve_app


def rejected_variable(environ: dict[str, str]) -> InvalidOptionError:
    with pytest.raises(InvalidOptionError) as caught:
        load_settings(environ)
    return caught.value


def test_settings_defaults() -> None:
    settings = load_settings({})

    assert settings == Settings()
    assert settings.allow_networks == ()
    assert settings.parse_mode == "auto"
    assert settings.parse_workers == 1
    assert settings.log_level is None


def test_settings_ignore_unrelated_variables() -> None:
    assert load_settings({"PATH": "/usr/bin", "CRAWLER_OTHER": "x"}) == Settings()


def test_settings_allow_networks() -> None:
    settings = load_settings(
        {"CRAWLER_ALLOW_NETWORKS": "127.0.0.0/8, 10.1.2.3/24,,::1"}
    )

    assert settings.allow_networks == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("10.1.2.0/24"),
        ipaddress.ip_network("::1/128"),
    )


def test_settings_empty_allow_networks() -> None:
    assert load_settings({"CRAWLER_ALLOW_NETWORKS": " "}).allow_networks == ()


@pytest.mark.parametrize(
    "value", ["localhost", "10.0.0.0/33", "127.0.0.0/8;10.0.0.0/8"]
)
def test_settings_bad_allow_networks(value: str) -> None:
    error = rejected_variable({"CRAWLER_ALLOW_NETWORKS": value})

    assert error.option == "CRAWLER_ALLOW_NETWORKS"
    assert "CRAWLER_ALLOW_NETWORKS" in error.message


@pytest.mark.parametrize(
    ("value", "mode"),
    [("thread", "thread"), ("process", "process"), (" Inline ", "inline")],
)
def test_settings_parse_mode(value: str, mode: str) -> None:
    assert load_settings({"CRAWLER_PARSE_MODE": value}).parse_mode == mode


@pytest.mark.parametrize("value", ["threads", "", "async"])
def test_settings_bad_parse_mode(value: str) -> None:
    error = rejected_variable({"CRAWLER_PARSE_MODE": value})

    assert error.option == "CRAWLER_PARSE_MODE"
    assert "CRAWLER_PARSE_MODE" in error.message
    assert repr(value.strip().lower()) in error.message


@pytest.mark.parametrize(("value", "workers"), [("1", 1), (" 8 ", 8), ("64", 64)])
def test_settings_parse_workers(value: str, workers: int) -> None:
    assert load_settings({"CRAWLER_PARSE_WORKERS": value}).parse_workers == workers


@pytest.mark.parametrize("value", ["0", "65", "-1", "two", "1.5", "", "²"])
def test_settings_bad_parse_workers(value: str) -> None:
    error = rejected_variable({"CRAWLER_PARSE_WORKERS": value})

    assert error.option == "CRAWLER_PARSE_WORKERS"
    assert "CRAWLER_PARSE_WORKERS" in error.message


@pytest.mark.parametrize(
    ("value", "level"), [("debug", "DEBUG"), ("INFO", "INFO"), (" error ", "ERROR")]
)
def test_settings_log_level(value: str, level: str) -> None:
    assert load_settings({"CRAWLER_LOG_LEVEL": value}).log_level == level


@pytest.mark.parametrize("value", ["verbose", "CRITICAL", "10"])
def test_settings_bad_log_level(value: str) -> None:
    error = rejected_variable({"CRAWLER_LOG_LEVEL": value})

    assert error.option == "CRAWLER_LOG_LEVEL"
    assert "CRAWLER_LOG_LEVEL" in error.message


@pytest.mark.parametrize(
    ("value", "address"),
    [("127.0.1.2", "127.0.1.2"), (" ::1 ", "::1"), ("", None), ("  ", None)],
)
def test_settings_source_address(value: str, address: str | None) -> None:
    settings = load_settings({"CRAWLER_SOURCE_ADDRESS": value})

    assert settings.source_address == address


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:80", "10.0.0.0/8", "1.2.3"])
def test_settings_bad_source_address(value: str) -> None:
    error = rejected_variable({"CRAWLER_SOURCE_ADDRESS": value})

    assert error.option == "CRAWLER_SOURCE_ADDRESS"
    assert repr(value) in error.message
    assert "IP address" in error.message


async def test_source_address_binds_connections() -> None:
    """Every crawl connection leaves from the configured address."""
    peers: list[str] = []

    async def page(request: web.Request) -> web.Response:
        peers.append(request.remote or "")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", page)
    guard = AddressGuard(parse_networks("127.0.0.0/8", option="test"))
    with serve_app(app, "127.0.0.2") as site:
        for source in ("127.0.1.7", "127.0.1.8"):
            session = create_session(guard, source_address=source)
            async with session, session.get(site.url("/")) as response:
                assert response.status == 200

    assert peers == ["127.0.1.7", "127.0.1.8"]


def test_settings_run_scheduler_default_on() -> None:
    assert load_settings({}).run_scheduler is True


@pytest.mark.parametrize(
    ("value", "expected"), [("false", False), ("0", False), ("ON", True)]
)
def test_settings_run_scheduler(value: str, expected: bool) -> None:
    assert load_settings({"CRAWLER_RUN_SCHEDULER": value}).run_scheduler is expected


def test_settings_bad_run_scheduler() -> None:
    error = rejected_variable({"CRAWLER_RUN_SCHEDULER": "sometimes"})

    assert error.option == "CRAWLER_RUN_SCHEDULER"
    assert "'sometimes'" in error.message

"""Tests for process settings read from environment variables."""

from __future__ import annotations

import ipaddress

import pytest

from crawler.errors import InvalidOptionError
from crawler.settings import Settings, load_settings


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

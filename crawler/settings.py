"""Process-wide settings, read from the environment once at start-up.

Nothing else in the project reads ``os.environ``: entry points call
:func:`load_settings` and pass the result down. A bad value fails start-up with
an error that names the variable, the value and what is accepted.

=========================  ======================================  ====================
Variable                   Meaning                                 Default
=========================  ======================================  ====================
CRAWLER_STORE_URL          where jobs, frontiers and pages live:   sqlite:///crawler.db
                           ``sqlite:///relative.db``,
                           ``sqlite:////absolute/path.db`` or
                           ``mongodb://host:27017/database``
CRAWLER_ALLOW_NETWORKS     comma-separated CIDRs the address       (none)
                           guard lets the crawler connect to,
                           e.g. ``127.0.0.0/8,10.0.0.0/8``
CRAWLER_RUN_WORKER         run crawl jobs in the web process too   true
CRAWLER_RUN_SCHEDULER      fire due schedules in this process      true
                           (web and ``crawler worker`` alike)
CRAWLER_WORKER_JOBS        jobs one process crawls at once         2
CRAWLER_LEASE_S            seconds a worker's claim on a job, a    30
                           URL or a host lasts without renewal
CRAWLER_SHUTDOWN_GRACE_S   seconds fetches in flight may take to   10
                           finish on SIGTERM
CRAWLER_MAX_REQUEST_BYTES  largest API request body                1048576
CRAWLER_HOST               where ``crawler serve`` listens         127.0.0.1
CRAWLER_PORT               the port ``crawler serve`` listens on   8080
CRAWLER_PARSE_MODE         where pages are parsed: ``auto``        auto
                           (threads, or processes for crawls
                           with selectors), ``thread``,
                           ``process`` or ``inline``
CRAWLER_PARSE_WORKERS      parser threads or processes             1
CRAWLER_LOG_LEVEL          DEBUG, INFO, WARNING or ERROR           WARNING for
                                                                   ``crawler crawl``,
                                                                   INFO for the service
CRAWLER_SOURCE_ADDRESS     local IP address crawl connections      (system's choice)
                           leave from, on a host with several
=========================  ======================================  ====================
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from crawler.errors import InvalidOptionError
from crawler.guard import IPNetwork, parse_networks
from crawler.parse_pool import PARSE_MODES, ParseMode

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Settings:
    """Settings of one crawler process."""

    store_url: str = "sqlite:///crawler.db"
    allow_networks: tuple[IPNetwork, ...] = ()
    run_worker: bool = True
    run_scheduler: bool = True
    worker_jobs: int = 2
    lease_s: float = 30.0
    shutdown_grace_s: float = 10.0
    max_request_bytes: int = 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8080
    parse_mode: ParseMode = "auto"
    parse_workers: int = 1
    log_level: str | None = None
    """None picks the entry point's default: WARNING for crawls, INFO for services."""
    source_address: str | None = None
    """Local IP address that crawl connections leave from (None: the system's
    choice), for hosts with several addresses."""


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    defaults = Settings()

    store_url = env.get("CRAWLER_STORE_URL", defaults.store_url).strip()
    if not store_url.startswith(("sqlite:///", "mongodb://", "mongodb+srv://")):
        raise InvalidOptionError(
            "CRAWLER_STORE_URL",
            "CRAWLER_STORE_URL must start with sqlite:/// (for example "
            f"sqlite:///crawler.db) or mongodb://, got {store_url!r}",
        )

    parse_mode = _choice(env, "CRAWLER_PARSE_MODE", defaults.parse_mode, PARSE_MODES)
    log_level = None
    if "CRAWLER_LOG_LEVEL" in env:
        log_level = _choice(env, "CRAWLER_LOG_LEVEL", "", LOG_LEVELS)

    return Settings(
        store_url=store_url,
        allow_networks=parse_networks(
            env.get("CRAWLER_ALLOW_NETWORKS", ""), option="CRAWLER_ALLOW_NETWORKS"
        ),
        run_worker=_boolean(env, "CRAWLER_RUN_WORKER", defaults.run_worker),
        run_scheduler=_boolean(env, "CRAWLER_RUN_SCHEDULER", defaults.run_scheduler),
        worker_jobs=_integer(env, "CRAWLER_WORKER_JOBS", defaults.worker_jobs, 1, 64),
        lease_s=_number(env, "CRAWLER_LEASE_S", defaults.lease_s, 1.0, 3600.0),
        shutdown_grace_s=_number(
            env, "CRAWLER_SHUTDOWN_GRACE_S", defaults.shutdown_grace_s, 0.0, 600.0
        ),
        max_request_bytes=_integer(
            env, "CRAWLER_MAX_REQUEST_BYTES", defaults.max_request_bytes, 1024, 64 << 20
        ),
        host=env.get("CRAWLER_HOST", defaults.host).strip() or defaults.host,
        port=_integer(env, "CRAWLER_PORT", defaults.port, 1, 65535),
        parse_mode=parse_mode,  # type: ignore[arg-type]
        parse_workers=_integer(env, "CRAWLER_PARSE_WORKERS", 1, 1, 64),
        log_level=log_level,
        source_address=_ip_address(env, "CRAWLER_SOURCE_ADDRESS"),
    )


def _ip_address(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise InvalidOptionError(
            name,
            f"{name} must be an IP address of this host, such as 10.0.0.5, got {raw!r}",
        ) from None


def _choice(
    env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]
) -> str:
    value = env.get(name, default).strip()
    normalized = value.upper() if choices is LOG_LEVELS else value.lower()
    if normalized not in choices:
        raise InvalidOptionError(
            name, f"{name} must be one of {', '.join(choices)}, got {value!r}"
        )
    return normalized


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidOptionError(name, f"{name} must be true or false, got {raw!r}")


def _integer(
    env: Mapping[str, str], name: str, default: int, low: int, high: int
) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise InvalidOptionError(
            name, f"{name} must be an integer from {low} to {high}, got {raw!r}"
        )
    return int(value)


def _number(
    env: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise InvalidOptionError(
            name, f"{name} must be a number from {low:g} to {high:g}, got {raw!r}"
        )
    return value

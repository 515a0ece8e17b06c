"""Process-wide settings, read from the environment once at start-up.

Nothing else in the project reads ``os.environ``: entry points call
:func:`load_settings` and pass the result down. A bad value fails start-up with
an error that names the variable, the value and what is accepted.

===========================  =========================================  ==========
Variable                     Meaning                                    Default
===========================  =========================================  ==========
CRAWLER_ALLOW_NETWORKS       comma-separated CIDRs the address guard    (none)
                             lets the crawler connect to, e.g.
                             ``127.0.0.0/8,10.0.0.0/8``
CRAWLER_PARSE_MODE           where pages are parsed: ``thread``,         thread
                             ``process`` or ``inline``
CRAWLER_PARSE_WORKERS        parser threads or processes                 1
CRAWLER_LOG_LEVEL            DEBUG, INFO, WARNING or ERROR               WARNING
===========================  =========================================  ==========
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from crawler.errors import InvalidOptionError
from crawler.guard import IPNetwork, parse_networks
from crawler.parse_pool import PARSE_MODES, ParseMode

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class Settings:
    """Settings of one crawler process."""

    allow_networks: tuple[IPNetwork, ...] = ()
    parse_mode: ParseMode = "thread"
    parse_workers: int = 1
    log_level: str = "WARNING"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ

    allow_networks = parse_networks(
        env.get("CRAWLER_ALLOW_NETWORKS", ""), option="CRAWLER_ALLOW_NETWORKS"
    )

    parse_mode = env.get("CRAWLER_PARSE_MODE", "thread").strip().lower()
    if parse_mode not in PARSE_MODES:
        raise InvalidOptionError(
            "CRAWLER_PARSE_MODE",
            f"CRAWLER_PARSE_MODE must be one of {', '.join(PARSE_MODES)}, "
            f"got {parse_mode!r}",
        )

    raw_workers = env.get("CRAWLER_PARSE_WORKERS", "1").strip()
    # isascii: str.isdigit also accepts digits such as "²" that int() rejects.
    if not (raw_workers.isascii() and raw_workers.isdigit()) or not (
        1 <= int(raw_workers) <= 64
    ):
        raise InvalidOptionError(
            "CRAWLER_PARSE_WORKERS",
            "CRAWLER_PARSE_WORKERS must be an integer from 1 to 64, "
            f"got {raw_workers!r}",
        )

    log_level = env.get("CRAWLER_LOG_LEVEL", "WARNING").strip().upper()
    if log_level not in LOG_LEVELS:
        raise InvalidOptionError(
            "CRAWLER_LOG_LEVEL",
            f"CRAWLER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
            f"got {log_level!r}",
        )

    return Settings(
        allow_networks=allow_networks,
        parse_mode=parse_mode,  # type: ignore[arg-type]
        parse_workers=int(raw_workers),
        log_level=log_level,
    )

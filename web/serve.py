"""``crawler serve`` and the gunicorn entry point.

The ``crawler`` command finds this module through the ``crawler.commands``
entry point, so the engine package never imports the web framework. The
aiohttp imports stay inside the functions to keep ``crawler --help`` fast.

Production: ``gunicorn web.serve:app_factory -c gunicorn.conf.py``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from crawler.settings import Settings, load_settings

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger(__name__)

HELP = "run the API, the status page and a worker (development server)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to its sub-command parser."""
    parser.description = (
        "Run the API, the status page and a crawl worker on aiohttp's server. "
        "Other settings come from CRAWLER_* environment variables."
    )
    parser.add_argument(
        "--host", help="address to listen on (default: CRAWLER_HOST or 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, help="port to listen on (default: CRAWLER_PORT or 8080)"
    )


def configure_logging(settings: Settings) -> None:
    """Log to stderr at the settings' level: CRAWLER_LOG_LEVEL, or INFO when unset."""
    logging.basicConfig(
        level=settings.log_level or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM; return the exit status."""
    from aiohttp import web

    from web.app import create_app

    port = settings.port if args.port is None else args.port
    if not 1 <= port <= 65535:
        print(
            f"crawler serve: error: --port must be from 1 to 65535, got {port}",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings)
    web.run_app(
        create_app(settings),
        host=args.host or settings.host,
        port=port,
        shutdown_timeout=settings.shutdown_grace_s + 5,
        access_log_format='%a "%r" %s %b %Tf "%{X-Request-Id}o"',
        print=lambda message: logger.info("%s", message),
    )
    return 0


async def app_factory() -> web.Application:
    """Build the app from the environment: what gunicorn's aiohttp worker calls."""
    from web.app import create_app

    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)

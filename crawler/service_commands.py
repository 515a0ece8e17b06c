"""``crawler serve`` and ``crawler worker``: the service's two processes.

``serve`` runs the web app (API, status page, and a worker unless
``CRAWLER_RUN_WORKER=false``) on aiohttp's development server; production runs
the same app under gunicorn (``gunicorn.conf.py``). ``worker`` runs only a
worker, for hosts that crawl without serving the API.

The web app lives in the ``web`` package, which depends on this one; it is
imported inside :func:`run_serve` so that the engine never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys

from crawler.settings import Settings

logger = logging.getLogger(__name__)


def add_service_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add the ``serve`` and ``worker`` sub-commands."""
    serve = commands.add_parser(
        "serve",
        help="run the API and status page (development server)",
        description="Run the API, the status page and a worker on aiohttp's server. "
        "Settings come from CRAWLER_* environment variables.",
    )
    serve.add_argument(
        "--host", help="address to listen on (default CRAWLER_HOST or 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, help="port to listen on (default CRAWLER_PORT or 8080)"
    )

    commands.add_parser(
        "worker",
        help="run a crawl worker without the web server",
        description="Claim crawl jobs from CRAWLER_STORE_URL; run them until SIGTERM.",
    )


def configure_logging(settings: Settings) -> None:
    """Log to stderr at the settings' level (INFO unless CRAWLER_LOG_LEVEL says)."""
    logging.basicConfig(
        level=settings.log_level or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the web app until SIGINT or SIGTERM; return the exit status."""
    from aiohttp import web

    web_app = importlib.import_module("web.app")
    host = args.host or settings.host
    port = args.port or settings.port
    if not 1 <= port <= 65535:
        print(
            f"crawler serve: error: --port must be from 1 to 65535, got {port}",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings)
    web.run_app(
        web_app.create_app(settings),
        host=host,
        port=port,
        shutdown_timeout=settings.shutdown_grace_s + 5,
        print=lambda message: logger.info("%s", message),
    )
    return 0


def run_worker(settings: Settings) -> int:
    """Run a worker until SIGINT or SIGTERM; return the exit status."""
    configure_logging(settings)
    return asyncio.run(_work(settings))


async def _work(settings: Settings) -> int:
    from crawler.service import open_store
    from crawler.worker import Worker

    store = await open_store(settings)
    worker = Worker(store, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await worker.start()
        await stop.wait()
        logger.info("Signal received; stopping the worker")
        await worker.stop()
    finally:
        await store.close()
    return 0

"""``crawler worker`` and the sub-commands that other packages add.

``worker`` runs a crawl worker, and the scheduler unless
CRAWLER_RUN_SCHEDULER is false, without the web server. Other sub-commands,
such as ``serve`` from the ``web`` package, are found through the
``crawler.commands`` entry point group: each names a module with ``HELP``,
``add_arguments(parser)`` and ``run(args, settings) -> int``. That way the
engine package never imports the web framework.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from importlib.metadata import entry_points
from types import ModuleType

from crawler.settings import Settings

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "crawler.commands"


def add_service_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> dict[str, ModuleType]:
    """Add ``worker`` and the plug-in sub-commands; return the plug-ins by name."""
    plugins: dict[str, ModuleType] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        module = entry_point.load()
        parser = commands.add_parser(entry_point.name, help=module.HELP)
        module.add_arguments(parser)
        plugins[entry_point.name] = module

    commands.add_parser(
        "worker",
        help="run a crawl worker and the scheduler without the web server",
        description="Claim crawl jobs from CRAWLER_STORE_URL and run them, and "
        "start the jobs of due schedules (unless CRAWLER_RUN_SCHEDULER is false), "
        "until SIGTERM.",
    )
    return plugins


def run_worker(settings: Settings) -> int:
    """Run a worker until SIGINT or SIGTERM; return the exit status."""
    logging.basicConfig(
        level=settings.log_level or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(_work(settings))


async def _work(settings: Settings) -> int:
    from crawler.scheduler import Scheduler
    from crawler.service import open_store
    from crawler.worker import Worker

    store = await open_store(settings)
    worker = Worker(store, settings)
    scheduler = Scheduler(store) if settings.run_scheduler else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await worker.start()
        if scheduler is not None:
            await scheduler.start()
        await stop.wait()
        logger.info("Signal received; stopping the worker")
        if scheduler is not None:
            await scheduler.stop()
        await worker.stop()
    finally:
        await store.close()
    return 0

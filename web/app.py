"""The aiohttp application: routes, middlewares, templates and background work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from crawler.settings import Settings
from crawler.store.base import Store
from web import api_docs, routes_pages, routes_schedules
from web.api import add_api_routes
from web.keys import OPENAPI_DOCUMENT, SETTINGS, STORE
from web.middlewares import (
    add_response_headers,
    problem_middleware,
    request_id_middleware,
    same_origin_middleware,
)
from web.openapi import build_openapi_document
from web.paths import (
    job_api_path,
    job_page_path,
    schedule_api_path,
    schedule_page_path,
)

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parent


def create_app(settings: Settings, *, store: Store | None = None) -> web.Application:
    """Build the app.

    With ``store`` given, the app uses that open store and leaves closing it
    to the caller (tests do this). Without it, the app opens the store that
    ``settings.store_url`` names at startup and closes it at cleanup. When
    ``settings.run_worker`` is true, a Worker runs crawl jobs in the
    background from startup to cleanup; request handlers never crawl. When
    ``settings.run_scheduler`` is true, a Scheduler fires due schedules.
    """
    app = web.Application(
        middlewares=[request_id_middleware, problem_middleware, same_origin_middleware],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS] = settings
    app[OPENAPI_DOCUMENT] = build_openapi_document()
    if store is not None:
        app[STORE] = store

    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.globals["job_page_path"] = job_page_path
    environment.globals["job_api_path"] = job_api_path
    environment.globals["schedule_page_path"] = schedule_page_path
    environment.globals["schedule_api_path"] = schedule_api_path

    add_api_routes(app)
    app.router.add_routes(api_docs.routes)
    app.router.add_routes(routes_pages.routes)
    app.router.add_routes(routes_pages.action_form_routes)
    app.router.add_routes(routes_schedules.routes)
    app.router.add_routes(routes_schedules.enabled_form_routes)
    app.router.add_static("/static/", PACKAGE_DIR / "static", name="static")

    app.on_response_prepare.append(add_response_headers)
    if store is None:
        app.cleanup_ctx.append(_store_context)
    if settings.run_worker:
        app.cleanup_ctx.append(_worker_context)
    if settings.run_scheduler:
        app.cleanup_ctx.append(_scheduler_context)
    return app


async def _store_context(app: web.Application) -> AsyncIterator[None]:
    """Open the configured store for the app's lifetime."""
    from crawler.service import open_store

    settings = app[SETTINGS]
    store = await open_store(settings)
    app[STORE] = store
    logger.info("store opened: %s", _redact_password(settings.store_url))
    try:
        yield
    finally:
        await store.close()
        logger.info("store closed: %s", _redact_password(settings.store_url))


def _redact_password(url: str) -> str:
    """Return the URL with any password replaced, so it can be logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def _worker_context(app: web.Application) -> AsyncIterator[None]:
    """Run a Worker that claims and crawls queued jobs while the app runs."""
    from crawler.worker import Worker

    worker = Worker(app[STORE], app[SETTINGS])
    await worker.start()
    logger.info("worker started")
    try:
        yield
    finally:
        await worker.stop()
        logger.info("worker stopped")


async def _scheduler_context(app: web.Application) -> AsyncIterator[None]:
    """Fire due schedules while the app runs; every replica does, see
    crawler.scheduler for why that starts each due time once."""
    from crawler.scheduler import Scheduler

    scheduler = Scheduler(app[STORE])
    await scheduler.start()
    try:
        yield
    finally:
        await scheduler.stop()

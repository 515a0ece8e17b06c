"""Fixtures for the web tests: a real SQLite store in tmp_path and a test client.

The client's server listens on 127.0.0.1 only (pytest-aiohttp's default), and
the app runs without a worker or a scheduler, so no test crawls, and no
schedule fires, unless the test starts that itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from crawler.settings import Settings
from crawler.store.sqlite import SqliteStore
from tests.web.helpers import Client
from web import create_app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        store_url=f"sqlite:///{tmp_path / 'crawler.db'}",
        run_worker=False,
        run_scheduler=False,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "crawler.db")
    yield store
    await store.close()


@pytest.fixture
def app(settings: Settings, store: SqliteStore) -> web.Application:
    return create_app(settings, store=store)


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    app: web.Application,
) -> Client:
    return await aiohttp_client(app)

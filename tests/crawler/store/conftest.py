"""Fixtures that run every store contract test once per Store implementation.

Each implementation has an opener in ``STORE_OPENERS``. An opener takes the
test's ``tmp_path`` and returns an open store. Two calls with the same path
must return two handles on the same data, as two processes would have. To
test another implementation, add its opener (one that skips the test when its
server is missing) and the contract tests run against it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from crawler.store.base import Job, Store
from crawler.store.sqlite import SqliteStore

StoreOpener = Callable[[Path], Awaitable[Store]]


async def open_sqlite(tmp_path: Path) -> Store:
    return await SqliteStore.open(tmp_path / "crawler.db")


STORE_OPENERS: dict[str, StoreOpener] = {"sqlite": open_sqlite}


@pytest.fixture(params=sorted(STORE_OPENERS))
def store_opener(request: pytest.FixtureRequest) -> StoreOpener:
    """The opener of the implementation under test."""
    opener: StoreOpener = STORE_OPENERS[request.param]
    return opener


@pytest.fixture
async def store(store_opener: StoreOpener, tmp_path: Path) -> AsyncIterator[Store]:
    """Yield an open, empty store; close it after the test."""
    opened = await store_opener(tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def other_store(
    store: Store, store_opener: StoreOpener, tmp_path: Path
) -> AsyncIterator[Store]:
    """Yield a second handle on ``store``'s data, as another process would open."""
    opened = await store_opener(tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def job(store: Store) -> Job:
    """A queued job in ``store``."""
    created, _ = await store.create_job({"seeds": ["http://a.test/"]})
    return created

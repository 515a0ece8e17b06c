"""Fixtures that run every store contract test once per Store implementation.

Each implementation has an opener in ``STORE_OPENERS``. An opener takes the
test's ``tmp_path`` and returns an open store. Two calls with the same path
must return two handles on the same data, as two processes would have. To
test another implementation, add its opener and the contract tests run against
it unchanged.

The MongoDB store runs when ``MONGODB_URL`` is set (``scripts/ferretdb.sh start``
prints one). Then a server that cannot be reached fails the tests. Without
``MONGODB_URL`` the mongo tests are not generated. When ``CI`` is set they are,
and they fail, because a CI run must test every store. Each test gets its own
database, dropped when the test ends.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from crawler.errors import StoreError
from crawler.store.base import Job, Store
from crawler.store.mongo import MongoStore
from crawler.store.sqlite import SqliteStore

StoreOpener = Callable[[Path], Awaitable[Store]]


async def open_sqlite(tmp_path: Path) -> Store:
    return await SqliteStore.open(tmp_path / "crawler.db")


MONGODB_URL = os.environ.get("MONGODB_URL", "").strip()
MONGO_SESSION = secrets.token_hex(4)
"""Part of every test database's name, so two test runs on one server never share
a database."""
_mongo_open_errors: list[str] = []
"""The first failure to reach MONGODB_URL, so later tests fail without waiting
for the driver's timeout again."""


def mongo_database_name(tmp_path: Path) -> str:
    """Return the test's database name: the same for every opener call of a test."""
    digest = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    return f"crawler_test_{MONGO_SESSION}_{digest}"


async def open_mongo(tmp_path: Path) -> Store:
    if not MONGODB_URL:
        pytest.fail(
            "MONGODB_URL is required when CI is set: run scripts/ferretdb.sh start "
            "and export the MONGODB_URL=... line it prints"
        )
    if _mongo_open_errors:
        pytest.fail(_mongo_open_errors[0])
    try:
        return await MongoStore.open(
            MONGODB_URL, database=mongo_database_name(tmp_path)
        )
    except StoreError as exc:
        _mongo_open_errors.append(
            f"MONGODB_URL={MONGODB_URL} is set, but its server failed: {exc}. "
            "Start it with scripts/ferretdb.sh start, or unset MONGODB_URL"
        )
        pytest.fail(_mongo_open_errors[0])


STORE_OPENERS: dict[str, StoreOpener] = {"sqlite": open_sqlite}
if MONGODB_URL or os.environ.get("CI"):
    STORE_OPENERS["mongo"] = open_mongo


@pytest.fixture(params=sorted(STORE_OPENERS))
def store_opener(request: pytest.FixtureRequest) -> StoreOpener:
    """The opener of the implementation under test."""
    opener: StoreOpener = STORE_OPENERS[request.param]
    return opener


@pytest.fixture(autouse=True)
async def _drop_mongo_database(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Drop the test's MongoDB database after a test that ran on the mongo store."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("store_opener") != "mongo":
        yield
        return

    tmp_path: Path = request.getfixturevalue("tmp_path")
    yield
    if not MONGODB_URL or _mongo_open_errors:
        return
    handle = await MongoStore.open(MONGODB_URL, database=mongo_database_name(tmp_path))
    try:
        await handle.drop_database()
    finally:
        await handle.close()


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

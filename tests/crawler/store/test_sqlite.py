"""Tests of what only the SQLite store has: its file, pragmas, schema and retries."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from crawler.errors import StoreError
from crawler.store import sqlite_db
from crawler.store.sqlite import SqliteStore
from crawler.store.sqlite_db import SCHEMA_VERSION


def read_pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]


@contextmanager
def write_lock_held(path: Path, seconds: float) -> Iterator[None]:
    """Hold the database's write lock from another connection for ``seconds``."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, connection.rollback)
    timer.start()
    try:
        yield
    finally:
        timer.join()
        connection.close()


async def test_open_creates_file_and_directories(tmp_path: Path) -> None:
    path = tmp_path / "data" / "store" / "crawler.db"

    store = await SqliteStore.open(path)
    await store.close()

    assert path.is_file()
    assert read_pragma(path, "user_version") == SCHEMA_VERSION
    assert read_pragma(path, "journal_mode") == "wal"


async def test_reopen_keeps_jobs(tmp_path: Path) -> None:
    path = tmp_path / "crawler.db"
    store = await SqliteStore.open(path)
    job, _ = await store.create_job({"seeds": ["http://a.test/"]})
    await store.close()

    reopened = await SqliteStore.open(path)
    try:
        assert await reopened.get_job(job.id) == job
    finally:
        await reopened.close()


def pragma_value(connection: sqlite3.Connection, name: str) -> object:
    return connection.execute(f"PRAGMA {name}").fetchone()[0]


async def test_connection_pragmas(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "crawler.db")
    try:
        # These pragmas are per connection, so the store's own must be read.
        pragmas = {
            name: await store._run("pragma", pragma_value, name)
            for name in ("busy_timeout", "synchronous", "foreign_keys")
        }
    finally:
        await store.close()

    assert pragmas["busy_timeout"] == sqlite_db.BUSY_TIMEOUT_MS
    assert pragmas["synchronous"] == 1, "1 is NORMAL"
    assert pragmas["foreign_keys"] == 1


async def test_newer_schema_rejected(tmp_path: Path) -> None:
    path = tmp_path / "crawler.db"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(StoreError, match="schema version"):
        await SqliteStore.open(path)


async def test_unopenable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")

    with pytest.raises(StoreError, match="open failed"):
        await SqliteStore.open(blocker / "crawler.db")


async def test_locked_database_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_MS", 20)
    path = tmp_path / "crawler.db"
    store = await SqliteStore.open(path)
    try:
        with write_lock_held(path, 0.15):
            job, created = await store.create_job({})
    finally:
        await store.close()

    assert created is True
    assert job.id


async def test_lock_outlasting_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_MS", 10)
    monkeypatch.setattr(sqlite_db, "RETRY_DELAY_S", 0.01)
    path = tmp_path / "crawler.db"
    store = await SqliteStore.open(path)
    try:
        with (
            write_lock_held(path, 0.5),
            pytest.raises(StoreError, match="create_job failed: database is locked"),
        ):
            await store.create_job({})
    finally:
        await store.close()


async def test_close_twice(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "crawler.db")

    await store.close()
    await store.close()

    with pytest.raises(StoreError, match="closed"):
        await store.get_job("any")

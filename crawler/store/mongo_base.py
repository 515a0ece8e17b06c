"""The parts of the MongoDB store that its other modules share."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from crawler.errors import StoreError
from crawler.store.base import ResultPage
from crawler.store.listing import decode_cursor, invalid_cursor, result_page

logger = logging.getLogger(__name__)

Document = dict[str, Any]

T = TypeVar("T")

DUPLICATE_KEY = 11000
"""MongoDB's error code for a write that breaks a unique index."""

LOCK_TTL_S = 30.0
"""Seconds after which a lock whose holder never released it may be taken over.

An operation under a lock takes milliseconds on a small database, but a
benchmark on a loaded FerretDB saw live holders keep a lock past 10 s. A
takeover from a live holder breaks the lock, so only a holder that died (or
lost its connection) should keep it this long."""

LOCK_WAIT_S = 15.0
"""Maximum seconds an operation waits for a lock before it raises StoreError."""

LOCK_RETRY_S = 0.002
"""Delay before the first retry of a taken lock. It doubles up to 0.05 s."""


@contextmanager
def store_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except PyMongoError as exc:
        raise StoreError(f"{operation} failed: {exc}") from exc


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def insert_new(
    collection: AsyncCollection[Document], documents: list[Document]
) -> int:
    """Insert the documents whose unique key is free and return how many.

    Duplicate key errors mean "already there" and are not raised. Any other
    write error raises the driver's BulkWriteError.
    """
    try:
        result = await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        write_errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in write_errors):
            raise
        return int(exc.details.get("nInserted", 0))
    return len(result.inserted_ids)


def decode_object_cursor(cursor: str, listing: str) -> ObjectId:
    """Return the ObjectId in ``cursor``; InvalidCursorError for anything else."""
    position = decode_cursor(cursor, listing)
    if type(position) is not str or not ObjectId.is_valid(position):
        raise invalid_cursor(cursor)
    return ObjectId(position)


def object_result_page(
    rows: list[tuple[ObjectId, T]], limit: int, listing: str
) -> ResultPage[T]:
    return result_page(rows, limit, listing, str)


class MongoBase:
    """Collections, error mapping and FerretDB lock documents that every part
    of :class:`~crawler.store.mongo.MongoStore` uses."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        database: AsyncDatabase[Document],
        *,
        use_locks: bool,
    ) -> None:
        self._client = client
        self._database = database
        self._jobs: AsyncCollection[Document] = database["jobs"]
        self._frontier: AsyncCollection[Document] = database["frontier"]
        self._pages: AsyncCollection[Document] = database["pages"]
        self._budgets: AsyncCollection[Document] = database["budgets"]
        self._hosts: AsyncCollection[Document] = database["hosts"]
        self._workers: AsyncCollection[Document] = database["workers"]
        self._locks: AsyncCollection[Document] = database["locks"]
        self._schedules: AsyncCollection[Document] = database["schedules"]
        self._schedule_runs: AsyncCollection[Document] = database["schedule_runs"]
        self._use_locks = use_locks
        self._closed = False

    async def _job_exists(self, job_id: str) -> bool:
        return await self._jobs.find_one({"_id": job_id}, {"_id": 1}) is not None

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Raise StoreError naming ``operation`` if the store is closed or the
        driver fails inside the block."""
        if self._closed:
            raise StoreError(f"{operation} failed: the MongoDB store is closed")
        with store_errors(operation):
            yield

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[None]:
        """Hold the lock ``name`` for the block when the server is FerretDB.

        The lock is a document in ``locks`` with ``_id`` = ``name``: the unique
        ``_id`` lets one insert win. A lock older than LOCK_TTL_S is deleted by
        the next operation that wants it. On MongoDB this does nothing, because
        its single-document updates are atomic.
        """
        if not self._use_locks:
            yield
            return

        token = secrets.token_hex(8)
        await self._acquire_lock(name, token)
        try:
            yield
        finally:
            await self._locks.delete_one({"_id": name, "token": token})

    async def _acquire_lock(self, name: str, token: str) -> None:
        # NOTE: FerretDB deletes a stale lock by _id after reading it, so two
        # processes that both find the same stale lock can delete each other's
        # new lock, and both hold it. That needs a holder that died first.
        deadline = time.monotonic() + LOCK_WAIT_S
        delay = LOCK_RETRY_S
        while True:
            try:
                await self._locks.insert_one(
                    {
                        "_id": name,
                        "token": token,
                        "expires_at": time.time() + LOCK_TTL_S,
                    }
                )
                return
            except DuplicateKeyError:
                pass

            stale = await self._locks.delete_one(
                {"_id": name, "expires_at": {"$lt": time.time()}}
            )
            if stale.deleted_count:
                logger.warning(
                    "Took over lock %s, whose holder never released it", name
                )
                continue
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"timed out after {LOCK_WAIT_S} s waiting for lock {name!r}, "
                    "because other processes kept it taken; retry the operation"
                )
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.05)

"""The replicated store: :class:`~crawler.store.base.Store` on a MongoDB database.

Open it with ``await MongoStore.open("mongodb://host/database")``. The database
named in the URL (``crawler`` when the URL names none) contains these collections:

* ``jobs``: one document per job, ``_id`` being the job id. ``seq``, an
  ObjectId, is the creation order that listings and claims sort on. Options are
  stored as JSON text, so any key and any integer survives unchanged.
* ``frontier``: one document per (job, canonical key), ``queued``,
  ``in_progress`` (with its ``owner`` and lease end ``expires_at``) or
  ``done``. Its ObjectId ``_id`` is the queue order.
* ``budgets``: one document per job (``_id`` the job id) with ``popped``, the
  number of entries in progress or done by a pop, which ``max_pages`` caps.
* ``hosts``: one document per (job, host) that a worker leased: ``owner``,
  ``expires_at`` and ``free_at``, when a released host may be fetched again.
* ``workers``: one document per (job, worker) working on the job, with the
  ``expires_at`` of its membership.
* ``pages``: a record's ``to_dict()`` JSON, its key, and the fields that the
  filters and counters read (``status_class``, ``error_kind``, ``depth``).
  Its ObjectId ``_id`` is the stored order.
* ``locks``: short-lived lock documents, used only on FerretDB (see below).
* ``schedules``: one document per schedule, ``_id`` being its id, with an
  ObjectId ``seq`` for the listing order and the job template as JSON text.
* ``schedule_runs``: one document per decided due time or manual run, ``_id``
  being ``schedule id/run key``, so the unique ``_id`` lets the first decision
  win.

Unique indexes on (job, key) make a second frontier entry or page record of a
key fail with a duplicate key error, which the store reads as "already there".
Every index is created at open, idempotently.

Order: the driver makes ObjectIds on the client. Within one process they
increase, but between processes they are ordered by their creation second
only. So "oldest first" between documents that two processes created within
the same second is arbitrary, and a listing or export that runs while another
process adds records can miss a record created in the second of its cursor.

Atomicity: on MongoDB, claims, pops and conditional transitions are single
``find_one_and_update`` calls, which are atomic per document. FerretDB 1.24
(its SQLite and PostgreSQL backends alike) runs ``findAndModify`` and updates
as a read followed by a write of the whole document, so two concurrent calls
can both win and one update can overwrite another. When the server is FerretDB,
the store therefore serializes every write of a job document, every state
change in a job's frontier (with its budget) and every host lease change with a
lock document, see :meth:`MongoStore._locked`.
Unique indexes and deletes are atomic on both servers.

Every public operation runs to its end even when its caller is cancelled
(``crawler/store/shielding.py`` says why).

Only features that MongoDB 6+ and FerretDB 1.24 both support are used: no
transactions, ``$facet``, ``$lookup``, partial or TTL indexes, or pipeline
updates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import secrets
import time
from collections.abc import (
    AsyncIterator,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from crawler.errors import StoreError
from crawler.frontier import CrawlRequest
from crawler.records import PageRecord, utc_timestamp
from crawler.store.base import (
    DEFAULT_REQUEST_LEASE_S,
    FINAL_STATES,
    Job,
    JobCounters,
    JobState,
    PageFilter,
    ResultPage,
)
from crawler.store.listing import (
    check_lease,
    check_limit,
    decode_cursor,
    invalid_cursor,
    result_page,
)
from crawler.store.schedules import (
    Missed,
    Overlap,
    RunOutcome,
    RunTrigger,
    Schedule,
    ScheduleRun,
    ScheduleSpec,
    Unchanged,
)
from crawler.store.shielding import shield_operations, shielded

logger = logging.getLogger(__name__)

Document = dict[str, Any]
T = TypeVar("T")

_NO_FILTER = PageFilter()

DEFAULT_DATABASE = "crawler"
"""The database used when the URL names none."""

DUPLICATE_KEY = 11000
"""MongoDB's error code for a write that breaks a unique index."""

LOCK_TTL_S = 10.0
"""Seconds after which a lock whose holder never released it may be taken over.

An operation under a lock takes milliseconds, so only a holder that died (or
lost its connection) keeps a lock this long."""
LOCK_WAIT_S = 15.0
"""Maximum seconds an operation waits for a lock before it raises StoreError."""
LOCK_RETRY_S = 0.002
"""Delay before the first retry of a taken lock. It doubles up to 0.05 s."""

# Error kinds that JobCounters.failed leaves out: the crawler skipped the URL on
# purpose, so nothing failed.
NOT_FAILURES = frozenset({"robots", "out_of_scope"})

# (collection, index name, keys, unique)
_INDEXES: tuple[tuple[str, str, list[tuple[str, int]], bool], ...] = (
    ("jobs", "jobs_by_seq", [("seq", ASCENDING)], True),
    ("jobs", "jobs_by_state", [("state", ASCENDING), ("seq", ASCENDING)], False),
    ("jobs", "jobs_by_idempotency", [("idempotency", ASCENDING)], True),
    ("frontier", "frontier_by_key", [("job", ASCENDING), ("key", ASCENDING)], True),
    (
        "frontier",
        "frontier_by_state",
        [("job", ASCENDING), ("state", ASCENDING), ("_id", ASCENDING)],
        False,
    ),
    (
        "frontier",
        "frontier_by_owner",
        [("job", ASCENDING), ("owner", ASCENDING)],
        False,
    ),
    ("hosts", "hosts_by_host", [("job", ASCENDING), ("host", ASCENDING)], True),
    (
        "workers",
        "workers_by_job",
        [("job", ASCENDING), ("worker", ASCENDING)],
        True,
    ),
    ("pages", "pages_by_key", [("job", ASCENDING), ("key", ASCENDING)], True),
    ("pages", "pages_by_job", [("job", ASCENDING), ("_id", ASCENDING)], False),
    ("schedules", "schedules_by_seq", [("seq", ASCENDING)], True),
    (
        "schedules",
        "schedules_due",
        [("enabled", ASCENDING), ("next_run_at", ASCENDING)],
        False,
    ),
    (
        "schedule_runs",
        "schedule_runs_by_due",
        [("schedule", ASCENDING), ("due_at", ASCENDING)],
        False,
    ),
    (
        "jobs",
        "jobs_by_schedule",
        [("schedule_id", ASCENDING), ("state", ASCENDING)],
        False,
    ),
)


@shield_operations
class MongoStore:
    """A Store on one MongoDB database, safe to share between hosts.

    Create it with :meth:`open`. Operations raise StoreError when the server
    fails or the store is closed.
    """

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

    @classmethod
    async def open(cls, url: str, *, database: str | None = None) -> MongoStore:
        """Connect to ``url`` and create the indexes unless they exist.

        ``database`` overrides the database that the URL names. Raises
        StoreError when the URL is invalid, the server cannot be reached (after
        the driver's server selection timeout, 30 s unless the URL sets
        ``serverSelectionTimeoutMS``) or it rejects the indexes.
        """
        with _store_errors("open"):
            client: AsyncMongoClient[Document] = AsyncMongoClient(url)
        try:
            db = (
                client[database]
                if database is not None
                else client.get_default_database(DEFAULT_DATABASE)
            )
            with _store_errors("open"):
                await _create_indexes(db)
                ferretdb_version = await _ferretdb_version(db)
        except BaseException:
            await client.close()
            raise

        if ferretdb_version is not None:
            logger.warning(
                "The server is FerretDB %s, whose updates are not atomic: job "
                "writes and frontier pops take a lock document",
                ferretdb_version,
            )
        logger.info("Opened MongoDB store, database %s", db.name)
        return cls(client, db, use_locks=ferretdb_version is not None)

    async def ping(self) -> None:
        with self._errors("ping"):
            await self._database.command("ping")

    async def close(self) -> None:
        """Close the client's connections. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._client.close()
        logger.info("Closed MongoDB store, database %s", self._database.name)

    async def drop_database(self) -> None:
        """Drop the store's database: every job, frontier entry and page record.

        The store stays open, and the next write creates the collections again
        but not their indexes. Tests use it to remove their database.
        """
        with self._errors("drop_database"):
            await self._client.drop_database(self._database.name)
        logger.info("Dropped MongoDB database %s", self._database.name)

    # -- jobs ---------------------------------------------------------------

    async def create_job(
        self,
        options: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        schedule_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Store a queued job with a random id and return it with True.

        With an ``idempotency_key`` that an earlier job has, return that job and
        False, whatever ``options`` are now. A unique index on the key decides a
        race between processes.
        """
        job_id = secrets.token_urlsafe(12)
        stamp = utc_timestamp()
        document: Document = {
            "_id": job_id,
            "seq": ObjectId(),
            "state": str(JobState.QUEUED),
            "options": _dump_json(dict(options)),
            "created_at": stamp,
            "updated_at": stamp,
            "idempotency": _idempotency_value(job_id, idempotency_key),
            "skipped": {},
        }
        if schedule_id is not None:
            document["schedule_id"] = schedule_id

        with self._errors("create_job"):
            try:
                await self._jobs.insert_one(document)
            except DuplicateKeyError:
                existing = await self._jobs.find_one(
                    {"idempotency": document["idempotency"]}
                )
            else:
                return _job_from_document(document), True

        if existing is None:
            raise StoreError(
                f"create_job failed: the job with idempotency key "
                f"{idempotency_key!r} was deleted while this job was created; retry"
            )
        return _job_from_document(existing), False

    async def get_job(self, job_id: str) -> Job | None:
        with self._errors("get_job"):
            document = await self._jobs.find_one({"_id": job_id})
        return None if document is None else _job_from_document(document)

    async def list_jobs(
        self,
        *,
        states: Collection[JobState] = (),
        limit: int = 50,
        cursor: str | None = None,
    ) -> ResultPage[Job]:
        """List jobs newest first.

        Raises InvalidCursorError for a cursor that this listing did not return.
        """
        check_limit(limit)
        query: Document = {}
        if cursor is not None:
            query["seq"] = {"$lt": _decode_cursor(cursor, _JOBS_LISTING)}
        if states:
            query["state"] = {"$in": [str(state) for state in states]}

        with self._errors("list_jobs"):
            documents = await (
                self._jobs.find(query).sort("seq", DESCENDING).limit(limit + 1)
            ).to_list()
        rows = [
            (document["seq"], _job_from_document(document)) for document in documents
        ]
        return _result_page(rows, limit, _JOBS_LISTING)

    async def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        allowed_from: Collection[JobState],
        last_error: str | None = None,
    ) -> Job | None:
        """Move the job to ``to`` if its state is in ``allowed_from``.

        Returns the updated job, or None when the job is missing or in another
        state. Entering RUNNING sets started_at unless it is set. Entering a
        final state sets finished_at and drops the lease, and entering any other
        state clears finished_at. A ``last_error`` replaces the stored one, and
        None keeps it.
        """
        if not allowed_from:
            return None
        query = {
            "_id": job_id,
            "state": {"$in": [str(state) for state in allowed_from]},
        }
        update = _transition_update(to, last_error, utc_timestamp())

        with self._errors("transition"):
            async with self._locked("jobs"):
                document = await self._jobs.find_one_and_update(
                    query, update, return_document=ReturnDocument.AFTER
                )
        return None if document is None else _job_from_document(document)

    async def delete_job(self, job_id: str) -> bool:
        """Delete the job's frontier and pages, then the job.

        Returns False if the job was missing. The deletes are separate writes:
        if one fails, the job stays, and deleting it again finishes the work.
        """
        # NOTE: a frontier entry or page that another process inserts for this
        # job while it is deleted can stay behind, unreachable, because the
        # existence check and the insert are separate operations.
        with self._errors("delete_job"):
            await self._frontier.delete_many({"job": job_id})
            await self._pages.delete_many({"job": job_id})
            await self._hosts.delete_many({"job": job_id})
            await self._workers.delete_many({"job": job_id})
            await self._budgets.delete_one({"_id": job_id})
            async with self._locked("jobs"):
                result = await self._jobs.delete_one({"_id": job_id})
        if result.deleted_count == 0:
            return False
        logger.info("Deleted job %s", job_id)
        return True

    async def counters(self, job_id: str) -> JobCounters:
        """Count the job's frontier entries and page records (zeros if missing).

        The counts come from two aggregations, so a write that lands between
        them can make the frontier and page counts disagree by that write.
        """
        with self._errors("counters"):
            if not await self._job_exists(job_id):
                return JobCounters()
            states = await self._group_counts(
                self._frontier, job_id, {"state": "$state"}
            )
            groups = await self._group_counts(
                self._pages,
                job_id,
                {"status_class": "$status_class", "error_kind": "$error_kind"},
            )
            budget = await self._budgets.find_one({"_id": job_id})
        popped = 0 if budget is None else int(budget.get("popped", 0))
        return dataclasses.replace(_job_counters(states, groups), popped=popped)

    async def add_skipped(self, job_id: str, counts: Mapping[str, int]) -> None:
        """Add link-skip counts (by reason) to the job. A missing job is ignored.

        Raises ValueError for a reason that is empty, contains ``.`` or starts
        with ``$``, because MongoDB reads those as paths or operators.
        """
        if not counts:
            return
        for reason in counts:
            _check_skip_reason(reason)
        increments = {f"skipped.{reason}": count for reason, count in counts.items()}

        with self._errors("add_skipped"):
            async with self._locked("jobs"):
                await self._jobs.update_one({"_id": job_id}, {"$inc": increments})

    # -- leases -------------------------------------------------------------

    async def claim_job(
        self,
        worker_id: str,
        *,
        lease_s: float,
        now: float,
        exclude: Collection[str] = (),
    ) -> Job | None:
        """Lease the oldest claimable job to ``worker_id`` and mark it running.

        Claimable are queued jobs and running jobs whose lease expired
        (``lease_expires_at < now``) or was released, except the jobs in
        ``exclude``. Returns None when there is none.
        """
        check_lease(lease_s)
        expires_at = now + lease_s
        stamp = utc_timestamp()
        query: Document = {
            "$or": [
                {"state": str(JobState.QUEUED)},
                {"state": str(JobState.RUNNING), "lease_expires_at": None},
                {"state": str(JobState.RUNNING), "lease_expires_at": {"$lt": now}},
            ]
        }
        if exclude:
            query["_id"] = {"$nin": list(exclude)}
        update = {
            "$set": {
                "state": str(JobState.RUNNING),
                "lease_owner": worker_id,
                "lease_expires_at": expires_at,
                "updated_at": stamp,
            },
            "$min": {"started_at": stamp},
        }

        # The document before the update shows whether this is a claim or a
        # reclaim, which the log reports.
        with self._errors("claim_job"):
            async with self._locked("jobs"):
                before = await self._jobs.find_one_and_update(
                    query,
                    update,
                    sort=[("seq", ASCENDING)],
                    return_document=ReturnDocument.BEFORE,
                )
        if before is None:
            return None

        job = _claimed_job(_job_from_document(before), worker_id, expires_at, stamp)
        if before["state"] == JobState.RUNNING:
            logger.warning(
                "Worker %s reclaimed job %s from %s, whose lease ended",
                worker_id,
                job.id,
                before.get("lease_owner"),
            )
        else:
            logger.info("Worker %s claimed job %s", worker_id, job.id)
        return job

    async def join_job(
        self, worker_id: str, *, now: float, exclude: Collection[str] = ()
    ) -> Job | None:
        """Return the oldest running job whose live lease another worker holds,
        except the jobs in ``exclude``, for ``worker_id`` to help with.

        Nothing is written: a helper leases the URLs and hosts it takes, not
        the job.
        """
        query: Document = {
            "state": str(JobState.RUNNING),
            "lease_expires_at": {"$gte": now},
            "lease_owner": {"$ne": worker_id},
        }
        if exclude:
            query["_id"] = {"$nin": list(exclude)}
        with self._errors("join_job"):
            document = await self._jobs.find_one(query, sort=[("seq", ASCENDING)])
        return None if document is None else _job_from_document(document)

    async def renew_lease(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> bool:
        """Extend the lease to ``now + lease_s``.

        Returns False if ``worker_id`` no longer holds the lease.
        """
        check_lease(lease_s)
        with self._errors("renew_lease"):
            async with self._locked("jobs"):
                result = await self._jobs.update_one(
                    {"_id": job_id, "lease_owner": worker_id},
                    {"$set": {"lease_expires_at": now + lease_s}},
                )
        return result.matched_count == 1

    async def release_job(self, job_id: str, worker_id: str) -> None:
        """Drop the lease if ``worker_id`` holds it. The job's state stays as it is."""
        with self._errors("release_job"):
            async with self._locked("jobs"):
                await self._jobs.update_one(
                    {"_id": job_id, "lease_owner": worker_id},
                    {"$unset": {"lease_owner": "", "lease_expires_at": ""}},
                )

    # -- frontier -----------------------------------------------------------

    async def add_requests(self, job_id: str, requests: Sequence[CrawlRequest]) -> int:
        """Queue the requests whose key the job has not seen and return how many.

        A missing job stores nothing and returns 0. Of two requests with one
        key in ``requests``, the first is queued.
        """
        if not requests:
            return 0
        unique = {request.key: request for request in reversed(requests)}
        documents = [
            _frontier_document(job_id, request)
            for request in requests
            if unique.get(request.key) is request
        ]

        with self._errors("add_requests"):
            if not await self._job_exists(job_id):
                return 0
            return await _insert_new(self._frontier, documents)

    async def claim_key(self, job_id: str, key: str) -> bool:
        """Mark ``key`` seen (as done) without queueing it.

        Returns False if the job has seen the key, or the job is missing.
        """
        document = {"_id": ObjectId(), "job": job_id, "key": key, "state": "done"}
        with self._errors("claim_key"):
            if not await self._job_exists(job_id):
                return False
            return await _insert_new(self._frontier, [document]) == 1

    async def pop_request(
        self,
        job_id: str,
        busy_hosts: Collection[str],
        worker_id: str,
        *,
        lease_s: float = DEFAULT_REQUEST_LEASE_S,
        now: float | None = None,
        max_pops: int | None = None,
        only_hosts: Collection[str] | None = None,
    ) -> CrawlRequest | None:
        """Mark the oldest queued request of a host not in ``busy_hosts`` as in
        progress for ``worker_id`` until ``now + lease_s`` and return it.

        With ``max_pops``, return None once the job's popped count reaches it:
        the request is popped first and put back in its place when the budget
        is spent, so a missing job or an empty queue writes nothing. With
        ``only_hosts``, take only requests of those hosts.
        """
        check_lease(lease_s)
        expires_at = (time.time() if now is None else now) + lease_s
        query: Document = {"job": job_id, "state": "queued"}
        host_filter: Document = {}
        if busy_hosts:
            host_filter["$nin"] = list(busy_hosts)
        if only_hosts is not None:
            host_filter["$in"] = list(only_hosts)
        if host_filter:
            query["host"] = host_filter

        # The server skips the queued entries of busy hosts one by one, so a pop
        # reads every queued entry of the busy hosts that is older than the
        # first free one.
        with self._errors("pop_request"):
            async with self._locked(f"frontier:{job_id}"):
                document = await self._frontier.find_one_and_update(
                    query,
                    {
                        "$set": {
                            "state": "in_progress",
                            "owner": worker_id,
                            "expires_at": expires_at,
                        }
                    },
                    sort=[("_id", ASCENDING)],
                    return_document=ReturnDocument.AFTER,
                )
                if document is None:
                    return None
                if not await self._reserve_pop(job_id, max_pops):
                    await self._frontier.update_one(
                        {"_id": document["_id"], "owner": worker_id},
                        {
                            "$set": {"state": "queued"},
                            "$unset": {"owner": "", "expires_at": ""},
                        },
                    )
                    return None
        return _request_from_document(document)

    async def return_request(self, job_id: str, key: str, worker_id: str) -> bool:
        """Put one of ``worker_id``'s in-progress requests back in its place in
        the queue; False if it is not in progress for that worker."""
        with self._errors("return_request"):
            async with self._locked(f"frontier:{job_id}"):
                result = await self._frontier.update_one(
                    {
                        "job": job_id,
                        "key": key,
                        "state": "in_progress",
                        "owner": worker_id,
                    },
                    {
                        "$set": {"state": "queued"},
                        "$unset": {"owner": "", "expires_at": ""},
                    },
                )
                if result.modified_count:
                    await self._add_popped(job_id, -1)
        return result.modified_count == 1

    async def complete_request(self, job_id: str, key: str) -> None:
        """Mark an in-progress request done. Other states are left as they are."""
        with self._errors("complete_request"):
            async with self._locked(f"frontier:{job_id}"):
                await self._frontier.update_one(
                    {"job": job_id, "key": key, "state": "in_progress"},
                    {
                        "$set": {"state": "done"},
                        "$unset": {"owner": "", "expires_at": ""},
                    },
                )

    async def renew_requests(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> int:
        """Extend the leases of the worker's in-progress requests and hosts in
        the job, and its membership in the job's workers, to ``now + lease_s``;
        return how many requests it holds."""
        check_lease(lease_s)
        expires_at = now + lease_s
        with self._errors("renew_requests"):
            async with self._locked(f"frontier:{job_id}"):
                result = await self._frontier.update_many(
                    {"job": job_id, "state": "in_progress", "owner": worker_id},
                    {"$set": {"expires_at": expires_at}},
                )
            async with self._locked(f"hosts:{job_id}"):
                await self._hosts.update_many(
                    {"job": job_id, "owner": worker_id},
                    {"$set": {"expires_at": expires_at}},
                )
            # One writer per document (the worker itself), so no lock.
            await self._workers.update_one(
                {"job": job_id, "worker": worker_id},
                {"$set": {"expires_at": expires_at}},
                upsert=True,
            )
        return result.matched_count

    async def requeue_in_progress(
        self,
        job_id: str,
        *,
        owner: str | None = None,
        expired_at: float | None = None,
    ) -> int:
        """Return in-progress requests of the job to the queue and count them.

        ``owner`` limits this to one worker's requests and ``expired_at`` to
        requests whose lease ended before that time; with neither, every
        in-progress request goes back. Requeued requests keep their place, so
        they are popped before newer ones, and leave the popped count.
        """
        query: Document = {"job": job_id, "state": "in_progress"}
        if owner is not None:
            query["owner"] = owner
        if expired_at is not None:
            query["$or"] = [
                {"expires_at": {"$lt": expired_at}},
                {"expires_at": None},
            ]
        with self._errors("requeue_in_progress"):
            async with self._locked(f"frontier:{job_id}"):
                result = await self._frontier.update_many(
                    query,
                    {
                        "$set": {"state": "queued"},
                        "$unset": {"owner": "", "expires_at": ""},
                    },
                )
                if result.modified_count:
                    await self._add_popped(job_id, -result.modified_count)
        if result.modified_count:
            logger.info(
                "Requeued %d in-progress requests of job %s",
                result.modified_count,
                job_id,
            )
        return result.modified_count

    # -- host leases ----------------------------------------------------------

    async def acquire_host(
        self, job_id: str, host: str, worker_id: str, *, lease_s: float, now: float
    ) -> bool:
        """Lease ``host`` in the job to ``worker_id`` until ``now + lease_s``.

        Succeeds when the worker holds the lease already (it is extended), or
        when no worker does (never leased, released or expired) and the host's
        ``free_at`` has passed. An upsert that finds the host leased to another
        worker breaks the unique (job, host) index, which reads as "taken".
        """
        check_lease(lease_s)
        query = {
            "job": job_id,
            "host": host,
            "$or": [
                {"owner": worker_id},
                {"owner": None, "free_at": {"$lte": now}},
                {"expires_at": {"$lt": now}, "free_at": {"$lte": now}},
            ],
        }
        update = {
            "$set": {"owner": worker_id, "expires_at": now + lease_s},
            "$setOnInsert": {"free_at": 0.0},
        }
        with self._errors("acquire_host"):
            if not await self._job_exists(job_id):
                return False
            async with self._locked(f"hosts:{job_id}"):
                try:
                    await self._hosts.update_one(query, update, upsert=True)
                except DuplicateKeyError:
                    return False
        return True

    async def held_hosts(self, job_id: str, *, now: float) -> dict[str, str | None]:
        """Map the job's hosts that a worker holds to the holder, and the hosts
        waiting for their ``free_at`` to None."""
        query = {
            "job": job_id,
            "$or": [
                {"owner": {"$ne": None}, "expires_at": {"$gte": now}},
                {"free_at": {"$gt": now}},
            ],
        }
        held: dict[str, str | None] = {}
        with self._errors("held_hosts"):
            async for document in self._hosts.find(query):
                live = (
                    document.get("owner") is not None
                    and document.get("expires_at", 0) >= now
                )
                held[document["host"]] = document["owner"] if live else None
        return held

    async def release_hosts(
        self,
        job_id: str,
        worker_id: str,
        free_at: Mapping[str, float],
        *,
        hosts: Collection[str] | None = None,
    ) -> int:
        """Drop the worker's leases on ``hosts`` in the job; return how many.

        With ``hosts`` None, drop all of them and the worker's membership in
        the job's workers: the worker leaves the job. ``free_at`` maps a host
        to the earliest time (epoch seconds) another worker may start a
        request to it; hosts missing from it are free at once.
        """
        query: Document = {"job": job_id, "owner": worker_id}
        if hosts is not None:
            query["host"] = {"$in": list(hosts)}
        with self._errors("release_hosts"):
            async with self._locked(f"hosts:{job_id}"):
                held = [
                    document["host"]
                    async for document in self._hosts.find(query, {"host": True})
                ]
                for host in held:
                    await self._hosts.update_one(
                        {"job": job_id, "host": host, "owner": worker_id},
                        {
                            "$set": {
                                "owner": None,
                                "expires_at": None,
                                "free_at": free_at.get(host, 0.0),
                            }
                        },
                    )
            if hosts is None:
                await self._workers.delete_one({"job": job_id, "worker": worker_id})
        return len(held)

    async def queued_hosts(self, job_id: str) -> set[str]:
        """Return the job's hosts that have queued requests."""
        with self._errors("queued_hosts"):
            hosts = await self._frontier.distinct(
                "host", {"job": job_id, "state": "queued"}
            )
        return set(hosts)

    async def live_workers(self, job_id: str, *, now: float) -> set[str]:
        """Return the workers whose membership in the job lasts past ``now``."""
        with self._errors("live_workers"):
            return {
                document["worker"]
                async for document in self._workers.find(
                    {"job": job_id, "expires_at": {"$gt": now}}, {"worker": True}
                )
            }

    async def _reserve_pop(self, job_id: str, max_pops: int | None) -> bool:
        """Count one pop in the job's budget unless it has reached ``max_pops``.

        Runs inside the frontier lock on FerretDB, where the read and the write
        are therefore one step. On MongoDB a conditional upsert does it: when
        the budget is spent, the filter misses and the upsert's new document
        breaks the unique ``_id``.
        """
        if max_pops is None:
            await self._add_popped(job_id, 1)
            return True
        if max_pops <= 0:
            return False
        try:
            await self._budgets.update_one(
                {"_id": job_id, "popped": {"$lt": max_pops}},
                {"$inc": {"popped": 1}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def _add_popped(self, job_id: str, delta: int) -> None:
        await self._budgets.update_one(
            {"_id": job_id}, {"$inc": {"popped": delta}}, upsert=True
        )

    # -- pages --------------------------------------------------------------

    async def save_page(self, job_id: str, record: PageRecord) -> bool:
        """Store the record unless one with its key exists. Returns True if stored.

        A missing job stores nothing and returns False.
        """
        document = _page_document(job_id, record)
        with self._errors("save_page"):
            if not await self._job_exists(job_id):
                return False
            return await _insert_new(self._pages, [document]) == 1

    async def list_pages(
        self,
        job_id: str,
        *,
        filters: PageFilter = _NO_FILTER,
        limit: int = 100,
        cursor: str | None = None,
    ) -> ResultPage[dict[str, Any]]:
        """List page records (as ``PageRecord.to_dict()``) in the order stored.

        Raises InvalidCursorError for a cursor of another listing or job.
        """
        check_limit(limit)
        listing = _pages_listing(job_id)
        after = None if cursor is None else _decode_cursor(cursor, listing)
        with self._errors("list_pages"):
            rows = await self._select_pages(job_id, filters, after, limit + 1)
        return _result_page(rows, limit, listing)

    async def iter_pages(
        self, job_id: str, *, filters: PageFilter = _NO_FILTER, batch_size: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every matching record in stored order, ``batch_size`` at a time.

        Each batch is one query that continues after the last record yielded,
        so records saved meanwhile are yielded too, and the iteration ends at
        the first batch that is not full.
        """
        check_limit(batch_size)
        after: ObjectId | None = None
        while True:
            # An export whose client goes away is cancelled here.
            with self._errors("iter_pages"):
                batch = await shielded(self._select_pages)(
                    job_id, filters, after, batch_size
                )
            for _, record in batch:
                yield record
            if len(batch) < batch_size:
                return
            after = batch[-1][0]

    # -- queries shared by several operations --------------------------------

    async def _job_exists(self, job_id: str) -> bool:
        return await self._jobs.find_one({"_id": job_id}, {"_id": 1}) is not None

    async def _group_counts(
        self, collection: AsyncCollection[Document], job_id: str, group: Document
    ) -> list[tuple[Document, int]]:
        """Count the job's documents by the fields in ``group`` (name: "$field")."""
        pipeline: list[Document] = [
            {"$match": {"job": job_id}},
            {"$group": {"_id": group, "count": {"$sum": 1}}},
        ]
        cursor = await collection.aggregate(pipeline)
        return [(row["_id"], int(row["count"])) async for row in cursor]

    async def _select_pages(
        self,
        job_id: str,
        filters: PageFilter,
        after: ObjectId | None,
        limit: int,
    ) -> list[tuple[ObjectId, dict[str, Any]]]:
        """Return up to ``limit`` matching records after ``after``, with their _id."""
        query = _page_query(job_id, filters)
        if after is not None:
            query["_id"] = {"$gt": after}
        documents = await (
            self._pages.find(query, {"record": 1})
            .sort("_id", ASCENDING)
            .limit(limit)
            .to_list()
        )
        return [
            (document["_id"], json.loads(document["record"])) for document in documents
        ]

    # -- errors and locks -----------------------------------------------------

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Raise StoreError naming ``operation`` if the store is closed or the
        driver fails inside the block."""
        if self._closed:
            raise StoreError(f"{operation} failed: the MongoDB store is closed")
        with _store_errors(operation):
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

    # -- schedules ----------------------------------------------------------

    async def create_schedule(
        self, spec: ScheduleSpec, *, next_run_at: int | None
    ) -> Schedule:
        """Store a schedule with a random id and return it."""
        schedule_id = secrets.token_urlsafe(12)
        stamp = utc_timestamp()
        document: Document = {
            "_id": schedule_id,
            "seq": ObjectId(),
            **_spec_fields(spec),
            "next_run_at": next_run_at,
            "created_at": stamp,
            "updated_at": stamp,
        }
        with self._errors("create_schedule"):
            await self._schedules.insert_one(document)
        logger.info("Created schedule %s", schedule_id)
        return _schedule_from_document(document)

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        with self._errors("get_schedule"):
            document = await self._schedules.find_one({"_id": schedule_id})
        return None if document is None else _schedule_from_document(document)

    async def list_schedules(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> ResultPage[Schedule]:
        """List schedules newest first.

        Raises InvalidCursorError for a cursor that this listing did not return.
        """
        check_limit(limit)
        query: Document = {}
        if cursor is not None:
            query["seq"] = {"$lt": _decode_cursor(cursor, _SCHEDULES_LISTING)}
        with self._errors("list_schedules"):
            documents = await (
                self._schedules.find(query).sort("seq", DESCENDING).limit(limit + 1)
            ).to_list()
        rows = [
            (document["seq"], _schedule_from_document(document))
            for document in documents
        ]
        return _result_page(rows, limit, _SCHEDULES_LISTING)

    async def update_schedule(
        self,
        schedule_id: str,
        spec: ScheduleSpec,
        *,
        next_run_at: int | Unchanged | None,
    ) -> Schedule | None:
        """Replace the spec, and the next run time unless it is UNCHANGED.

        Returns the updated schedule, or None when it is missing.
        """
        fields: Document = {**_spec_fields(spec), "updated_at": utc_timestamp()}
        if not isinstance(next_run_at, Unchanged):
            fields["next_run_at"] = next_run_at
        with self._errors("update_schedule"):
            async with self._locked("schedules"):
                document = await self._schedules.find_one_and_update(
                    {"_id": schedule_id},
                    {"$set": fields},
                    return_document=ReturnDocument.AFTER,
                )
        return None if document is None else _schedule_from_document(document)

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule, then its runs. The jobs it started stay.

        The deletes are separate writes: if the second fails, the runs stay
        behind, unreachable, and do no harm.
        """
        with self._errors("delete_schedule"):
            async with self._locked("schedules"):
                result = await self._schedules.delete_one({"_id": schedule_id})
            await self._schedule_runs.delete_many({"schedule": schedule_id})
        if result.deleted_count == 0:
            return False
        logger.info("Deleted schedule %s", schedule_id)
        return True

    async def due_schedules(self, now: int, *, limit: int) -> list[Schedule]:
        """Return enabled schedules due at ``now`` or earlier, earliest first."""
        check_limit(limit)
        query = {"enabled": True, "next_run_at": {"$lte": now}}
        with self._errors("due_schedules"):
            documents = await (
                self._schedules.find(query)
                .sort("next_run_at", ASCENDING)
                .limit(limit)
                .to_list()
            )
        return [_schedule_from_document(document) for document in documents]

    async def advance_schedule(
        self, schedule_id: str, *, due_at: int, next_run_at: int | None
    ) -> bool:
        """Set the next run time if it still is ``due_at``, and return whether it was.

        On MongoDB the conditional update is atomic by itself. On FerretDB it
        runs under the ``schedules`` lock, like every other schedule write.
        """
        with self._errors("advance_schedule"):
            async with self._locked("schedules"):
                result = await self._schedules.update_one(
                    {"_id": schedule_id, "next_run_at": due_at},
                    {"$set": {"next_run_at": next_run_at}},
                )
        return result.matched_count == 1

    async def record_schedule_run(self, run: ScheduleRun) -> ScheduleRun | None:
        """Store the run unless one with its key exists, and return the stored one.

        The unique ``_id`` decides a race, on MongoDB and FerretDB alike.
        Returns None, storing nothing, when the schedule is missing.
        """
        # NOTE: a schedule deleted between the existence check and the insert
        # leaves this run behind, unreachable.
        document = _run_document(run)
        with self._errors("record_schedule_run"):
            schedule = await self._schedules.find_one(
                {"_id": run.schedule_id}, {"_id": 1}
            )
            if schedule is None:
                return None
            try:
                await self._schedule_runs.insert_one(document)
            except DuplicateKeyError:
                existing = await self._schedule_runs.find_one({"_id": document["_id"]})
            else:
                return run
        if existing is None:
            raise StoreError(
                f"record_schedule_run failed: run {document['_id']!r} was deleted "
                "while it was recorded; retry"
            )
        return _run_from_document(existing)

    async def link_schedule_run(self, schedule_id: str, key: str, job_id: str) -> None:
        """Set the job of a started run.

        No lock: every process that links a run sets the same job id, the one
        that the job's idempotency key leads to.
        """
        with self._errors("link_schedule_run"):
            await self._schedule_runs.update_one(
                {"_id": _run_id(schedule_id, key)}, {"$set": {"job_id": job_id}}
            )

    async def list_schedule_runs(
        self, schedule_id: str, *, limit: int
    ) -> list[ScheduleRun]:
        """Return the schedule's latest runs, newest due time first."""
        check_limit(limit)
        with self._errors("list_schedule_runs"):
            documents = await (
                self._schedule_runs.find({"schedule": schedule_id})
                .sort(
                    [
                        ("due_at", DESCENDING),
                        ("decided_at", DESCENDING),
                        ("key", DESCENDING),
                    ]
                )
                .limit(limit)
                .to_list()
            )
        return [_run_from_document(document) for document in documents]

    async def has_unfinished_jobs(
        self, schedule_id: str, *, excluding_key: str | None = None
    ) -> bool:
        """Return whether a job of the schedule is queued, running or paused,
        other than the one with idempotency key ``excluding_key``."""
        query: Document = {
            "schedule_id": schedule_id,
            "state": {"$in": [str(state) for state in _UNFINISHED_STATES]},
        }
        if excluding_key is not None:
            query["idempotency"] = {"$ne": f"key:{excluding_key}"}
        with self._errors("has_unfinished_jobs"):
            return await self._jobs.find_one(query, {"_id": 1}) is not None


# -- opening -------------------------------------------------------------------


async def _create_indexes(database: AsyncDatabase[Document]) -> None:
    for collection, name, keys, unique in _INDEXES:
        await database[collection].create_index(keys, name=name, unique=unique)


async def _ferretdb_version(database: AsyncDatabase[Document]) -> str | None:
    """Return the FerretDB version that ``buildInfo`` reports, or None for MongoDB."""
    info = await database.command("buildInfo")
    version = info.get("ferretdbVersion")
    return None if version is None else str(version)


@contextmanager
def _store_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except PyMongoError as exc:
        raise StoreError(f"{operation} failed: {exc}") from exc


# -- documents -----------------------------------------------------------------


def _dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _idempotency_value(job_id: str, idempotency_key: str | None) -> str:
    """Return the value of the job's unique ``idempotency`` field.

    FerretDB 1.24 has no partial indexes and ignores ``sparse``, and MongoDB's
    unique index admits one document without the field. So every job gets a
    value: ``key:`` and its key, or ``job:`` and its id.
    """
    if idempotency_key is None:
        return f"job:{job_id}"
    return f"key:{idempotency_key}"


def _job_from_document(document: Document) -> Job:
    idempotency: str = document["idempotency"]
    expires_at = document.get("lease_expires_at")
    return Job(
        id=document["_id"],
        state=JobState(document["state"]),
        options=json.loads(document["options"]),
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        started_at=document.get("started_at"),
        finished_at=document.get("finished_at"),
        last_error=document.get("last_error"),
        schedule_id=document.get("schedule_id"),
        idempotency_key=idempotency.removeprefix("key:")
        if idempotency.startswith("key:")
        else None,
        lease_owner=document.get("lease_owner"),
        lease_expires_at=None if expires_at is None else float(expires_at),
        skipped={reason: int(count) for reason, count in document["skipped"].items()},
    )


def _transition_update(to: JobState, last_error: str | None, stamp: str) -> Document:
    """Return the update of :meth:`MongoStore.transition`.

    ``$min`` sets started_at only when it is missing or later than ``stamp``.
    """
    # NOTE: a process whose clock runs behind the one that first set started_at
    # moves it earlier; with one clock it is set once.
    fields: Document = {"state": str(to), "updated_at": stamp}
    unset: Document = {}
    update: Document = {"$set": fields}
    if to is JobState.RUNNING:
        update["$min"] = {"started_at": stamp}
    if to in FINAL_STATES:
        fields["finished_at"] = stamp
        unset.update({"lease_owner": "", "lease_expires_at": ""})
    else:
        unset["finished_at"] = ""
    if last_error is not None:
        fields["last_error"] = last_error
    update["$unset"] = unset
    return update


def _claimed_job(before: Job, worker_id: str, expires_at: float, stamp: str) -> Job:
    """Return the job as :meth:`MongoStore.claim_job`'s update leaves it."""
    started_at = stamp if before.started_at is None else min(before.started_at, stamp)
    return dataclasses.replace(
        before,
        state=JobState.RUNNING,
        lease_owner=worker_id,
        lease_expires_at=expires_at,
        updated_at=stamp,
        started_at=started_at,
    )


def _check_skip_reason(reason: str) -> None:
    if not reason or "." in reason or reason.startswith("$"):
        raise ValueError(
            f"invalid skip reason {reason!r}: it must be non-empty, contain no '.' "
            "and not start with '$'"
        )


def _job_counters(
    states: list[tuple[Document, int]], groups: list[tuple[Document, int]]
) -> JobCounters:
    frontier = {group["state"]: count for group, count in states}
    errors: dict[str, int] = {}
    for group, count in groups:
        kind = group.get("error_kind")
        if kind is not None:
            errors[kind] = errors.get(kind, 0) + count
    return JobCounters(
        queued=frontier.get("queued", 0),
        in_progress=frontier.get("in_progress", 0),
        done=frontier.get("done", 0),
        pages=sum(count for _, count in groups),
        fetched=sum(
            count for group, count in groups if group.get("status_class") is not None
        ),
        failed=sum(n for kind, n in errors.items() if kind not in NOT_FAILURES),
        errors=errors,
    )


def _frontier_document(job_id: str, request: CrawlRequest) -> Document:
    return {
        "_id": ObjectId(),
        "job": job_id,
        "key": request.key,
        "state": "queued",
        "url": request.url,
        "host": request.host,
        "depth": request.depth,
        "referrer": request.referrer,
    }


def _request_from_document(document: Document) -> CrawlRequest:
    return CrawlRequest(
        url=document["url"],
        key=document["key"],
        host=document["host"],
        depth=document["depth"],
        referrer=document.get("referrer"),
    )


def _page_document(job_id: str, record: PageRecord) -> Document:
    status = record.status
    return {
        "_id": ObjectId(),
        "job": job_id,
        "key": record.key,
        "status_class": None if status is None else status // 100,
        "error_kind": None if record.error is None else record.error.kind,
        "depth": record.depth,
        "record": _dump_json(record.to_dict()),
    }


def _page_query(job_id: str, filters: PageFilter) -> Document:
    query: Document = {"job": job_id}
    if filters.status_class is not None:
        query["status_class"] = filters.status_class
    if filters.depth is not None:
        query["depth"] = filters.depth
    if filters.error_kind is not None:
        query["error_kind"] = filters.error_kind
    elif filters.errors_only:
        query["error_kind"] = {"$ne": None}
    return query


async def _insert_new(
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


# -- cursors and arguments -----------------------------------------------------

_JOBS_LISTING = "jobs"


def _pages_listing(job_id: str) -> str:
    return f"pages:{job_id}"


def _decode_cursor(cursor: str, listing: str) -> ObjectId:
    """Return the ObjectId in ``cursor``; InvalidCursorError for anything else."""
    position = decode_cursor(cursor, listing)
    if type(position) is not str or not ObjectId.is_valid(position):
        raise invalid_cursor(cursor)
    return ObjectId(position)


def _result_page(
    rows: list[tuple[ObjectId, T]], limit: int, listing: str
) -> ResultPage[T]:
    return result_page(rows, limit, listing, str)


# -- schedules -----------------------------------------------------------------

_SCHEDULES_LISTING = "schedules"
_UNFINISHED_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


def _spec_fields(spec: ScheduleSpec) -> Document:
    return {
        "name": spec.name,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "job": _dump_json(spec.job),
        "enabled": spec.enabled,
        "overlap": str(spec.overlap),
        "missed": str(spec.missed),
    }


def _schedule_from_document(document: Document) -> Schedule:
    next_run_at = document.get("next_run_at")
    return Schedule(
        id=document["_id"],
        name=document["name"],
        cron=document["cron"],
        timezone=document["timezone"],
        job=json.loads(document["job"]),
        enabled=bool(document["enabled"]),
        overlap=Overlap(document["overlap"]),
        missed=Missed(document["missed"]),
        next_run_at=None if next_run_at is None else int(next_run_at),
        created_at=document["created_at"],
        updated_at=document["updated_at"],
    )


def _run_id(schedule_id: str, key: str) -> str:
    return f"{schedule_id}/{key}"


def _run_document(run: ScheduleRun) -> Document:
    return {
        "_id": _run_id(run.schedule_id, run.key),
        "schedule": run.schedule_id,
        "key": run.key,
        "due_at": run.due_at,
        "decided_at": run.decided_at,
        "trigger": str(run.trigger),
        "outcome": str(run.outcome),
        "missed_count": run.missed_count,
        "job_id": run.job_id,
    }


def _run_from_document(document: Document) -> ScheduleRun:
    return ScheduleRun(
        schedule_id=document["schedule"],
        key=document["key"],
        due_at=int(document["due_at"]),
        decided_at=int(document["decided_at"]),
        trigger=RunTrigger(document["trigger"]),
        outcome=RunOutcome(document["outcome"]),
        missed_count=int(document["missed_count"]),
        job_id=document.get("job_id"),
    )

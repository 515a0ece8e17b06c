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

The class is assembled from parts: ``mongo_base.py`` (collections, errors,
lock documents), ``mongo_frontier.py`` (frontiers and leases) and
``mongo_schedules.py``; this module has opening, jobs, job leases and pages.

Every public operation runs to its end even when its caller is cancelled
(``crawler/store/shielding.py`` says why).

Only features that MongoDB 6+ and FerretDB 1.24 both support are used: no
transactions, ``$facet``, ``$lookup``, partial or TTL indexes, or pipeline
updates.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any, TypeVar

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from crawler.errors import StoreError
from crawler.records import PageRecord, utc_timestamp
from crawler.store import mongo_base, mongo_frontier, mongo_schedules
from crawler.store.base import (
    FINAL_STATES,
    Job,
    JobCounters,
    JobState,
    PageFilter,
    ResultPage,
)
from crawler.store.listing import check_lease, check_limit
from crawler.store.mongo_base import Document
from crawler.store.shielding import shield_operations, shielded

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_NO_FILTER = PageFilter()

DEFAULT_DATABASE = "crawler"
"""The database used when the URL names none."""

NOT_FAILURES = frozenset({"robots", "out_of_scope"})

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
    ("workers", "workers_by_job", [("job", ASCENDING), ("worker", ASCENDING)], True),
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


async def _create_indexes(database: AsyncDatabase[Document]) -> None:
    for collection, name, keys, unique in _INDEXES:
        await database[collection].create_index(keys, name=name, unique=unique)


async def _ferretdb_version(database: AsyncDatabase[Document]) -> str | None:
    """Return the FerretDB version that ``buildInfo`` reports, or None for MongoDB."""
    info = await database.command("buildInfo")
    version = info.get("ferretdbVersion")
    return None if version is None else str(version)


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
    states: list[tuple[Document, int]],
    groups: list[tuple[Document, int]],
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


def _page_document(job_id: str, record: PageRecord) -> Document:
    status = record.status
    return {
        "_id": ObjectId(),
        "job": job_id,
        "key": record.key,
        "status_class": None if status is None else status // 100,
        "error_kind": None if record.error is None else record.error.kind,
        "depth": record.depth,
        "record": mongo_base.dump_json(record.to_dict()),
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


_JOBS_LISTING = "jobs"


def _pages_listing(job_id: str) -> str:
    return f"pages:{job_id}"


@shield_operations
class MongoStore(mongo_frontier.MongoFrontier, mongo_schedules.MongoSchedules):
    """A Store on one MongoDB database, safe to share between hosts.

    Create it with :meth:`open`. Operations raise StoreError when the server
    fails or the store is closed.
    """

    @classmethod
    async def open(cls, url: str, *, database: str | None = None) -> MongoStore:
        """Connect to ``url`` and create the indexes unless they exist.

        ``database`` overrides the database that the URL names. Raises
        StoreError when the URL is invalid, the server cannot be reached (after
        the driver's server selection timeout, 30 s unless the URL sets
        ``serverSelectionTimeoutMS``) or it rejects the indexes.
        """
        with mongo_base.store_errors("open"):
            client: AsyncMongoClient[Document] = AsyncMongoClient(url)
        try:
            db = (
                client[database]
                if database is not None
                else client.get_default_database(DEFAULT_DATABASE)
            )
            with mongo_base.store_errors("open"):
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
            "options": mongo_base.dump_json(dict(options)),
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
            query["seq"] = {
                "$lt": mongo_base.decode_object_cursor(cursor, _JOBS_LISTING)
            }
        if states:
            query["state"] = {"$in": [str(state) for state in states]}

        with self._errors("list_jobs"):
            documents = await (
                self._jobs.find(query).sort("seq", DESCENDING).limit(limit + 1)
            ).to_list()
        rows = [
            (document["seq"], _job_from_document(document)) for document in documents
        ]
        return mongo_base.object_result_page(rows, limit, _JOBS_LISTING)

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

    async def save_page(self, job_id: str, record: PageRecord) -> bool:
        """Store the record unless one with its key exists. Returns True if stored.

        A missing job stores nothing and returns False.
        """
        document = _page_document(job_id, record)
        with self._errors("save_page"):
            if not await self._job_exists(job_id):
                return False
            return await mongo_base.insert_new(self._pages, [document]) == 1

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
        after = (
            None if cursor is None else mongo_base.decode_object_cursor(cursor, listing)
        )
        with self._errors("list_pages"):
            rows = await self._select_pages(job_id, filters, after, limit + 1)
        return mongo_base.object_result_page(rows, limit, listing)

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

    async def _group_counts(
        self,
        collection: AsyncCollection[Document],
        job_id: str,
        group: Document,
    ) -> list[tuple[Document, int]]:
        """Count the job's documents by the fields in ``group`` (name: "$field")."""
        pipeline: list[Document] = [
            {"$match": {"job": job_id}},
            {"$group": {"_id": group, "count": {"$sum": 1}}},
        ]
        cursor = await collection.aggregate(pipeline)
        return [(row["_id"], int(row["count"])) async for row in cursor]

    async def _select_pages(
        self, job_id: str, filters: PageFilter, after: ObjectId | None, limit: int
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

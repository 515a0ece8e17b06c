"""The embedded store: :class:`~crawler.store.base.Store` on one SQLite file.

Several processes on one host (web workers, ``crawler worker`` processes) may
open the same file. Open it with ``await SqliteStore.open(path)``.

Driver: the standard library's ``sqlite3`` on one dedicated thread per store.
Each operation runs whole on that thread: ``BEGIN IMMEDIATE``, its statements,
``COMMIT`` and any retry. So the event loop never waits on a lock, and no other
coroutine's statement can land inside an open transaction. With aiosqlite every
statement is a separate hop to its thread, so coroutines sharing a connection
would need an asyncio lock around each transaction. The thread also encodes
and decodes the records' JSON. It adds no dependency.

Safety across processes:

* WAL journal, so readers never block the writer or each other.
* Every write starts with ``BEGIN IMMEDIATE``, which takes the database's write
  lock before the first read. Two processes claiming a job or popping a URL
  therefore never read the same row as free.
* ``busy_timeout`` makes SQLite wait up to 5 s for that lock. An operation that
  still gets ``database is locked`` is rolled back and retried up to
  ``MAX_ATTEMPTS`` times in all. After that it raises StoreError.

The SQL lives beside this module: ``sqlite_db.py`` (connection, schema,
transactions and retries), ``sqlite_jobs.py``, ``sqlite_frontier.py``,
``sqlite_pages.py`` and ``sqlite_schedules.py``. Each function there runs whole
on the store's thread.

Schema (version 2 in ``PRAGMA user_version``; a version 1 file gains the
``popped`` and ``expires_at`` columns when it is opened):

* ``jobs``: one row per job. ``seq`` (autoincrement) is the creation order that
  listings and claims use. ``options`` and ``skipped`` are JSON. ``popped``
  counts the frontier entries in progress or done by a pop.
* ``frontier``: one row per (job, canonical key), ``queued``, ``in_progress``
  (with its ``owner`` and lease end ``expires_at``) or ``done``, in ``seq``
  order. Keys marked seen by :meth:`SqliteStore.claim_key` are ``done`` rows
  without a URL.
* ``frontier_hosts``: per job and host, ``head`` is the ``seq`` of the host's
  oldest queued entry, or NULL. :meth:`SqliteStore.pop_request` reads it, so a
  pop skips only the busy hosts and not every queued entry of a busy host.
* ``host_leases``: per job and host, the worker that may fetch from it
  (``owner`` until ``expires_at``) and ``free_at``, when a released host may be
  fetched again.
* ``job_workers``: per job, the workers working on it and when their
  membership ends.
* ``pages``: a record's ``to_dict()`` JSON, its key, and the indexed columns
  that the filters and counters read (status, error_kind, depth).
* ``schedules`` and ``schedule_runs``: cron schedules and the outcome of each
  due time.

``updated_at`` changes when a job is created, claimed or changes state. Lease
renewals and releases leave it alone.

If the task awaiting an operation is cancelled, the operation still completes
or rolls back on the store's thread, and its result is dropped. A forked
process (a gunicorn worker) must open its own store, because a connection and
thread opened before the fork do not work in the child.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from crawler.errors import StoreError
from crawler.frontier import CrawlRequest
from crawler.records import PageRecord, utc_timestamp
from crawler.store import (
    sqlite_db,
    sqlite_frontier,
    sqlite_jobs,
    sqlite_pages,
    sqlite_schedules,
)
from crawler.store.base import (
    DEFAULT_REQUEST_LEASE_S,
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
    Schedule,
    ScheduleRun,
    ScheduleSpec,
    Unchanged,
)

logger = logging.getLogger(__name__)

_NO_FILTER = PageFilter()

P = ParamSpec("P")
T = TypeVar("T")


class SqliteStore:
    """A Store on one SQLite file, safe to share between processes on one host.

    Create it with :meth:`open`. Every operation runs on the store's own thread
    and raises StoreError when SQLite fails or the store is closed.
    """

    def __init__(
        self, path: Path, connection: sqlite3.Connection, executor: ThreadPoolExecutor
    ) -> None:
        self.path = path
        self._connection = connection
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        """Open the database at ``path`` and create its file and schema if missing.

        Missing parent directories are created. Raises StoreError when the file
        cannot be opened or its schema is newer than this code.
        """
        path = Path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, sqlite_db.connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise

        store = cls(path, connection, executor)
        try:
            await store._run("open", sqlite_db.prepare_database)
        except BaseException:
            await store.close()
            raise
        logger.info("Opened SQLite store %s", path)
        return store

    async def ping(self) -> None:
        await self._run("ping", sqlite_db.select_one)

    async def close(self) -> None:
        """Close the connection after the operations already started.

        A second call does nothing.
        """
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._connection.close)
        finally:
            self._executor.shutdown(wait=False)
        logger.info("Closed SQLite store %s", self.path)

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
        options_json = sqlite_db.dump_json(dict(options))
        job_id = secrets.token_urlsafe(12)
        return await self._run(
            "create_job",
            sqlite_jobs.insert_job,
            job_id,
            options_json,
            idempotency_key,
            schedule_id,
            utc_timestamp(),
        )

    async def get_job(self, job_id: str) -> Job | None:
        return await self._run("get_job", sqlite_jobs.select_job, job_id)

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
        before = None if cursor is None else _decode_cursor(cursor, _JOBS_LISTING)
        jobs = await self._run(
            "list_jobs",
            sqlite_jobs.select_jobs,
            [str(state) for state in states],
            before,
            limit + 1,
        )
        return _result_page(jobs, limit, _JOBS_LISTING)

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
        return await self._run(
            "transition",
            sqlite_jobs.update_job_state,
            job_id,
            to,
            [str(state) for state in allowed_from],
            last_error,
            utc_timestamp(),
        )

    async def delete_job(self, job_id: str) -> bool:
        """Delete the job, its frontier and its pages in one transaction.

        Returns False if the job was missing. The write lock is held while the
        rows are deleted, so other processes wait for a large job's deletion.
        """
        return await self._run("delete_job", sqlite_jobs.delete_job, job_id)

    async def counters(self, job_id: str) -> JobCounters:
        """Count the job's frontier entries and page records (zeros if missing)."""
        return await self._run("counters", sqlite_jobs.count_job, job_id)

    async def add_skipped(self, job_id: str, counts: Mapping[str, int]) -> None:
        """Add link-skip counts (by reason) to the job. A missing job is ignored."""
        if counts:
            await self._run(
                "add_skipped", sqlite_jobs.add_skipped, job_id, dict(counts)
            )

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
        return await self._run(
            "claim_job",
            sqlite_jobs.claim_job,
            worker_id,
            now + lease_s,
            now,
            utc_timestamp(),
            list(exclude),
        )

    async def join_job(
        self, worker_id: str, *, now: float, exclude: Collection[str] = ()
    ) -> Job | None:
        """Return the oldest running job whose live lease another worker holds,
        except the jobs in ``exclude``, for ``worker_id`` to help with.

        Nothing is written: a helper leases the URLs and hosts it takes, not
        the job.
        """
        return await self._run(
            "join_job", sqlite_jobs.select_joinable_job, worker_id, now, list(exclude)
        )

    async def renew_lease(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> bool:
        """Extend the lease to ``now + lease_s``.

        Returns False if ``worker_id`` no longer holds the lease.
        """
        check_lease(lease_s)
        return await self._run(
            "renew_lease", sqlite_jobs.renew_lease, job_id, worker_id, now + lease_s
        )

    async def release_job(self, job_id: str, worker_id: str) -> None:
        """Drop the lease if ``worker_id`` holds it. The job's state stays as it is."""
        await self._run("release_job", sqlite_jobs.release_job, job_id, worker_id)

    # -- frontier -----------------------------------------------------------

    async def add_requests(self, job_id: str, requests: Sequence[CrawlRequest]) -> int:
        """Queue the requests whose key the job has not seen and return how many.

        A missing job stores nothing and returns 0.
        """
        if not requests:
            return 0
        return await self._run(
            "add_requests", sqlite_frontier.insert_requests, job_id, list(requests)
        )

    async def claim_key(self, job_id: str, key: str) -> bool:
        """Mark ``key`` seen (as done) without queueing it.

        Returns False if the job has seen the key, or the job is missing.
        """
        return await self._run(
            "claim_key", sqlite_frontier.insert_seen_key, job_id, key
        )

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

        With ``max_pops``, return None once the job's popped count reaches it;
        with ``only_hosts``, take only requests of those hosts.
        """
        check_lease(lease_s)
        expires_at = (time.time() if now is None else now) + lease_s
        return await self._run(
            "pop_request",
            sqlite_frontier.pop_request,
            job_id,
            list(busy_hosts),
            worker_id,
            expires_at,
            max_pops,
            None if only_hosts is None else list(only_hosts),
        )

    async def return_request(self, job_id: str, key: str, worker_id: str) -> bool:
        """Put one of ``worker_id``'s in-progress requests back in its place in
        the queue; False if it is not in progress for that worker."""
        return await self._run(
            "return_request", sqlite_frontier.return_request, job_id, key, worker_id
        )

    async def complete_request(self, job_id: str, key: str) -> None:
        """Mark an in-progress request done. Other states are left as they are."""
        await self._run(
            "complete_request", sqlite_frontier.complete_request, job_id, key
        )

    async def renew_requests(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> int:
        """Extend the worker's request leases, host leases and membership in
        the job to ``now + lease_s``. Return how many requests it has leased."""
        check_lease(lease_s)
        return await self._run(
            "renew_requests",
            sqlite_frontier.renew_requests,
            job_id,
            worker_id,
            now + lease_s,
        )

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
        return await self._run(
            "requeue_in_progress",
            sqlite_frontier.requeue_in_progress,
            job_id,
            owner,
            expired_at,
        )

    # -- host leases ----------------------------------------------------------

    async def acquire_host(
        self, job_id: str, host: str, worker_id: str, *, lease_s: float, now: float
    ) -> bool:
        """Lease ``host`` in the job to ``worker_id`` until ``now + lease_s``.

        Succeeds when the worker holds the lease already (it is extended), or
        when no worker does (never leased, released or expired) and the host's
        ``free_at`` has passed.
        """
        check_lease(lease_s)
        return await self._run(
            "acquire_host",
            sqlite_frontier.acquire_host,
            job_id,
            host,
            worker_id,
            now,
            now + lease_s,
        )

    async def held_hosts(self, job_id: str, *, now: float) -> dict[str, str | None]:
        """Map each leased host of the job to its worker, and each host
        waiting for its ``free_at`` to None."""
        return await self._run(
            "held_hosts", sqlite_frontier.select_held_hosts, job_id, now
        )

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
        return await self._run(
            "release_hosts",
            sqlite_frontier.release_hosts,
            job_id,
            worker_id,
            dict(free_at),
            None if hosts is None else list(hosts),
        )

    async def queued_hosts(self, job_id: str) -> set[str]:
        """Return the job's hosts that have queued requests."""
        return await self._run(
            "queued_hosts", sqlite_frontier.select_queued_hosts, job_id
        )

    async def live_workers(self, job_id: str, *, now: float) -> set[str]:
        """Return the workers whose membership in the job lasts past ``now``."""
        return await self._run(
            "live_workers", sqlite_frontier.select_live_workers, job_id, now
        )

    # -- pages --------------------------------------------------------------

    async def save_page(self, job_id: str, record: PageRecord) -> bool:
        """Store the record unless one with its key exists. Returns True if stored.

        A missing job stores nothing and returns False.
        """
        return await self._run("save_page", sqlite_pages.insert_page, job_id, record)

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
        after = 0 if cursor is None else _decode_cursor(cursor, listing)
        pages = await self._run(
            "list_pages", sqlite_pages.select_pages, job_id, filters, after, limit + 1
        )
        return _result_page(pages, limit, listing)

    async def iter_pages(
        self, job_id: str, *, filters: PageFilter = _NO_FILTER, batch_size: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every matching record in stored order, ``batch_size`` at a time.

        Each batch is one query that continues after the last record yielded,
        so records saved meanwhile are yielded too, and the iteration ends at
        the first batch that is not full.
        """
        check_limit(batch_size)
        after = 0
        while True:
            batch = await self._run(
                "iter_pages",
                sqlite_pages.select_pages,
                job_id,
                filters,
                after,
                batch_size,
            )
            for _, record in batch:
                yield record
            if len(batch) < batch_size:
                return
            after = batch[-1][0]

    # -- the store's thread -------------------------------------------------

    async def _run(
        self,
        operation: str,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``function(connection, ...)`` on the store's thread, with retries."""
        if self._closed:
            raise StoreError(f"{operation} failed: the SQLite store is closed")
        call = functools.partial(
            sqlite_db.call_with_retries,
            self._connection,
            operation,
            function,
            *args,
            **kwargs,
        )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call)

    # -- schedules ----------------------------------------------------------

    async def create_schedule(
        self, spec: ScheduleSpec, *, next_run_at: int | None
    ) -> Schedule:
        """Store a schedule with a random id and return it."""
        schedule_id = secrets.token_urlsafe(12)
        return await self._run(
            "create_schedule",
            sqlite_schedules.insert_schedule,
            schedule_id,
            spec,
            next_run_at,
            utc_timestamp(),
        )

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        return await self._run(
            "get_schedule", sqlite_schedules.select_schedule, schedule_id
        )

    async def list_schedules(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> ResultPage[Schedule]:
        """List schedules newest first.

        Raises InvalidCursorError for a cursor that this listing did not return.
        """
        check_limit(limit)
        before = (
            None
            if cursor is None
            else _decode_cursor(cursor, sqlite_schedules.SCHEDULES_LISTING)
        )
        schedules = await self._run(
            "list_schedules", sqlite_schedules.select_schedules, before, limit + 1
        )
        return _result_page(schedules, limit, sqlite_schedules.SCHEDULES_LISTING)

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
        return await self._run(
            "update_schedule",
            sqlite_schedules.update_schedule,
            schedule_id,
            spec,
            next_run_at,
            utc_timestamp(),
        )

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule and its runs. The jobs it started stay."""
        return await self._run(
            "delete_schedule", sqlite_schedules.delete_schedule, schedule_id
        )

    async def due_schedules(self, now: int, *, limit: int) -> list[Schedule]:
        """Return enabled schedules due at ``now`` or earlier, earliest first."""
        check_limit(limit)
        return await self._run(
            "due_schedules", sqlite_schedules.select_due_schedules, now, limit
        )

    async def advance_schedule(
        self, schedule_id: str, *, due_at: int, next_run_at: int | None
    ) -> bool:
        """Set the next run time if it still is ``due_at``, and return whether it was.

        The comparison and the write are one UPDATE inside the write lock.
        """
        return await self._run(
            "advance_schedule",
            sqlite_schedules.advance_schedule,
            schedule_id,
            due_at,
            next_run_at,
        )

    async def record_schedule_run(self, run: ScheduleRun) -> ScheduleRun | None:
        """Store the run unless one with its key exists, and return the stored one.

        Returns None, storing nothing, when the schedule is missing.
        """
        return await self._run(
            "record_schedule_run", sqlite_schedules.insert_schedule_run, run
        )

    async def link_schedule_run(self, schedule_id: str, key: str, job_id: str) -> None:
        """Set the job of a started run."""
        await self._run(
            "link_schedule_run",
            sqlite_schedules.link_schedule_run,
            schedule_id,
            key,
            job_id,
        )

    async def list_schedule_runs(
        self, schedule_id: str, *, limit: int
    ) -> list[ScheduleRun]:
        """Return the schedule's latest runs, newest due time first."""
        check_limit(limit)
        return await self._run(
            "list_schedule_runs",
            sqlite_schedules.select_schedule_runs,
            schedule_id,
            limit,
        )

    async def has_unfinished_jobs(
        self, schedule_id: str, *, excluding_key: str | None = None
    ) -> bool:
        """Return whether a job of the schedule is queued, running or paused,
        other than the one with idempotency key ``excluding_key``."""
        return await self._run(
            "has_unfinished_jobs",
            sqlite_schedules.has_unfinished_jobs,
            schedule_id,
            excluding_key,
        )


# -- cursors and arguments -----------------------------------------------------

_JOBS_LISTING = "jobs"


def _pages_listing(job_id: str) -> str:
    return f"pages:{job_id}"


def _decode_cursor(cursor: str, listing: str) -> int:
    """Return the seq in ``cursor``; InvalidCursorError for anything else."""
    position = decode_cursor(cursor, listing)
    # SQLite integers are signed 64-bit: a larger position cannot be a seq.
    if type(position) is not int or not 0 <= position < 2**63:
        raise invalid_cursor(cursor)
    return position


def _result_page(rows: list[tuple[int, T]], limit: int, listing: str) -> ResultPage[T]:
    return result_page(rows, limit, listing, int)

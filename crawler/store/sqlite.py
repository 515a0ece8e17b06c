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
import json
import logging
import random
import secrets
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

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

logger = logging.getLogger(__name__)

_NO_FILTER = PageFilter()

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 5000
MAX_ATTEMPTS = 4
"""Attempts of one operation that keeps finding the database locked."""
RETRY_DELAY_S = 0.05
"""Delay before the first retry. It doubles per retry, plus up to 50 % jitter."""

# Error kinds that JobCounters.failed leaves out: the crawler skipped the URL on
# purpose, so nothing failed.
NOT_FAILURES = frozenset({"robots", "out_of_scope"})

_SCHEDULES_TABLE = """
    CREATE TABLE IF NOT EXISTS schedules (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        job TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        overlap TEXT NOT NULL,
        missed TEXT NOT NULL,
        next_run_at INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
"""
_SCHEDULE_RUNS_TABLE = """
    CREATE TABLE IF NOT EXISTS schedule_runs (
        schedule TEXT NOT NULL REFERENCES schedules (id),
        key TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        decided_at INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        outcome TEXT NOT NULL,
        missed_count INTEGER NOT NULL,
        job_id TEXT,
        PRIMARY KEY (schedule, key)
    ) WITHOUT ROWID
"""

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        options TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        last_error TEXT,
        schedule_id TEXT,
        idempotency_key TEXT UNIQUE,
        lease_owner TEXT,
        lease_expires_at REAL,
        skipped TEXT NOT NULL DEFAULT '{}',
        popped INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq)",
    """
    CREATE TABLE IF NOT EXISTS frontier (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job INTEGER NOT NULL REFERENCES jobs (seq),
        key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'in_progress', 'done')),
        url TEXT,
        host TEXT,
        depth INTEGER,
        referrer TEXT,
        owner TEXT,
        expires_at REAL,
        UNIQUE (job, key)
    )
    """,
    "CREATE INDEX IF NOT EXISTS frontier_by_state ON frontier (job, state, host, seq)",
    """
    CREATE TABLE IF NOT EXISTS frontier_hosts (
        job INTEGER NOT NULL REFERENCES jobs (seq),
        host TEXT NOT NULL,
        head INTEGER,
        PRIMARY KEY (job, host)
    ) WITHOUT ROWID
    """,
    """
    CREATE INDEX IF NOT EXISTS frontier_hosts_by_head
    ON frontier_hosts (job, head) WHERE head IS NOT NULL
    """,
    """
    CREATE INDEX IF NOT EXISTS frontier_in_progress
    ON frontier (job, owner) WHERE state = 'in_progress'
    """,
    """
    CREATE TABLE IF NOT EXISTS host_leases (
        job INTEGER NOT NULL REFERENCES jobs (seq),
        host TEXT NOT NULL,
        owner TEXT,
        expires_at REAL,
        free_at REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (job, host)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS job_workers (
        job INTEGER NOT NULL REFERENCES jobs (seq),
        worker TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (job, worker)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS pages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job INTEGER NOT NULL REFERENCES jobs (seq),
        key TEXT NOT NULL,
        status INTEGER,
        status_class INTEGER,
        error_kind TEXT,
        depth INTEGER NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (job, key)
    )
    """,
    "CREATE INDEX IF NOT EXISTS pages_by_job ON pages (job, seq)",
    # status_class (status // 100) is a plain column, not an expression or a
    # generated column: SQLite 3.40 reads the table rows to count through an
    # index on either, and a plain column's index covers the count.
    "CREATE INDEX IF NOT EXISTS pages_by_status_class ON pages (job, status_class)",
    "CREATE INDEX IF NOT EXISTS pages_by_error_kind ON pages (job, error_kind)",
    "CREATE INDEX IF NOT EXISTS pages_by_depth ON pages (job, depth)",
    """
    CREATE INDEX IF NOT EXISTS pages_with_error
    ON pages (job, seq) WHERE error_kind IS NOT NULL
    """,
    _SCHEDULES_TABLE,
    "CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_run_at) "
    "WHERE enabled = 1",
    _SCHEDULE_RUNS_TABLE,
    "CREATE INDEX IF NOT EXISTS schedule_runs_by_due "
    "ON schedule_runs (schedule, due_at)",
    "CREATE INDEX IF NOT EXISTS jobs_by_schedule ON jobs (schedule_id, state)",
)

_JOB_COLUMNS = (
    "id, state, options, created_at, updated_at, started_at, finished_at, "
    "last_error, schedule_id, idempotency_key, lease_owner, lease_expires_at, skipped"
)

# Statements that bring a database of an older schema version up to date,
# before _SCHEMA runs; keyed by the version they start from.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE jobs ADD COLUMN popped INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE frontier ADD COLUMN expires_at REAL",
    ),
}


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
            connection = await loop.run_in_executor(executor, _connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise

        store = cls(path, connection, executor)
        try:
            await store._run("open", _prepare_database)
        except BaseException:
            await store.close()
            raise
        logger.info("Opened SQLite store %s", path)
        return store

    async def ping(self) -> None:
        await self._run("ping", _select_one)

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
        options_json = _dump_json(dict(options))
        job_id = secrets.token_urlsafe(12)
        return await self._run(
            "create_job",
            _insert_job,
            job_id,
            options_json,
            idempotency_key,
            schedule_id,
            utc_timestamp(),
        )

    async def get_job(self, job_id: str) -> Job | None:
        return await self._run("get_job", _select_job, job_id)

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
            _select_jobs,
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
            _update_job_state,
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
        return await self._run("delete_job", _delete_job, job_id)

    async def counters(self, job_id: str) -> JobCounters:
        """Count the job's frontier entries and page records (zeros if missing)."""
        return await self._run("counters", _count_job, job_id)

    async def add_skipped(self, job_id: str, counts: Mapping[str, int]) -> None:
        """Add link-skip counts (by reason) to the job. A missing job is ignored."""
        if counts:
            await self._run("add_skipped", _add_skipped, job_id, dict(counts))

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
            _claim_job,
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
            "join_job", _select_joinable_job, worker_id, now, list(exclude)
        )

    async def renew_lease(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> bool:
        """Extend the lease to ``now + lease_s``.

        Returns False if ``worker_id`` no longer holds the lease.
        """
        check_lease(lease_s)
        return await self._run(
            "renew_lease", _renew_lease, job_id, worker_id, now + lease_s
        )

    async def release_job(self, job_id: str, worker_id: str) -> None:
        """Drop the lease if ``worker_id`` holds it. The job's state stays as it is."""
        await self._run("release_job", _release_job, job_id, worker_id)

    # -- frontier -----------------------------------------------------------

    async def add_requests(self, job_id: str, requests: Sequence[CrawlRequest]) -> int:
        """Queue the requests whose key the job has not seen and return how many.

        A missing job stores nothing and returns 0.
        """
        if not requests:
            return 0
        return await self._run("add_requests", _insert_requests, job_id, list(requests))

    async def claim_key(self, job_id: str, key: str) -> bool:
        """Mark ``key`` seen (as done) without queueing it.

        Returns False if the job has seen the key, or the job is missing.
        """
        return await self._run("claim_key", _insert_seen_key, job_id, key)

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
            _pop_request,
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
            "return_request", _return_request, job_id, key, worker_id
        )

    async def complete_request(self, job_id: str, key: str) -> None:
        """Mark an in-progress request done. Other states are left as they are."""
        await self._run("complete_request", _complete_request, job_id, key)

    async def renew_requests(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> int:
        """Extend the leases of the worker's in-progress requests and hosts in
        the job, and its membership in the job's workers, to ``now + lease_s``;
        return how many requests it holds."""
        check_lease(lease_s)
        return await self._run(
            "renew_requests", _renew_requests, job_id, worker_id, now + lease_s
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
            "requeue_in_progress", _requeue_in_progress, job_id, owner, expired_at
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
            "acquire_host", _acquire_host, job_id, host, worker_id, now, now + lease_s
        )

    async def held_hosts(self, job_id: str, *, now: float) -> dict[str, str | None]:
        """Map the job's hosts that a worker holds to the holder, and the hosts
        waiting for their ``free_at`` to None."""
        return await self._run("held_hosts", _select_held_hosts, job_id, now)

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
            _release_hosts,
            job_id,
            worker_id,
            dict(free_at),
            None if hosts is None else list(hosts),
        )

    async def queued_hosts(self, job_id: str) -> set[str]:
        """Return the job's hosts that have queued requests."""
        return await self._run("queued_hosts", _select_queued_hosts, job_id)

    async def live_workers(self, job_id: str, *, now: float) -> set[str]:
        """Return the workers whose membership in the job lasts past ``now``."""
        return await self._run("live_workers", _select_live_workers, job_id, now)

    # -- pages --------------------------------------------------------------

    async def save_page(self, job_id: str, record: PageRecord) -> bool:
        """Store the record unless one with its key exists. Returns True if stored.

        A missing job stores nothing and returns False.
        """
        return await self._run("save_page", _insert_page, job_id, record)

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
            "list_pages", _select_pages, job_id, filters, after, limit + 1
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
                "iter_pages", _select_pages, job_id, filters, after, batch_size
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
            _call_with_retries, self._connection, operation, function, *args, **kwargs
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
            _insert_schedule,
            schedule_id,
            spec,
            next_run_at,
            utc_timestamp(),
        )

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        return await self._run("get_schedule", _select_schedule, schedule_id)

    async def list_schedules(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> ResultPage[Schedule]:
        """List schedules newest first.

        Raises InvalidCursorError for a cursor that this listing did not return.
        """
        check_limit(limit)
        before = None if cursor is None else _decode_cursor(cursor, _SCHEDULES_LISTING)
        schedules = await self._run(
            "list_schedules", _select_schedules, before, limit + 1
        )
        return _result_page(schedules, limit, _SCHEDULES_LISTING)

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
            _update_schedule,
            schedule_id,
            spec,
            next_run_at,
            utc_timestamp(),
        )

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule and its runs. The jobs it started stay."""
        return await self._run("delete_schedule", _delete_schedule, schedule_id)

    async def due_schedules(self, now: int, *, limit: int) -> list[Schedule]:
        """Return enabled schedules due at ``now`` or earlier, earliest first."""
        check_limit(limit)
        return await self._run("due_schedules", _select_due_schedules, now, limit)

    async def advance_schedule(
        self, schedule_id: str, *, due_at: int, next_run_at: int | None
    ) -> bool:
        """Set the next run time if it still is ``due_at``, and return whether it was.

        The comparison and the write are one UPDATE inside the write lock.
        """
        return await self._run(
            "advance_schedule", _advance_schedule, schedule_id, due_at, next_run_at
        )

    async def record_schedule_run(self, run: ScheduleRun) -> ScheduleRun | None:
        """Store the run unless one with its key exists, and return the stored one.

        Returns None, storing nothing, when the schedule is missing.
        """
        return await self._run("record_schedule_run", _insert_schedule_run, run)

    async def link_schedule_run(self, schedule_id: str, key: str, job_id: str) -> None:
        """Set the job of a started run."""
        await self._run(
            "link_schedule_run", _link_schedule_run, schedule_id, key, job_id
        )

    async def list_schedule_runs(
        self, schedule_id: str, *, limit: int
    ) -> list[ScheduleRun]:
        """Return the schedule's latest runs, newest due time first."""
        check_limit(limit)
        return await self._run(
            "list_schedule_runs", _select_schedule_runs, schedule_id, limit
        )

    async def has_unfinished_jobs(
        self, schedule_id: str, *, excluding_key: str | None = None
    ) -> bool:
        """Return whether a job of the schedule is queued, running or paused,
        other than the one with idempotency key ``excluding_key``."""
        return await self._run(
            "has_unfinished_jobs", _has_unfinished_jobs, schedule_id, excluding_key
        )


# -- connection and retries ----------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"open failed: cannot open SQLite file {path}: {exc}") from exc
    connection.row_factory = sqlite3.Row
    return connection


def _prepare_database(connection: sqlite3.Connection) -> None:
    """Set the connection's pragmas and create the schema unless it exists."""
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        logger.warning(
            "SQLite journal mode is %s, not wal: readers and the writer will "
            "block each other",
            mode,
        )
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")

    with _transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"open failed: the database has schema version {version}, and this "
                f"code supports up to {SCHEMA_VERSION}; upgrade the crawler"
            )
        if version:
            for old in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS.get(old, ()):
                    connection.execute(statement)
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _call_with_retries(
    connection: sqlite3.Connection,
    operation: str,
    function: Callable[Concatenate[sqlite3.Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Call ``function`` and retry it while the database is locked.

    Every function runs its writes in one transaction that rolls back on
    error, so a retry starts from the state before the failed attempt.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return function(connection, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or attempt == MAX_ATTEMPTS:
                raise StoreError(f"{operation} failed: {exc}") from exc
            delay = RETRY_DELAY_S * 2 ** (attempt - 1) * (1 + random.random() / 2)
            logger.warning(
                "SQLite %s failed (%s), attempt %d of %d; retrying in %.2f s",
                operation,
                exc,
                attempt,
                MAX_ATTEMPTS,
                delay,
            )
            time.sleep(delay)
        except sqlite3.Error as exc:
            raise StoreError(f"{operation} failed: {exc}") from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


def _is_locked(error: sqlite3.OperationalError) -> bool:
    """True for SQLITE_BUSY and SQLITE_LOCKED, extended codes included."""
    primary_code = error.sqlite_errorcode & 0xFF
    return primary_code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


@contextmanager
def _transaction(
    connection: sqlite3.Connection, mode: str = "IMMEDIATE"
) -> Iterator[None]:
    """Run the block in a transaction: commit on success, roll back on any error.

    IMMEDIATE (for writes) takes the write lock before the first read.
    DEFERRED (for reads of several statements) gives one consistent snapshot.
    """
    connection.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        connection.rollback()
        raise
    connection.commit()


def _fetch_one(
    connection: sqlite3.Connection,
    sql: str,
    parameters: Sequence[Any] | Mapping[str, Any],
) -> sqlite3.Row | None:
    """Run ``sql`` to completion and return its first row.

    fetchall, not fetchone, because a statement left unfinished (an UPDATE
    with RETURNING among them) would keep the transaction from committing.
    """
    rows: list[sqlite3.Row] = connection.execute(sql, parameters).fetchall()
    return rows[0] if rows else None


def _select_one(connection: sqlite3.Connection) -> None:
    connection.execute("SELECT 1").fetchall()


def _dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _job_seq(connection: sqlite3.Connection, job_id: str) -> int | None:
    """Return the job's row number, which the frontier and pages refer to."""
    row = _fetch_one(connection, "SELECT seq FROM jobs WHERE id = ?", (job_id,))
    return None if row is None else int(row["seq"])


# -- jobs ----------------------------------------------------------------------


def _job_from_row(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        state=JobState(row["state"]),
        options=json.loads(row["options"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        last_error=row["last_error"],
        schedule_id=row["schedule_id"],
        idempotency_key=row["idempotency_key"],
        lease_owner=row["lease_owner"],
        lease_expires_at=_optional_float(row["lease_expires_at"]),
        skipped=json.loads(row["skipped"]),
    )


def _optional_float(value: float | None) -> float | None:
    """Return ``value`` as a float: RETURNING yields the integer that was bound."""
    return None if value is None else float(value)


def _insert_job(
    connection: sqlite3.Connection,
    job_id: str,
    options_json: str,
    idempotency_key: str | None,
    schedule_id: str | None,
    stamp: str,
) -> tuple[Job, bool]:
    with _transaction(connection):
        inserted = _fetch_one(
            connection,
            f"""
            INSERT INTO jobs (id, state, options, created_at, updated_at,
                              schedule_id, idempotency_key)
            VALUES (?, 'queued', ?, ?, ?, ?, ?)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING {_JOB_COLUMNS}
            """,
            (job_id, options_json, stamp, stamp, schedule_id, idempotency_key),
        )
        if inserted is not None:
            return _job_from_row(inserted), True

        existing = _fetch_one(
            connection,
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?",
            (idempotency_key,),
        )
    if existing is None:
        raise AssertionError("a conflicting idempotency key has no job")
    return _job_from_row(existing), False


def _select_job(connection: sqlite3.Connection, job_id: str) -> Job | None:
    row = _fetch_one(
        connection, f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
    )
    return None if row is None else _job_from_row(row)


def _select_jobs(
    connection: sqlite3.Connection, states: list[str], before: int | None, limit: int
) -> list[tuple[int, Job]]:
    """Return up to ``limit`` (seq, job) pairs below seq ``before``, newest first."""
    conditions = ["seq < :before"] if before is not None else []
    if states:
        conditions.append("state IN (SELECT value FROM json_each(:states))")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = connection.execute(
        f"SELECT seq, {_JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT :limit",
        {"before": before, "states": _dump_json(states), "limit": limit},
    ).fetchall()
    return [(row["seq"], _job_from_row(row)) for row in rows]


def _update_job_state(
    connection: sqlite3.Connection,
    job_id: str,
    to: JobState,
    allowed_from: list[str],
    last_error: str | None,
    stamp: str,
) -> Job | None:
    with _transaction(connection):
        row = _fetch_one(
            connection,
            f"""
            UPDATE jobs SET
                state = :to,
                updated_at = :stamp,
                started_at = CASE WHEN :running THEN coalesce(started_at, :stamp)
                                  ELSE started_at END,
                finished_at = CASE WHEN :final THEN :stamp ELSE NULL END,
                lease_owner = CASE WHEN :final THEN NULL ELSE lease_owner END,
                lease_expires_at = CASE WHEN :final THEN NULL
                                        ELSE lease_expires_at END,
                last_error = coalesce(:last_error, last_error)
            WHERE id = :id AND state IN (SELECT value FROM json_each(:allowed))
            RETURNING {_JOB_COLUMNS}
            """,
            {
                "id": job_id,
                "to": str(to),
                "stamp": stamp,
                "running": to is JobState.RUNNING,
                "final": to in FINAL_STATES,
                "last_error": last_error,
                "allowed": _dump_json(allowed_from),
            },
        )
    return None if row is None else _job_from_row(row)


def _delete_job(connection: sqlite3.Connection, job_id: str) -> bool:
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return False
        # Children first: the foreign keys reject a job deleted before its rows.
        tables = ("pages", "job_workers", "host_leases", "frontier_hosts", "frontier")
        for table in tables:
            connection.execute(f"DELETE FROM {table} WHERE job = ?", (job,))
        connection.execute("DELETE FROM jobs WHERE seq = ?", (job,))
    logger.info("Deleted job %s", job_id)
    return True


def _add_skipped(
    connection: sqlite3.Connection, job_id: str, counts: dict[str, int]
) -> None:
    with _transaction(connection):
        row = _fetch_one(connection, "SELECT skipped FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            return
        skipped: dict[str, int] = json.loads(row["skipped"])
        for reason, count in counts.items():
            skipped[reason] = skipped.get(reason, 0) + count
        connection.execute(
            "UPDATE jobs SET skipped = ? WHERE id = ?", (_dump_json(skipped), job_id)
        )


def _count_job(connection: sqlite3.Connection, job_id: str) -> JobCounters:
    with _transaction(connection, "DEFERRED"):
        job_row = _fetch_one(
            connection, "SELECT seq, popped FROM jobs WHERE id = ?", (job_id,)
        )
        if job_row is None:
            return JobCounters()
        job = int(job_row["seq"])
        frontier = dict(
            connection.execute(
                "SELECT state, count(*) FROM frontier WHERE job = ? GROUP BY state",
                (job,),
            ).fetchall()
        )
        status_classes: dict[int | None, int] = dict(
            connection.execute(
                "SELECT status_class, count(*) FROM pages "
                "WHERE job = ? GROUP BY status_class",
                (job,),
            ).fetchall()
        )
        errors: dict[str, int] = dict(
            connection.execute(
                "SELECT error_kind, count(*) FROM pages "
                "WHERE job = ? AND error_kind IS NOT NULL GROUP BY error_kind",
                (job,),
            ).fetchall()
        )
    return JobCounters(
        queued=frontier.get("queued", 0),
        in_progress=frontier.get("in_progress", 0),
        done=frontier.get("done", 0),
        pages=sum(status_classes.values()),
        fetched=sum(n for group, n in status_classes.items() if group is not None),
        failed=sum(n for kind, n in errors.items() if kind not in NOT_FAILURES),
        errors=errors,
        popped=job_row["popped"],
    )


# -- leases --------------------------------------------------------------------

# Two index lookups instead of one scan with OR: the oldest queued job, and the
# oldest running job whose lease expired or was released.
_CLAIMABLE_JOB_SQL = """
    SELECT seq, state, lease_owner FROM jobs WHERE seq = (
        SELECT min(seq) FROM (
            SELECT min(seq) AS seq FROM jobs
            WHERE state = 'queued'
              AND id NOT IN (SELECT value FROM json_each(:exclude))
            UNION ALL
            SELECT min(seq) FROM jobs
            WHERE state = 'running'
              AND (lease_expires_at IS NULL OR lease_expires_at < :now)
              AND id NOT IN (SELECT value FROM json_each(:exclude))
        )
    )
"""


def _claim_job(
    connection: sqlite3.Connection,
    worker_id: str,
    expires_at: float,
    now: float,
    stamp: str,
    exclude: list[str],
) -> Job | None:
    with _transaction(connection):
        candidate = _fetch_one(
            connection, _CLAIMABLE_JOB_SQL, {"now": now, "exclude": _dump_json(exclude)}
        )
        if candidate is None:
            return None
        row = _fetch_one(
            connection,
            f"""
            UPDATE jobs SET
                state = 'running',
                lease_owner = :worker,
                lease_expires_at = :expires_at,
                started_at = coalesce(started_at, :stamp),
                updated_at = :stamp
            WHERE seq = :seq
            RETURNING {_JOB_COLUMNS}
            """,
            {
                "worker": worker_id,
                "expires_at": expires_at,
                "stamp": stamp,
                "seq": candidate["seq"],
            },
        )
    if row is None:
        raise AssertionError("a claimable job vanished inside its transaction")
    job = _job_from_row(row)
    if candidate["state"] == JobState.RUNNING:
        logger.warning(
            "Worker %s reclaimed job %s from %s, whose lease ended",
            worker_id,
            job.id,
            candidate["lease_owner"],
        )
    else:
        logger.info("Worker %s claimed job %s", worker_id, job.id)
    return job


def _select_joinable_job(
    connection: sqlite3.Connection, worker_id: str, now: float, exclude: list[str]
) -> Job | None:
    row = _fetch_one(
        connection,
        f"""
        SELECT {_JOB_COLUMNS} FROM jobs
        WHERE state = 'running' AND lease_expires_at >= :now
          AND lease_owner != :worker
          AND id NOT IN (SELECT value FROM json_each(:exclude))
        ORDER BY seq LIMIT 1
        """,
        {"now": now, "worker": worker_id, "exclude": _dump_json(exclude)},
    )
    return None if row is None else _job_from_row(row)


def _renew_lease(
    connection: sqlite3.Connection, job_id: str, worker_id: str, expires_at: float
) -> bool:
    with _transaction(connection):
        cursor = connection.execute(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
            (expires_at, job_id, worker_id),
        )
    return cursor.rowcount == 1


def _release_job(connection: sqlite3.Connection, job_id: str, worker_id: str) -> None:
    with _transaction(connection):
        connection.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = ? AND lease_owner = ?",
            (job_id, worker_id),
        )


# -- frontier ------------------------------------------------------------------


def _insert_requests(
    connection: sqlite3.Connection, job_id: str, requests: Sequence[CrawlRequest]
) -> int:
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return 0
        cursor = connection.executemany(
            """
            INSERT INTO frontier (job, key, state, url, host, depth, referrer)
            VALUES (?, ?, 'queued', ?, ?, ?, ?)
            ON CONFLICT (job, key) DO NOTHING
            """,
            [(job, r.key, r.url, r.host, r.depth, r.referrer) for r in requests],
        )
        added = cursor.rowcount
        if added:
            for host in {request.host for request in requests}:
                _refresh_host_head(connection, job, host)
    return added


def _refresh_host_head(connection: sqlite3.Connection, job: int, host: str) -> None:
    """Set the host's head to its oldest queued entry (NULL if none)."""
    connection.execute(
        """
        INSERT INTO frontier_hosts (job, host, head)
        VALUES (:job, :host, (SELECT min(seq) FROM frontier
                              WHERE job = :job AND state = 'queued' AND host = :host))
        ON CONFLICT (job, host) DO UPDATE SET head = excluded.head
        """,
        {"job": job, "host": host},
    )


def _insert_seen_key(connection: sqlite3.Connection, job_id: str, key: str) -> bool:
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return False
        cursor = connection.execute(
            "INSERT INTO frontier (job, key, state) VALUES (?, ?, 'done') "
            "ON CONFLICT (job, key) DO NOTHING",
            (job, key),
        )
    return cursor.rowcount == 1


def _pop_request(
    connection: sqlite3.Connection,
    job_id: str,
    busy_hosts: list[str],
    worker_id: str,
    expires_at: float,
    max_pops: int | None,
    only_hosts: list[str] | None,
) -> CrawlRequest | None:
    with _transaction(connection):
        job_row = _fetch_one(
            connection, "SELECT seq, popped FROM jobs WHERE id = ?", (job_id,)
        )
        if job_row is None:
            return None
        if max_pops is not None and job_row["popped"] >= max_pops:
            return None
        job = int(job_row["seq"])

        # The index on (job, head) yields hosts oldest head first, so this
        # reads at most one row per busy host before it finds a free one.
        head = _fetch_one(
            connection,
            """
            SELECT host, head FROM frontier_hosts
            WHERE job = :job AND head IS NOT NULL
              AND host NOT IN (SELECT value FROM json_each(:busy))
              AND (:only IS NULL OR host IN (SELECT value FROM json_each(:only)))
            ORDER BY head LIMIT 1
            """,
            {
                "job": job,
                "busy": _dump_json(busy_hosts),
                "only": None if only_hosts is None else _dump_json(only_hosts),
            },
        )
        if head is None:
            return None

        row = _fetch_one(
            connection,
            "UPDATE frontier SET state = 'in_progress', owner = ?, expires_at = ? "
            "WHERE seq = ? RETURNING url, key, host, depth, referrer",
            (worker_id, expires_at, head["head"]),
        )
        _refresh_host_head(connection, job, head["host"])
        connection.execute("UPDATE jobs SET popped = popped + 1 WHERE seq = ?", (job,))
    if row is None:
        raise AssertionError("a host's head names no frontier entry")
    return CrawlRequest(
        url=row["url"],
        key=row["key"],
        host=row["host"],
        depth=row["depth"],
        referrer=row["referrer"],
    )


def _return_request(
    connection: sqlite3.Connection, job_id: str, key: str, worker_id: str
) -> bool:
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return False
        row = _fetch_one(
            connection,
            "UPDATE frontier SET state = 'queued', owner = NULL, expires_at = NULL "
            "WHERE job = ? AND key = ? AND state = 'in_progress' AND owner = ? "
            "RETURNING host",
            (job, key, worker_id),
        )
        if row is None:
            return False
        _refresh_host_head(connection, job, row["host"])
        connection.execute(
            "UPDATE jobs SET popped = max(0, popped - 1) WHERE seq = ?", (job,)
        )
    return True


def _complete_request(connection: sqlite3.Connection, job_id: str, key: str) -> None:
    with _transaction(connection):
        connection.execute(
            """
            UPDATE frontier SET state = 'done', owner = NULL
            WHERE job = (SELECT seq FROM jobs WHERE id = ?)
              AND key = ? AND state = 'in_progress'
            """,
            (job_id, key),
        )


def _renew_requests(
    connection: sqlite3.Connection, job_id: str, worker_id: str, expires_at: float
) -> int:
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return 0
        cursor = connection.execute(
            "UPDATE frontier SET expires_at = ? "
            "WHERE job = ? AND state = 'in_progress' AND owner = ?",
            (expires_at, job, worker_id),
        )
        renewed = cursor.rowcount
        connection.execute(
            "UPDATE host_leases SET expires_at = ? WHERE job = ? AND owner = ?",
            (expires_at, job, worker_id),
        )
        connection.execute(
            "INSERT INTO job_workers (job, worker, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (job, worker) DO UPDATE SET expires_at = excluded.expires_at",
            (job, worker_id, expires_at),
        )
    return renewed


def _requeue_in_progress(
    connection: sqlite3.Connection,
    job_id: str,
    owner: str | None,
    expired_at: float | None,
) -> int:
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return 0
        rows = connection.execute(
            """
            UPDATE frontier SET state = 'queued', owner = NULL, expires_at = NULL
            WHERE job = :job AND state = 'in_progress'
              AND (:owner IS NULL OR owner = :owner)
              AND (:expired_at IS NULL OR coalesce(expires_at, 0) < :expired_at)
            RETURNING host
            """,
            {"job": job, "owner": owner, "expired_at": expired_at},
        ).fetchall()
        for host in {row["host"] for row in rows}:
            _refresh_host_head(connection, job, host)
        if rows:
            connection.execute(
                "UPDATE jobs SET popped = max(0, popped - ?) WHERE seq = ?",
                (len(rows), job),
            )
    if rows:
        logger.info("Requeued %d in-progress requests of job %s", len(rows), job_id)
    return len(rows)


# -- host leases ---------------------------------------------------------------


def _acquire_host(
    connection: sqlite3.Connection,
    job_id: str,
    host: str,
    worker_id: str,
    now: float,
    expires_at: float,
) -> bool:
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return False
        row = _fetch_one(
            connection,
            """
            INSERT INTO host_leases (job, host, owner, expires_at)
            VALUES (:job, :host, :worker, :expires_at)
            ON CONFLICT (job, host) DO UPDATE
            SET owner = :worker, expires_at = :expires_at
            WHERE owner = :worker
               OR ((owner IS NULL OR expires_at < :now) AND free_at <= :now)
            RETURNING owner
            """,
            {
                "job": job,
                "host": host,
                "worker": worker_id,
                "now": now,
                "expires_at": expires_at,
            },
        )
    return row is not None


def _select_held_hosts(
    connection: sqlite3.Connection, job_id: str, now: float
) -> dict[str, str | None]:
    rows = connection.execute(
        """
        SELECT host, CASE WHEN owner IS NOT NULL AND expires_at >= :now
                          THEN owner END AS holder
        FROM host_leases
        WHERE job = (SELECT seq FROM jobs WHERE id = :id)
          AND ((owner IS NOT NULL AND expires_at >= :now) OR free_at > :now)
        """,
        {"id": job_id, "now": now},
    ).fetchall()
    return {row["host"]: row["holder"] for row in rows}


def _release_hosts(
    connection: sqlite3.Connection,
    job_id: str,
    worker_id: str,
    free_at: dict[str, float],
    only: list[str] | None,
) -> int:
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return 0
        hosts = [
            row["host"]
            for row in connection.execute(
                "SELECT host FROM host_leases WHERE job = ? AND owner = ?",
                (job, worker_id),
            ).fetchall()
            if only is None or row["host"] in only
        ]
        if only is None:
            connection.execute(
                "DELETE FROM job_workers WHERE job = ? AND worker = ?",
                (job, worker_id),
            )
        connection.executemany(
            "UPDATE host_leases SET owner = NULL, expires_at = NULL, free_at = ? "
            "WHERE job = ? AND host = ?",
            [(free_at.get(host, 0.0), job, host) for host in hosts],
        )
    return len(hosts)


def _select_queued_hosts(connection: sqlite3.Connection, job_id: str) -> set[str]:
    rows = connection.execute(
        "SELECT host FROM frontier_hosts "
        "WHERE job = (SELECT seq FROM jobs WHERE id = ?) AND head IS NOT NULL",
        (job_id,),
    ).fetchall()
    return {row["host"] for row in rows}


def _select_live_workers(
    connection: sqlite3.Connection, job_id: str, now: float
) -> set[str]:
    rows = connection.execute(
        "SELECT worker FROM job_workers "
        "WHERE job = (SELECT seq FROM jobs WHERE id = ?) AND expires_at > ?",
        (job_id, now),
    ).fetchall()
    return {row["worker"] for row in rows}


# -- pages ---------------------------------------------------------------------


def _insert_page(
    connection: sqlite3.Connection, job_id: str, record: PageRecord
) -> bool:
    status = record.status
    row = (
        record.key,
        status,
        None if status is None else status // 100,
        None if record.error is None else record.error.kind,
        record.depth,
        _dump_json(record.to_dict()),
    )
    with _transaction(connection):
        job = _job_seq(connection, job_id)
        if job is None:
            return False
        cursor = connection.execute(
            """
            INSERT INTO pages (job, key, status, status_class, error_kind, depth,
                               record)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (job, key) DO NOTHING
            """,
            (job, *row),
        )
    return cursor.rowcount == 1


def _select_pages(
    connection: sqlite3.Connection,
    job_id: str,
    filters: PageFilter,
    after: int,
    limit: int,
) -> list[tuple[int, dict[str, Any]]]:
    """Return up to ``limit`` matching records after seq ``after``, with their seq."""
    conditions = ["job = (SELECT seq FROM jobs WHERE id = :job_id)", "seq > :after"]
    if filters.status_class is not None:
        conditions.append("status_class = :status_class")
    if filters.error_kind is not None:
        conditions.append("error_kind = :error_kind")
    if filters.depth is not None:
        conditions.append("depth = :depth")
    if filters.errors_only:
        conditions.append("error_kind IS NOT NULL")
    rows = connection.execute(
        f"SELECT seq, record FROM pages WHERE {' AND '.join(conditions)} "
        "ORDER BY seq LIMIT :limit",
        {
            "job_id": job_id,
            "after": after,
            "status_class": filters.status_class,
            "error_kind": filters.error_kind,
            "depth": filters.depth,
            "limit": limit,
        },
    ).fetchall()
    return [(row["seq"], json.loads(row["record"])) for row in rows]


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


# -- schedules -----------------------------------------------------------------

_SCHEDULES_LISTING = "schedules"
_SCHEDULE_COLUMNS = (
    "id, name, cron, timezone, job, enabled, overlap, missed, next_run_at, "
    "created_at, updated_at"
)
_RUN_COLUMNS = (
    "schedule, key, due_at, decided_at, trigger, outcome, missed_count, job_id"
)
_UNFINISHED_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


def _schedule_from_row(row: sqlite3.Row) -> Schedule:
    return Schedule(
        id=row["id"],
        name=row["name"],
        cron=row["cron"],
        timezone=row["timezone"],
        job=json.loads(row["job"]),
        enabled=bool(row["enabled"]),
        overlap=Overlap(row["overlap"]),
        missed=Missed(row["missed"]),
        next_run_at=row["next_run_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _spec_parameters(spec: ScheduleSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "job": _dump_json(spec.job),
        "enabled": int(spec.enabled),
        "overlap": str(spec.overlap),
        "missed": str(spec.missed),
    }


def _insert_schedule(
    connection: sqlite3.Connection,
    schedule_id: str,
    spec: ScheduleSpec,
    next_run_at: int | None,
    stamp: str,
) -> Schedule:
    with _transaction(connection):
        row = _fetch_one(
            connection,
            f"""
            INSERT INTO schedules (id, name, cron, timezone, job, enabled, overlap,
                                   missed, next_run_at, created_at, updated_at)
            VALUES (:id, :name, :cron, :timezone, :job, :enabled, :overlap,
                    :missed, :next_run_at, :stamp, :stamp)
            RETURNING {_SCHEDULE_COLUMNS}
            """,
            {
                "id": schedule_id,
                **_spec_parameters(spec),
                "next_run_at": next_run_at,
                "stamp": stamp,
            },
        )
    if row is None:
        raise AssertionError("INSERT ... RETURNING returned no row")
    logger.info("Created schedule %s", schedule_id)
    return _schedule_from_row(row)


def _select_schedule(
    connection: sqlite3.Connection, schedule_id: str
) -> Schedule | None:
    row = _fetch_one(
        connection,
        f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE id = ?",
        (schedule_id,),
    )
    return None if row is None else _schedule_from_row(row)


def _select_schedules(
    connection: sqlite3.Connection, before: int | None, limit: int
) -> list[tuple[int, Schedule]]:
    """Return up to ``limit`` (seq, schedule) pairs below seq ``before``."""
    rows = connection.execute(
        f"""
        SELECT seq, {_SCHEDULE_COLUMNS} FROM schedules
        WHERE :before IS NULL OR seq < :before
        ORDER BY seq DESC LIMIT :limit
        """,
        {"before": before, "limit": limit},
    ).fetchall()
    return [(row["seq"], _schedule_from_row(row)) for row in rows]


def _update_schedule(
    connection: sqlite3.Connection,
    schedule_id: str,
    spec: ScheduleSpec,
    next_run_at: int | Unchanged | None,
    stamp: str,
) -> Schedule | None:
    keep = isinstance(next_run_at, Unchanged)
    next_value = None if isinstance(next_run_at, Unchanged) else next_run_at
    with _transaction(connection):
        row = _fetch_one(
            connection,
            f"""
            UPDATE schedules SET
                name = :name, cron = :cron, timezone = :timezone, job = :job,
                enabled = :enabled, overlap = :overlap, missed = :missed,
                next_run_at = CASE WHEN :keep THEN next_run_at ELSE :next_run_at END,
                updated_at = :stamp
            WHERE id = :id
            RETURNING {_SCHEDULE_COLUMNS}
            """,
            {
                "id": schedule_id,
                **_spec_parameters(spec),
                "keep": keep,
                "next_run_at": next_value,
                "stamp": stamp,
            },
        )
    return None if row is None else _schedule_from_row(row)


def _delete_schedule(connection: sqlite3.Connection, schedule_id: str) -> bool:
    with _transaction(connection):
        connection.execute(
            "DELETE FROM schedule_runs WHERE schedule = ?", (schedule_id,)
        )
        cursor = connection.execute(
            "DELETE FROM schedules WHERE id = ?", (schedule_id,)
        )
    if cursor.rowcount == 0:
        return False
    logger.info("Deleted schedule %s", schedule_id)
    return True


def _select_due_schedules(
    connection: sqlite3.Connection, now: int, limit: int
) -> list[Schedule]:
    rows = connection.execute(
        f"""
        SELECT {_SCHEDULE_COLUMNS} FROM schedules
        WHERE enabled = 1 AND next_run_at <= ?
        ORDER BY next_run_at LIMIT ?
        """,
        (now, limit),
    ).fetchall()
    return [_schedule_from_row(row) for row in rows]


def _advance_schedule(
    connection: sqlite3.Connection,
    schedule_id: str,
    due_at: int,
    next_run_at: int | None,
) -> bool:
    with _transaction(connection):
        cursor = connection.execute(
            "UPDATE schedules SET next_run_at = ? WHERE id = ? AND next_run_at = ?",
            (next_run_at, schedule_id, due_at),
        )
    return cursor.rowcount == 1


def _run_from_row(row: sqlite3.Row) -> ScheduleRun:
    return ScheduleRun(
        schedule_id=row["schedule"],
        key=row["key"],
        due_at=row["due_at"],
        decided_at=row["decided_at"],
        trigger=RunTrigger(row["trigger"]),
        outcome=RunOutcome(row["outcome"]),
        missed_count=row["missed_count"],
        job_id=row["job_id"],
    )


def _insert_schedule_run(
    connection: sqlite3.Connection, run: ScheduleRun
) -> ScheduleRun | None:
    with _transaction(connection):
        exists = _fetch_one(
            connection, "SELECT 1 FROM schedules WHERE id = ?", (run.schedule_id,)
        )
        if exists is None:
            return None
        connection.execute(
            f"""
            INSERT INTO schedule_runs ({_RUN_COLUMNS})
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (schedule, key) DO NOTHING
            """,
            (
                run.schedule_id,
                run.key,
                run.due_at,
                run.decided_at,
                str(run.trigger),
                str(run.outcome),
                run.missed_count,
                run.job_id,
            ),
        )
        row = _fetch_one(
            connection,
            f"SELECT {_RUN_COLUMNS} FROM schedule_runs WHERE schedule = ? AND key = ?",
            (run.schedule_id, run.key),
        )
    if row is None:
        raise AssertionError("a schedule run vanished inside its transaction")
    return _run_from_row(row)


def _link_schedule_run(
    connection: sqlite3.Connection, schedule_id: str, key: str, job_id: str
) -> None:
    with _transaction(connection):
        connection.execute(
            "UPDATE schedule_runs SET job_id = ? WHERE schedule = ? AND key = ?",
            (job_id, schedule_id, key),
        )


def _select_schedule_runs(
    connection: sqlite3.Connection, schedule_id: str, limit: int
) -> list[ScheduleRun]:
    rows = connection.execute(
        f"""
        SELECT {_RUN_COLUMNS} FROM schedule_runs WHERE schedule = ?
        ORDER BY due_at DESC, decided_at DESC, key DESC LIMIT ?
        """,
        (schedule_id, limit),
    ).fetchall()
    return [_run_from_row(row) for row in rows]


def _has_unfinished_jobs(
    connection: sqlite3.Connection, schedule_id: str, excluding_key: str | None
) -> bool:
    row = _fetch_one(
        connection,
        """
        SELECT 1 FROM jobs
        WHERE schedule_id = :schedule
          AND state IN (SELECT value FROM json_each(:states))
          AND (:excluding IS NULL OR idempotency_key IS NOT :excluding)
        LIMIT 1
        """,
        {
            "schedule": schedule_id,
            "states": _dump_json([str(state) for state in _UNFINISHED_STATES]),
            "excluding": excluding_key,
        },
    )
    return row is not None

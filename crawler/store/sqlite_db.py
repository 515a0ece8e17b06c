"""The SQLite store's connection, schema and transactions.

Every function here runs on the store's own thread (see ``sqlite.py``).
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from crawler.errors import StoreError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 5000
MAX_ATTEMPTS = 4
"""Attempts of one operation that keeps finding the database locked."""
RETRY_DELAY_S = 0.05
"""Delay before the first retry. It doubles per retry, plus up to 50 % jitter."""

SCHEDULES_TABLE = """
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
SCHEDULE_RUNS_TABLE = """
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

SCHEMA = (
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
    SCHEDULES_TABLE,
    "CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_run_at) "
    "WHERE enabled = 1",
    SCHEDULE_RUNS_TABLE,
    "CREATE INDEX IF NOT EXISTS schedule_runs_by_due "
    "ON schedule_runs (schedule, due_at)",
    "CREATE INDEX IF NOT EXISTS jobs_by_schedule ON jobs (schedule_id, state)",
)

# Statements that bring a database of an older schema version up to date,
# before SCHEMA runs; keyed by the version they start from.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE jobs ADD COLUMN popped INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE frontier ADD COLUMN expires_at REAL",
    )
}


# -- connection and retries ----------------------------------------------------


def connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"open failed: cannot open SQLite file {path}: {exc}") from exc
    connection.row_factory = sqlite3.Row
    return connection


def prepare_database(connection: sqlite3.Connection) -> None:
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

    with transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"open failed: the database has schema version {version}, and this "
                f"code supports up to {SCHEMA_VERSION}; upgrade the crawler"
            )
        if version:
            for old in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS.get(old, ()):
                    connection.execute(statement)
        for statement in SCHEMA:
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def call_with_retries(
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
            if not is_locked(exc) or attempt == MAX_ATTEMPTS:
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


def is_locked(error: sqlite3.OperationalError) -> bool:
    """True for SQLITE_BUSY and SQLITE_LOCKED, extended codes included."""
    primary_code = error.sqlite_errorcode & 0xFF
    return primary_code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


@contextmanager
def transaction(
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


def fetch_one(
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


def select_one(connection: sqlite3.Connection) -> None:
    connection.execute("SELECT 1").fetchall()


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def job_seq(connection: sqlite3.Connection, job_id: str) -> int | None:
    """Return the job's row number, which the frontier and pages refer to."""
    row = fetch_one(connection, "SELECT seq FROM jobs WHERE id = ?", (job_id,))
    return None if row is None else int(row["seq"])

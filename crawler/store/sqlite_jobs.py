"""SQL of the SQLite store for jobs, their counters and their leases."""

from __future__ import annotations

import json
import logging
import sqlite3

from crawler.store import sqlite_db
from crawler.store.base import FINAL_STATES, Job, JobCounters, JobState

logger = logging.getLogger(__name__)

# Error kinds that JobCounters.failed leaves out: the crawler skipped the URL on
# purpose, so nothing failed.
NOT_FAILURES = frozenset({"robots", "out_of_scope"})

JOB_COLUMNS = (
    "id, state, options, created_at, updated_at, started_at, finished_at, "
    "last_error, schedule_id, idempotency_key, lease_owner, lease_expires_at, skipped"
)


# -- jobs ----------------------------------------------------------------------


def job_from_row(row: sqlite3.Row) -> Job:
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
        lease_expires_at=optional_float(row["lease_expires_at"]),
        skipped=json.loads(row["skipped"]),
    )


def optional_float(value: float | None) -> float | None:
    """Return ``value`` as a float: RETURNING yields the integer that was bound."""
    return None if value is None else float(value)


def insert_job(
    connection: sqlite3.Connection,
    job_id: str,
    options_json: str,
    idempotency_key: str | None,
    schedule_id: str | None,
    stamp: str,
) -> tuple[Job, bool]:
    with sqlite_db.transaction(connection):
        inserted = sqlite_db.fetch_one(
            connection,
            f"""
            INSERT INTO jobs (id, state, options, created_at, updated_at,
                              schedule_id, idempotency_key)
            VALUES (?, 'queued', ?, ?, ?, ?, ?)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING {JOB_COLUMNS}
            """,
            (job_id, options_json, stamp, stamp, schedule_id, idempotency_key),
        )
        if inserted is not None:
            return job_from_row(inserted), True

        existing = sqlite_db.fetch_one(
            connection,
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?",
            (idempotency_key,),
        )
    if existing is None:
        raise AssertionError("a conflicting idempotency key has no job")
    return job_from_row(existing), False


def select_job(connection: sqlite3.Connection, job_id: str) -> Job | None:
    row = sqlite_db.fetch_one(
        connection, f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
    )
    return None if row is None else job_from_row(row)


def select_jobs(
    connection: sqlite3.Connection, states: list[str], before: int | None, limit: int
) -> list[tuple[int, Job]]:
    """Return up to ``limit`` (seq, job) pairs below seq ``before``, newest first."""
    conditions = ["seq < :before"] if before is not None else []
    if states:
        conditions.append("state IN (SELECT value FROM json_each(:states))")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = connection.execute(
        f"SELECT seq, {JOB_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT :limit",
        {"before": before, "states": sqlite_db.dump_json(states), "limit": limit},
    ).fetchall()
    return [(row["seq"], job_from_row(row)) for row in rows]


def update_job_state(
    connection: sqlite3.Connection,
    job_id: str,
    to: JobState,
    allowed_from: list[str],
    last_error: str | None,
    stamp: str,
) -> Job | None:
    with sqlite_db.transaction(connection):
        row = sqlite_db.fetch_one(
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
            RETURNING {JOB_COLUMNS}
            """,
            {
                "id": job_id,
                "to": str(to),
                "stamp": stamp,
                "running": to is JobState.RUNNING,
                "final": to in FINAL_STATES,
                "last_error": last_error,
                "allowed": sqlite_db.dump_json(allowed_from),
            },
        )
    return None if row is None else job_from_row(row)


def delete_job(connection: sqlite3.Connection, job_id: str) -> bool:
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
        if job is None:
            return False
        # Children first: the foreign keys reject a job deleted before its rows.
        tables = ("pages", "job_workers", "host_leases", "frontier_hosts", "frontier")
        for table in tables:
            connection.execute(f"DELETE FROM {table} WHERE job = ?", (job,))
        connection.execute("DELETE FROM jobs WHERE seq = ?", (job,))
    logger.info("Deleted job %s", job_id)
    return True


def add_skipped(
    connection: sqlite3.Connection, job_id: str, counts: dict[str, int]
) -> None:
    with sqlite_db.transaction(connection):
        row = sqlite_db.fetch_one(
            connection, "SELECT skipped FROM jobs WHERE id = ?", (job_id,)
        )
        if row is None:
            return
        skipped: dict[str, int] = json.loads(row["skipped"])
        for reason, count in counts.items():
            skipped[reason] = skipped.get(reason, 0) + count
        connection.execute(
            "UPDATE jobs SET skipped = ? WHERE id = ?",
            (sqlite_db.dump_json(skipped), job_id),
        )


def count_job(connection: sqlite3.Connection, job_id: str) -> JobCounters:
    with sqlite_db.transaction(connection, "DEFERRED"):
        job_row = sqlite_db.fetch_one(
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
CLAIMABLE_JOB_SQL = """
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


def claim_job(
    connection: sqlite3.Connection,
    worker_id: str,
    expires_at: float,
    now: float,
    stamp: str,
    exclude: list[str],
) -> Job | None:
    with sqlite_db.transaction(connection):
        candidate = sqlite_db.fetch_one(
            connection,
            CLAIMABLE_JOB_SQL,
            {"now": now, "exclude": sqlite_db.dump_json(exclude)},
        )
        if candidate is None:
            return None
        row = sqlite_db.fetch_one(
            connection,
            f"""
            UPDATE jobs SET
                state = 'running',
                lease_owner = :worker,
                lease_expires_at = :expires_at,
                started_at = coalesce(started_at, :stamp),
                updated_at = :stamp
            WHERE seq = :seq
            RETURNING {JOB_COLUMNS}
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
    job = job_from_row(row)
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


def select_joinable_job(
    connection: sqlite3.Connection, worker_id: str, now: float, exclude: list[str]
) -> Job | None:
    row = sqlite_db.fetch_one(
        connection,
        f"""
        SELECT {JOB_COLUMNS} FROM jobs
        WHERE state = 'running' AND lease_expires_at >= :now
          AND lease_owner != :worker
          AND id NOT IN (SELECT value FROM json_each(:exclude))
        ORDER BY seq LIMIT 1
        """,
        {"now": now, "worker": worker_id, "exclude": sqlite_db.dump_json(exclude)},
    )
    return None if row is None else job_from_row(row)


def renew_lease(
    connection: sqlite3.Connection, job_id: str, worker_id: str, expires_at: float
) -> bool:
    with sqlite_db.transaction(connection):
        cursor = connection.execute(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
            (expires_at, job_id, worker_id),
        )
    return cursor.rowcount == 1


def release_job(connection: sqlite3.Connection, job_id: str, worker_id: str) -> None:
    with sqlite_db.transaction(connection):
        connection.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = ? AND lease_owner = ?",
            (job_id, worker_id),
        )

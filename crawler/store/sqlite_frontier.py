"""SQL of the SQLite store for frontiers, URL leases, host leases and job workers."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

from crawler.frontier import CrawlRequest
from crawler.store import sqlite_db

logger = logging.getLogger(__name__)

# -- frontier ------------------------------------------------------------------


def insert_requests(
    connection: sqlite3.Connection, job_id: str, requests: Sequence[CrawlRequest]
) -> int:
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
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
                refresh_host_head(connection, job, host)
    return added


def refresh_host_head(connection: sqlite3.Connection, job: int, host: str) -> None:
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


def insert_seen_key(connection: sqlite3.Connection, job_id: str, key: str) -> bool:
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
        if job is None:
            return False
        cursor = connection.execute(
            "INSERT INTO frontier (job, key, state) VALUES (?, ?, 'done') "
            "ON CONFLICT (job, key) DO NOTHING",
            (job, key),
        )
    return cursor.rowcount == 1


def pop_request(
    connection: sqlite3.Connection,
    job_id: str,
    busy_hosts: list[str],
    worker_id: str,
    expires_at: float,
    max_pops: int | None,
    only_hosts: list[str] | None,
) -> CrawlRequest | None:
    with sqlite_db.transaction(connection):
        job_row = sqlite_db.fetch_one(
            connection, "SELECT seq, popped FROM jobs WHERE id = ?", (job_id,)
        )
        if job_row is None:
            return None
        if max_pops is not None and job_row["popped"] >= max_pops:
            return None
        job = int(job_row["seq"])

        # The index on (job, head) yields hosts oldest head first, so this
        # reads at most one row per busy host before it finds a free one.
        head = sqlite_db.fetch_one(
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
                "busy": sqlite_db.dump_json(busy_hosts),
                "only": None if only_hosts is None else sqlite_db.dump_json(only_hosts),
            },
        )
        if head is None:
            return None

        row = sqlite_db.fetch_one(
            connection,
            "UPDATE frontier SET state = 'in_progress', owner = ?, expires_at = ? "
            "WHERE seq = ? RETURNING url, key, host, depth, referrer",
            (worker_id, expires_at, head["head"]),
        )
        refresh_host_head(connection, job, head["host"])
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


def return_request(
    connection: sqlite3.Connection, job_id: str, key: str, worker_id: str
) -> bool:
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
        if job is None:
            return False
        row = sqlite_db.fetch_one(
            connection,
            "UPDATE frontier SET state = 'queued', owner = NULL, expires_at = NULL "
            "WHERE job = ? AND key = ? AND state = 'in_progress' AND owner = ? "
            "RETURNING host",
            (job, key, worker_id),
        )
        if row is None:
            return False
        refresh_host_head(connection, job, row["host"])
        connection.execute(
            "UPDATE jobs SET popped = max(0, popped - 1) WHERE seq = ?", (job,)
        )
    return True


def complete_request(connection: sqlite3.Connection, job_id: str, key: str) -> None:
    with sqlite_db.transaction(connection):
        connection.execute(
            """
            UPDATE frontier SET state = 'done', owner = NULL
            WHERE job = (SELECT seq FROM jobs WHERE id = ?)
              AND key = ? AND state = 'in_progress'
            """,
            (job_id, key),
        )


def renew_requests(
    connection: sqlite3.Connection, job_id: str, worker_id: str, expires_at: float
) -> int:
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
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


def requeue_in_progress(
    connection: sqlite3.Connection,
    job_id: str,
    owner: str | None,
    expired_at: float | None,
) -> int:
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
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
            refresh_host_head(connection, job, host)
        if rows:
            connection.execute(
                "UPDATE jobs SET popped = max(0, popped - ?) WHERE seq = ?",
                (len(rows), job),
            )
    if rows:
        logger.info("Requeued %d in-progress requests of job %s", len(rows), job_id)
    return len(rows)


# -- host leases ---------------------------------------------------------------


def acquire_host(
    connection: sqlite3.Connection,
    job_id: str,
    host: str,
    worker_id: str,
    now: float,
    expires_at: float,
) -> bool:
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
        if job is None:
            return False
        row = sqlite_db.fetch_one(
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


def select_held_hosts(
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


def release_hosts(
    connection: sqlite3.Connection,
    job_id: str,
    worker_id: str,
    free_at: dict[str, float],
    only: list[str] | None,
) -> int:
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
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
                "DELETE FROM job_workers WHERE job = ? AND worker = ?", (job, worker_id)
            )
        connection.executemany(
            "UPDATE host_leases SET owner = NULL, expires_at = NULL, free_at = ? "
            "WHERE job = ? AND host = ?",
            [(free_at.get(host, 0.0), job, host) for host in hosts],
        )
    return len(hosts)


def select_queued_hosts(connection: sqlite3.Connection, job_id: str) -> set[str]:
    rows = connection.execute(
        "SELECT host FROM frontier_hosts "
        "WHERE job = (SELECT seq FROM jobs WHERE id = ?) AND head IS NOT NULL",
        (job_id,),
    ).fetchall()
    return {row["host"] for row in rows}


def select_live_workers(
    connection: sqlite3.Connection, job_id: str, now: float
) -> set[str]:
    rows = connection.execute(
        "SELECT worker FROM job_workers "
        "WHERE job = (SELECT seq FROM jobs WHERE id = ?) AND expires_at > ?",
        (job_id, now),
    ).fetchall()
    return {row["worker"] for row in rows}

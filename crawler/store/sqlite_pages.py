"""SQL of the SQLite store for page records."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from crawler.records import PageRecord
from crawler.store import sqlite_db
from crawler.store.base import PageFilter

# -- pages ---------------------------------------------------------------------


def insert_page(
    connection: sqlite3.Connection, job_id: str, record: PageRecord
) -> bool:
    status = record.status
    row = (
        record.key,
        status,
        None if status is None else status // 100,
        None if record.error is None else record.error.kind,
        record.depth,
        sqlite_db.dump_json(record.to_dict()),
    )
    with sqlite_db.transaction(connection):
        job = sqlite_db.job_seq(connection, job_id)
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


def select_pages(
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

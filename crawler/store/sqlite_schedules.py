"""SQL of the SQLite store for schedules and their runs."""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from crawler.store import sqlite_db
from crawler.store.base import JobState
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

# -- schedules -----------------------------------------------------------------

SCHEDULES_LISTING = "schedules"
SCHEDULE_COLUMNS = (
    "id, name, cron, timezone, job, enabled, overlap, missed, next_run_at, "
    "created_at, updated_at"
)
RUN_COLUMNS = (
    "schedule, key, due_at, decided_at, trigger, outcome, missed_count, job_id"
)
UNFINISHED_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


def schedule_from_row(row: sqlite3.Row) -> Schedule:
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


def spec_parameters(spec: ScheduleSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "job": sqlite_db.dump_json(spec.job),
        "enabled": int(spec.enabled),
        "overlap": str(spec.overlap),
        "missed": str(spec.missed),
    }


def insert_schedule(
    connection: sqlite3.Connection,
    schedule_id: str,
    spec: ScheduleSpec,
    next_run_at: int | None,
    stamp: str,
) -> Schedule:
    with sqlite_db.transaction(connection):
        row = sqlite_db.fetch_one(
            connection,
            f"""
            INSERT INTO schedules (id, name, cron, timezone, job, enabled, overlap,
                                   missed, next_run_at, created_at, updated_at)
            VALUES (:id, :name, :cron, :timezone, :job, :enabled, :overlap,
                    :missed, :next_run_at, :stamp, :stamp)
            RETURNING {SCHEDULE_COLUMNS}
            """,
            {
                "id": schedule_id,
                **spec_parameters(spec),
                "next_run_at": next_run_at,
                "stamp": stamp,
            },
        )
    if row is None:
        raise AssertionError("INSERT ... RETURNING returned no row")
    logger.info("Created schedule %s", schedule_id)
    return schedule_from_row(row)


def select_schedule(
    connection: sqlite3.Connection, schedule_id: str
) -> Schedule | None:
    row = sqlite_db.fetch_one(
        connection,
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?",
        (schedule_id,),
    )
    return None if row is None else schedule_from_row(row)


def select_schedules(
    connection: sqlite3.Connection, before: int | None, limit: int
) -> list[tuple[int, Schedule]]:
    """Return up to ``limit`` (seq, schedule) pairs below seq ``before``."""
    rows = connection.execute(
        f"""
        SELECT seq, {SCHEDULE_COLUMNS} FROM schedules
        WHERE :before IS NULL OR seq < :before
        ORDER BY seq DESC LIMIT :limit
        """,
        {"before": before, "limit": limit},
    ).fetchall()
    return [(row["seq"], schedule_from_row(row)) for row in rows]


def update_schedule(
    connection: sqlite3.Connection,
    schedule_id: str,
    spec: ScheduleSpec,
    next_run_at: int | Unchanged | None,
    stamp: str,
) -> Schedule | None:
    keep = isinstance(next_run_at, Unchanged)
    next_value = None if isinstance(next_run_at, Unchanged) else next_run_at
    with sqlite_db.transaction(connection):
        row = sqlite_db.fetch_one(
            connection,
            f"""
            UPDATE schedules SET
                name = :name, cron = :cron, timezone = :timezone, job = :job,
                enabled = :enabled, overlap = :overlap, missed = :missed,
                next_run_at = CASE WHEN :keep THEN next_run_at ELSE :next_run_at END,
                updated_at = :stamp
            WHERE id = :id
            RETURNING {SCHEDULE_COLUMNS}
            """,
            {
                "id": schedule_id,
                **spec_parameters(spec),
                "keep": keep,
                "next_run_at": next_value,
                "stamp": stamp,
            },
        )
    return None if row is None else schedule_from_row(row)


def delete_schedule(connection: sqlite3.Connection, schedule_id: str) -> bool:
    with sqlite_db.transaction(connection):
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


def select_due_schedules(
    connection: sqlite3.Connection, now: int, limit: int
) -> list[Schedule]:
    rows = connection.execute(
        f"""
        SELECT {SCHEDULE_COLUMNS} FROM schedules
        WHERE enabled = 1 AND next_run_at <= ?
        ORDER BY next_run_at LIMIT ?
        """,
        (now, limit),
    ).fetchall()
    return [schedule_from_row(row) for row in rows]


def advance_schedule(
    connection: sqlite3.Connection,
    schedule_id: str,
    due_at: int,
    next_run_at: int | None,
) -> bool:
    with sqlite_db.transaction(connection):
        cursor = connection.execute(
            "UPDATE schedules SET next_run_at = ? WHERE id = ? AND next_run_at = ?",
            (next_run_at, schedule_id, due_at),
        )
    return cursor.rowcount == 1


def run_from_row(row: sqlite3.Row) -> ScheduleRun:
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


def insert_schedule_run(
    connection: sqlite3.Connection, run: ScheduleRun
) -> ScheduleRun | None:
    with sqlite_db.transaction(connection):
        exists = sqlite_db.fetch_one(
            connection, "SELECT 1 FROM schedules WHERE id = ?", (run.schedule_id,)
        )
        if exists is None:
            return None
        connection.execute(
            f"""
            INSERT INTO schedule_runs ({RUN_COLUMNS})
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
        row = sqlite_db.fetch_one(
            connection,
            f"SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule = ? AND key = ?",
            (run.schedule_id, run.key),
        )
    if row is None:
        raise AssertionError("a schedule run vanished inside its transaction")
    return run_from_row(row)


def link_schedule_run(
    connection: sqlite3.Connection, schedule_id: str, key: str, job_id: str
) -> None:
    with sqlite_db.transaction(connection):
        connection.execute(
            "UPDATE schedule_runs SET job_id = ? WHERE schedule = ? AND key = ?",
            (job_id, schedule_id, key),
        )


def select_schedule_runs(
    connection: sqlite3.Connection, schedule_id: str, limit: int
) -> list[ScheduleRun]:
    rows = connection.execute(
        f"""
        SELECT {RUN_COLUMNS} FROM schedule_runs WHERE schedule = ?
        ORDER BY due_at DESC, decided_at DESC, key DESC LIMIT ?
        """,
        (schedule_id, limit),
    ).fetchall()
    return [run_from_row(row) for row in rows]


def has_unfinished_jobs(
    connection: sqlite3.Connection, schedule_id: str, excluding_key: str | None
) -> bool:
    row = sqlite_db.fetch_one(
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
            "states": sqlite_db.dump_json([str(state) for state in UNFINISHED_STATES]),
            "excluding": excluding_key,
        },
    )
    return row is not None

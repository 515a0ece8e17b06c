"""The MongoDB store's schedules (see ``mongo.py``)."""

from __future__ import annotations

import json
import logging
import secrets
from typing import TypeVar

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from crawler.errors import StoreError
from crawler.records import utc_timestamp
from crawler.store import mongo_base
from crawler.store.base import JobState, ResultPage
from crawler.store.listing import check_limit
from crawler.store.mongo_base import Document
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

T = TypeVar("T")

SCHEDULES_LISTING = "schedules"

UNFINISHED_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


def spec_fields(spec: ScheduleSpec) -> Document:
    return {
        "name": spec.name,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "job": mongo_base.dump_json(spec.job),
        "enabled": spec.enabled,
        "overlap": str(spec.overlap),
        "missed": str(spec.missed),
    }


def schedule_from_document(document: Document) -> Schedule:
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


def run_id(schedule_id: str, key: str) -> str:
    return f"{schedule_id}/{key}"


def run_document(run: ScheduleRun) -> Document:
    return {
        "_id": run_id(run.schedule_id, run.key),
        "schedule": run.schedule_id,
        "key": run.key,
        "due_at": run.due_at,
        "decided_at": run.decided_at,
        "trigger": str(run.trigger),
        "outcome": str(run.outcome),
        "missed_count": run.missed_count,
        "job_id": run.job_id,
    }


def run_from_document(document: Document) -> ScheduleRun:
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


class MongoSchedules(mongo_base.MongoBase):
    """Schedules and their runs, part of :class:`~crawler.store.mongo.MongoStore`."""

    async def create_schedule(
        self, spec: ScheduleSpec, *, next_run_at: int | None
    ) -> Schedule:
        """Store a schedule with a random id and return it."""
        schedule_id = secrets.token_urlsafe(12)
        stamp = utc_timestamp()
        document: Document = {
            "_id": schedule_id,
            "seq": ObjectId(),
            **spec_fields(spec),
            "next_run_at": next_run_at,
            "created_at": stamp,
            "updated_at": stamp,
        }
        with self._errors("create_schedule"):
            await self._schedules.insert_one(document)
        logger.info("Created schedule %s", schedule_id)
        return schedule_from_document(document)

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        with self._errors("get_schedule"):
            document = await self._schedules.find_one({"_id": schedule_id})
        return None if document is None else schedule_from_document(document)

    async def list_schedules(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> ResultPage[Schedule]:
        """List schedules newest first.

        Raises InvalidCursorError for a cursor that this listing did not return.
        """
        check_limit(limit)
        query: Document = {}
        if cursor is not None:
            query["seq"] = {
                "$lt": mongo_base.decode_object_cursor(cursor, SCHEDULES_LISTING)
            }
        with self._errors("list_schedules"):
            documents = await (
                self._schedules.find(query).sort("seq", DESCENDING).limit(limit + 1)
            ).to_list()
        rows = [
            (document["seq"], schedule_from_document(document))
            for document in documents
        ]
        return mongo_base.object_result_page(rows, limit, SCHEDULES_LISTING)

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
        fields: Document = {
            **spec_fields(spec),
            "updated_at": utc_timestamp(),
        }
        if not isinstance(next_run_at, Unchanged):
            fields["next_run_at"] = next_run_at
        with self._errors("update_schedule"):
            async with self._locked("schedules"):
                document = await self._schedules.find_one_and_update(
                    {"_id": schedule_id},
                    {"$set": fields},
                    return_document=ReturnDocument.AFTER,
                )
        return None if document is None else schedule_from_document(document)

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
        return [schedule_from_document(document) for document in documents]

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
        document = run_document(run)
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
        return run_from_document(existing)

    async def link_schedule_run(self, schedule_id: str, key: str, job_id: str) -> None:
        """Set the job of a started run.

        No lock: every process that links a run sets the same job id, the one
        that the job's idempotency key leads to.
        """
        with self._errors("link_schedule_run"):
            await self._schedule_runs.update_one(
                {"_id": run_id(schedule_id, key)}, {"$set": {"job_id": job_id}}
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
        return [run_from_document(document) for document in documents]

    async def has_unfinished_jobs(
        self, schedule_id: str, *, excluding_key: str | None = None
    ) -> bool:
        """Return whether a job of the schedule is queued, running or paused,
        other than the one with idempotency key ``excluding_key``."""
        query: Document = {
            "schedule_id": schedule_id,
            "state": {"$in": [str(state) for state in UNFINISHED_STATES]},
        }
        if excluding_key is not None:
            query["idempotency"] = {"$ne": f"key:{excluding_key}"}
        with self._errors("has_unfinished_jobs"):
            return await self._jobs.find_one(query, {"_id": 1}) is not None

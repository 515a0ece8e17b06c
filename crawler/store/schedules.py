"""Stored schedules and the record of each time one fired.

Both store implementations keep these types. Times that the scheduler compares
(``next_run_at``, ``due_at``, ``decided_at``) are whole epoch seconds in UTC,
because cron has minute granularity and an integer compares exactly in SQL
and in MongoDB queries. Creation and update stamps are ISO 8601 UTC strings,
as on jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any


class Overlap(StrEnum):
    """Policy for a due time that comes while an earlier job of the schedule is
    unfinished."""

    SKIP = "skip"
    ALLOW = "allow"


class Missed(StrEnum):
    """Policy for due times that no scheduler saw until well after them."""

    RUN_ONCE = "run_once"
    SKIP = "skip"


class RunOutcome(StrEnum):
    """Result of one due time, or of one manual run."""

    STARTED = "started"
    SKIPPED_OVERLAP = "skipped_overlap"
    MISSED = "missed"


class RunTrigger(StrEnum):
    """Why a run happened: the timetable, or a client's ``run now`` request."""

    SCHEDULE = "schedule"
    MANUAL = "manual"


class Unchanged(Enum):
    """The type of :data:`UNCHANGED`."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED
"""Passed as ``next_run_at`` to keep the stored next run time as it is."""


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """Fields that a client sets on a schedule. ``job`` is a validated options
    mapping."""

    name: str
    cron: str
    timezone: str
    job: dict[str, Any]
    enabled: bool = True
    overlap: Overlap = Overlap.SKIP
    missed: Missed = Missed.RUN_ONCE


@dataclass(frozen=True, slots=True)
class Schedule:
    """A stored schedule.

    ``next_run_at`` is the due time that the next firing claims, in epoch
    seconds. It is None while the schedule is disabled or its cron never
    matches again.
    """

    id: str
    name: str
    cron: str
    timezone: str
    job: dict[str, Any]
    enabled: bool
    overlap: Overlap
    missed: Missed
    next_run_at: int | None
    created_at: str
    updated_at: str

    @property
    def spec(self) -> ScheduleSpec:
        return ScheduleSpec(
            name=self.name,
            cron=self.cron,
            timezone=self.timezone,
            job=self.job,
            enabled=self.enabled,
            overlap=self.overlap,
            missed=self.missed,
        )


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """The decision taken for one due time of a schedule, or for a manual run.

    ``key`` is unique per schedule: the due time's epoch seconds for a
    scheduled run, ``manual-`` and a random part for a manual one. The first
    process that stores a run for a key decides the outcome, and every other
    process follows it. ``missed_count`` counts the due times, this one
    included, that passed more than the grace period before a scheduler saw
    them, and 0 for a run on time. ``job_id`` is None until the started job
    is linked, and always None for the other outcomes.
    """

    schedule_id: str
    key: str
    due_at: int
    decided_at: int
    trigger: RunTrigger
    outcome: RunOutcome
    missed_count: int = 0
    job_id: str | None = None

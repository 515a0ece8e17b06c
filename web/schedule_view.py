"""The schedule object that the API returns and the status pages show.

Due times appear in the schedule's own time zone, as ISO 8601 with the UTC
offset (``2025-03-09T03:00:00-04:00``), so each one is an exact instant and
reads as the local time the cron expression names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from crawler.errors import InvalidScheduleError
from crawler.schedule import Timetable
from crawler.store.base import JobState, Store
from crawler.store.schedules import Schedule, ScheduleRun
from web.job_summary import DEFAULT_OPTIONS

NEXT_RUNS = 5
"""Due times that a schedule shows ahead."""
RUNS_SHOWN = 10
"""Runs that one schedule's API object and page show, newest first."""


@dataclass(frozen=True, slots=True)
class RunView:
    """A stored run with its times in the schedule's zone and its job's state."""

    run: ScheduleRun
    due_at: datetime
    decided_at: datetime
    job_state: JobState | None
    """None when the run started no job or the job was deleted since."""


@dataclass(frozen=True, slots=True)
class ScheduleView:
    """A stored schedule with its next due times and latest runs."""

    schedule: Schedule
    description: str
    next_runs: list[datetime]
    runs: list[RunView]

    @property
    def last_run(self) -> RunView | None:
        return self.runs[0] if self.runs else None


async def view_schedule(
    store: Store, schedule: Schedule, *, runs: int = RUNS_SHOWN
) -> ScheduleView:
    """Load the schedule's latest ``runs`` runs and compute its next due times.

    The next due times start at the stored next run time, which a scheduler
    fires next even when it is already past.
    """
    try:
        timetable = Timetable.parse(schedule.cron, schedule.timezone)
    except InvalidScheduleError as exc:
        # Stored by an older version, or by hand: show it, and why it does
        # not fire, instead of failing the page.
        return await _invalid_schedule_view(store, schedule, exc, runs=runs)

    next_runs: list[int] = []
    if schedule.enabled and schedule.next_run_at is not None:
        next_runs = [
            schedule.next_run_at,
            *timetable.upcoming(schedule.next_run_at, NEXT_RUNS - 1),
        ]

    return ScheduleView(
        schedule=schedule,
        description=timetable.describe(),
        next_runs=[timetable.local_time(instant) for instant in next_runs],
        runs=await _run_views(store, schedule, timetable.zone, runs),
    )


async def _invalid_schedule_view(
    store: Store, schedule: Schedule, error: InvalidScheduleError, *, runs: int
) -> ScheduleView:
    return ScheduleView(
        schedule=schedule,
        description=f"Never runs: {error.message}",
        next_runs=[],
        runs=await _run_views(store, schedule, UTC, runs),
    )


async def _run_views(
    store: Store, schedule: Schedule, zone: tzinfo, limit: int
) -> list[RunView]:
    views = []
    for run in await store.list_schedule_runs(schedule.id, limit=limit):
        job = None if run.job_id is None else await store.get_job(run.job_id)
        views.append(
            RunView(
                run=run,
                due_at=datetime.fromtimestamp(run.due_at, zone),
                decided_at=datetime.fromtimestamp(run.decided_at, zone),
                job_state=None if job is None else job.state,
            )
        )
    return views


def run_to_json(view: RunView) -> dict[str, Any]:
    run = view.run
    return {
        "due_at": view.due_at.isoformat(),
        "decided_at": view.decided_at.isoformat(),
        "trigger": run.trigger.value,
        "outcome": run.outcome.value,
        "missed_count": run.missed_count,
        "job_id": run.job_id,
        "job_state": None if view.job_state is None else view.job_state.value,
    }


def schedule_to_json(view: ScheduleView, *, with_runs: bool) -> dict[str, Any]:
    """Return the API's schedule object, with ``runs`` only when ``with_runs``."""
    schedule = view.schedule
    last_run = view.last_run
    document: dict[str, Any] = {
        "id": schedule.id,
        "name": schedule.name,
        "cron": schedule.cron,
        "description": view.description,
        "timezone": schedule.timezone,
        # Defaults filled in, as on jobs, so a template stored with some
        # options only still shows every option.
        "job": {**DEFAULT_OPTIONS, **schedule.job},
        "enabled": schedule.enabled,
        "overlap": schedule.overlap.value,
        "missed": schedule.missed.value,
        "next_run_at": view.next_runs[0].isoformat() if view.next_runs else None,
        "next_runs": [moment.isoformat() for moment in view.next_runs],
        "last_run": None if last_run is None else run_to_json(last_run),
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }
    if with_runs:
        document["runs"] = [run_to_json(run) for run in view.runs]
    return document

"""Schedule changes that the API and the status page's forms share.

Each change that alters when a schedule is due (a new cron expression or time
zone, enabling it) sets the next run time to the first due time after now.
Disabling clears it, so no scheduler fires the schedule until it is enabled
again, and the due times in between are not counted as missed.
"""

from __future__ import annotations

import logging
import time

from crawler.schedule import Timetable
from crawler.store.base import Store
from crawler.store.schedules import UNCHANGED, Schedule, ScheduleSpec, Unchanged
from web.problems import NotFoundError

logger = logging.getLogger(__name__)


def schedule_not_found(schedule_id: str) -> NotFoundError:
    return NotFoundError(
        f"No schedule has id {schedule_id!r}; list schedules with "
        "GET /api/v1/schedules.",
        field="schedule_id",
    )


async def load_schedule(store: Store, schedule_id: str) -> Schedule:
    """Return the schedule, or raise the 404 problem."""
    schedule = await store.get_schedule(schedule_id)
    if schedule is None:
        raise schedule_not_found(schedule_id)
    return schedule


def first_run_after(spec: ScheduleSpec, now: float) -> int | None:
    """Return the next run time of a schedule set to ``spec`` at ``now``."""
    if not spec.enabled:
        return None
    return Timetable.parse(spec.cron, spec.timezone).next_after(now)


async def create_schedule(
    store: Store, spec: ScheduleSpec, *, request_id: str
) -> Schedule:
    schedule = await store.create_schedule(
        spec, next_run_at=first_run_after(spec, time.time())
    )
    logger.info("schedule %s created (request_id=%s)", schedule.id, request_id)
    return schedule


async def update_schedule(
    store: Store, schedule: Schedule, spec: ScheduleSpec, *, request_id: str
) -> Schedule:
    """Store ``spec`` on the schedule, or raise the 404 problem if it is gone.

    The next run time is recomputed only when the change alters when the
    schedule is due, so renaming a schedule keeps a pending due time.
    """
    retimed = (
        spec.cron != schedule.cron
        or spec.timezone != schedule.timezone
        or spec.enabled != schedule.enabled
    )
    next_run_at: int | Unchanged | None = (
        first_run_after(spec, time.time()) if retimed else UNCHANGED
    )
    updated = await store.update_schedule(schedule.id, spec, next_run_at=next_run_at)
    if updated is None:
        raise schedule_not_found(schedule.id)
    logger.info(
        "schedule %s updated%s (request_id=%s)",
        schedule.id,
        "; next run time recomputed" if retimed else "",
        request_id,
    )
    return updated


async def delete_schedule(store: Store, schedule_id: str, *, request_id: str) -> None:
    """Delete the schedule and its runs. The jobs it started stay."""
    if not await store.delete_schedule(schedule_id):
        raise schedule_not_found(schedule_id)
    logger.info("schedule %s deleted (request_id=%s)", schedule_id, request_id)

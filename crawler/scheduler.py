"""Firing schedules: each due time starts at most one job across all processes.

Every web process and every ``crawler worker`` process runs a
:class:`Scheduler`. No process is a leader: each one fires every schedule that
is due, and the store makes the repeats harmless. One firing of due time ``T``
takes three steps, each safe to repeat:

1. Decide: store a run record under the key ``T``. The record's key is unique
   per schedule, so the first process to store it decides the outcome
   (started, skipped because of overlap, or missed), and every other process
   reads that record and follows it.
2. Start: for a started run, create the job with the idempotency key
   ``schedule:ID:T``. The store's unique index on that key makes a second job
   for ``T`` impossible, so a repeat returns the same job. Then link the job
   to the run.
3. Advance: set the schedule's next run time, but only if it is still ``T``.
   The condition lets exactly one process move it, and never twice.

A process that dies between two steps leaves the next run time at ``T``, so
the next tick of any process repeats the firing, follows the stored decision
and finishes the steps that are missing.

A due time that no scheduler saw until more than ``grace_s`` after it is late,
as after downtime. A late due time either starts one job now for all the due
times missed (``missed: run_once``) or records them as missed and waits for
the next due time after now (``missed: skip``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from crawler.errors import InvalidScheduleError, StoreError
from crawler.schedule import Timetable
from crawler.store.base import Job, Store
from crawler.store.schedules import (
    Missed,
    Overlap,
    RunOutcome,
    RunTrigger,
    Schedule,
    ScheduleRun,
)

logger = logging.getLogger(__name__)

JOB_KEY_PREFIX = "schedule:"
"""The start of every idempotency key of a job a schedule started. The jobs
API rejects client keys with this prefix, so no client job can take one."""
GRACE_S = 60.0
"""Seconds after its due time that a firing still counts as on time."""
INTERVAL_S = 2.0
"""Seconds between two ticks of the background loop."""
MAX_MISSED_COUNT = 1000
"""The most missed due times that one late firing counts."""
DUE_BATCH = 100
"""Schedules that one tick fires at most. The rest wait for the next tick."""


def scheduled_job_key(schedule_id: str, due_at: int) -> str:
    """Return the idempotency key of the job for one due time of a schedule."""
    return f"{JOB_KEY_PREFIX}{schedule_id}:{due_at}"


def manual_job_key(schedule_id: str, client_key: str) -> str:
    """Return the idempotency key of a manual run that a client keyed."""
    return f"{JOB_KEY_PREFIX}{schedule_id}:manual:{client_key}"


class Scheduler:
    """Fires due schedules of one store, every ``interval_s`` seconds.

    ``clock`` returns epoch seconds. Tests pass their own clock, or call
    :meth:`tick` with the instant to act at.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        interval_s: float = INTERVAL_S,
        grace_s: float = GRACE_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start ticking in a background task."""
        self._stopping.clear()
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")
        logger.info("Scheduler started (a tick every %.1f s)", self._interval_s)

    async def stop(self) -> None:
        """Stop ticking after the firing in progress, if any, finishes."""
        self._stopping.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        logger.info("Scheduler stopped")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except StoreError as exc:
                logger.warning(
                    "Scheduler tick failed (%s); retrying in %.1f s",
                    exc,
                    self._interval_s,
                )
            except Exception:
                logger.exception(
                    "Scheduler tick failed; retrying in %.1f s", self._interval_s
                )
            try:
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
            except TimeoutError:
                pass

    async def tick(self, now: float | None = None) -> list[ScheduleRun]:
        """Fire every schedule due at ``now`` (default: the clock's time).

        Returns the run stored for each firing. A store error while firing one
        schedule is logged and leaves it to the next tick.

        A firing that skipped missed due times may advance the schedule to a
        due time less than the grace old; that one fires in the same tick, so
        it cannot turn late while it waits for the next tick.
        """
        instant = self._clock() if now is None else now
        due = await self._store.due_schedules(int(instant), limit=DUE_BATCH)
        runs: list[ScheduleRun] = []
        for schedule in due:
            try:
                run = await self.fire(schedule, instant)
                if run is not None and run.outcome is RunOutcome.MISSED:
                    runs.append(run)
                    run = await self._fire_caught_up(schedule.id, instant)
            except StoreError as exc:
                logger.warning(
                    "Firing schedule %s failed (%s); the next tick retries",
                    schedule.id,
                    exc,
                )
                continue
            if run is not None:
                runs.append(run)
        return runs

    async def _fire_caught_up(self, schedule_id: str, now: float) -> ScheduleRun | None:
        """Fire the schedule again if a skipped firing left it due at ``now``."""
        schedule = await self._store.get_schedule(schedule_id)
        if schedule is None or schedule.next_run_at is None:
            return None
        if schedule.next_run_at > now:
            return None
        return await self.fire(schedule, now)

    async def fire(self, schedule: Schedule, now: float) -> ScheduleRun | None:
        """Fire the schedule's stored next run time in the module docstring's steps.

        Returns the stored run, or None when the schedule has no next run
        time, its cron became invalid, or it was deleted meanwhile.
        """
        due_at = schedule.next_run_at
        if due_at is None:
            return None
        try:
            timetable = Timetable.parse(schedule.cron, schedule.timezone)
        except InvalidScheduleError as exc:
            logger.error(
                "Schedule %s has an invalid %s (%s); it stops firing until it "
                "is updated",
                schedule.id,
                exc.field,
                exc.message,
            )
            await self._store.advance_schedule(
                schedule.id, due_at=due_at, next_run_at=None
            )
            return None

        job_key = scheduled_job_key(schedule.id, due_at)
        proposal = await self._decide(schedule, timetable, due_at, now, job_key)
        run = await self._store.record_schedule_run(proposal)
        if run is None:
            return None
        if run == proposal:
            self._log_decision(schedule, run)

        if run.outcome is RunOutcome.STARTED and run.job_id is None:
            run = await self._start_job(schedule, run, job_key)

        # Every process computes the same next run time from the stored run.
        # A late run skips the due times it counted as missed.
        after = due_at
        if run.missed_count and run.outcome is RunOutcome.MISSED:
            after = max(due_at, run.decided_at - int(self._grace_s))
        elif run.missed_count:
            after = max(due_at, run.decided_at)
        following = timetable.next_after(after)
        if await self._store.advance_schedule(
            schedule.id, due_at=due_at, next_run_at=following
        ):
            logger.debug(
                "Schedule %s advanced from %d to %s", schedule.id, due_at, following
            )
        return run

    async def _decide(
        self,
        schedule: Schedule,
        timetable: Timetable,
        due_at: int,
        now: float,
        job_key: str,
    ) -> ScheduleRun:
        """Return the run this process proposes for ``due_at``."""
        late = now - due_at > self._grace_s
        missed_count = 0
        if late:
            # A skipped firing counts only the due times that are late
            # themselves; a later one within the grace still starts its job.
            # A run_once firing covers every due time up to now.
            until = int(now)
            if schedule.missed is Missed.SKIP:
                until -= int(self._grace_s)
            missed_count = timetable.count_due(due_at, until, MAX_MISSED_COUNT)
        if late and schedule.missed is Missed.SKIP:
            outcome = RunOutcome.MISSED
        elif schedule.overlap is Overlap.SKIP and await self._store.has_unfinished_jobs(
            schedule.id, excluding_key=job_key
        ):
            outcome = RunOutcome.SKIPPED_OVERLAP
        else:
            outcome = RunOutcome.STARTED
        return ScheduleRun(
            schedule_id=schedule.id,
            key=str(due_at),
            due_at=due_at,
            decided_at=int(now),
            trigger=RunTrigger.SCHEDULE,
            outcome=outcome,
            missed_count=missed_count,
        )

    async def _start_job(
        self, schedule: Schedule, run: ScheduleRun, job_key: str
    ) -> ScheduleRun:
        job, created = await self._store.create_job(
            schedule.job, idempotency_key=job_key, schedule_id=schedule.id
        )
        if job.schedule_id != schedule.id:
            # Only a job created before the jobs API reserved the key prefix
            # can hold this key.
            logger.error(
                "Job %s has schedule %s's idempotency key %s but no schedule_id; "
                "the run is left without a job",
                job.id,
                schedule.id,
                job_key,
            )
            return run
        await self._store.link_schedule_run(schedule.id, run.key, job.id)
        if created:
            logger.info(
                "Schedule %s started job %s for %s",
                schedule.id,
                job.id,
                _iso(run.due_at),
                extra={"job_id": job.id},
            )
        return dataclasses.replace(run, job_id=job.id)

    def _log_decision(self, schedule: Schedule, run: ScheduleRun) -> None:
        if run.outcome is RunOutcome.SKIPPED_OVERLAP:
            logger.info(
                "Schedule %s skipped %s: its previous job is unfinished",
                schedule.id,
                _iso(run.due_at),
            )
        elif run.outcome is RunOutcome.MISSED:
            logger.warning(
                "Schedule %s missed %d run(s) from %s while no scheduler ran; "
                "waiting for the next due time",
                schedule.id,
                run.missed_count,
                _iso(run.due_at),
            )
        elif run.missed_count:
            logger.warning(
                "Schedule %s missed %d run(s) from %s while no scheduler ran; "
                "starting one job now",
                schedule.id,
                run.missed_count,
                _iso(run.due_at),
            )


async def start_manual_run(
    store: Store,
    schedule: Schedule,
    *,
    now: float,
    client_key: str | None = None,
) -> tuple[Job, bool]:
    """Start a job from the schedule's template now, whatever its timetable.

    A ``client_key`` (the client's Idempotency-Key) makes a repeat return the
    job the first request started, and False. The run is recorded under the
    job's id, so it shows in the schedule's runs.
    """
    idempotency_key = (
        None if client_key is None else manual_job_key(schedule.id, client_key)
    )
    job, created = await store.create_job(
        schedule.job, idempotency_key=idempotency_key, schedule_id=schedule.id
    )
    instant = int(now)
    await store.record_schedule_run(
        ScheduleRun(
            schedule_id=schedule.id,
            key=f"manual-{job.id}",
            due_at=instant,
            decided_at=instant,
            trigger=RunTrigger.MANUAL,
            outcome=RunOutcome.STARTED,
            job_id=job.id,
        )
    )
    if created:
        logger.info(
            "Schedule %s started job %s on request",
            schedule.id,
            job.id,
            extra={"job_id": job.id},
        )
    return job, created


def _iso(instant: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))


__all__ = [
    "GRACE_S",
    "JOB_KEY_PREFIX",
    "Scheduler",
    "manual_job_key",
    "scheduled_job_key",
    "start_manual_run",
]

"""Firing schedules against every store: once per due time, whatever happens.

Each test drives :meth:`Scheduler.tick` with chosen instants (epoch seconds),
so no test sleeps. ``other_store`` is a second handle on the same data, as a
second process has. The crash tests store what a process that died between
two steps of a firing leaves behind, then let another scheduler finish it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime

import pytest

from crawler.schedule import Timetable
from crawler.scheduler import (
    GRACE_S,
    Scheduler,
    scheduled_job_key,
    start_manual_run,
)
from crawler.store.base import Job, JobState, Store
from crawler.store.schedules import (
    Missed,
    Overlap,
    RunOutcome,
    RunTrigger,
    Schedule,
    ScheduleRun,
    ScheduleSpec,
)

HOUR = 3600
DAY = 24 * HOUR
T = 1_735_725_600
"""2025-01-01T10:00:00Z, a due time of every hourly schedule below."""

HOURLY = ScheduleSpec(
    name="hourly",
    cron="0 * * * *",
    timezone="UTC",
    job={"seeds": ["http://a.test/"], "max_pages": 3},
    overlap=Overlap.ALLOW,
    missed=Missed.RUN_ONCE,
)


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


async def create(
    store: Store,
    spec: ScheduleSpec = HOURLY,
    next_run_at: int | None = T,
    **changes: object,
) -> Schedule:
    changed = dataclasses.replace(spec, **changes)  # type: ignore[arg-type]
    return await store.create_schedule(changed, next_run_at=next_run_at)


async def jobs_of(store: Store, schedule_id: str) -> list[Job]:
    page = await store.list_jobs(limit=1000)
    return [job for job in page.items if job.schedule_id == schedule_id]


async def next_run(store: Store, schedule_id: str) -> int | None:
    schedule = await store.get_schedule(schedule_id)
    assert schedule is not None
    return schedule.next_run_at


async def runs_of(store: Store, schedule_id: str) -> list[ScheduleRun]:
    return await store.list_schedule_runs(schedule_id, limit=100)


# -- on time -------------------------------------------------------------------


async def test_due_time_starts_one_job(store: Store) -> None:
    schedule = await create(store)

    runs = await Scheduler(store).tick(T + 2)

    jobs = await jobs_of(store, schedule.id)
    assert len(jobs) == 1
    assert jobs[0].options == HOURLY.job
    assert jobs[0].idempotency_key == scheduled_job_key(schedule.id, T)
    assert [(r.due_at, r.outcome, r.job_id) for r in runs] == [
        (T, RunOutcome.STARTED, jobs[0].id)
    ]
    assert await runs_of(store, schedule.id) == runs
    assert await next_run(store, schedule.id) == T + HOUR


async def test_not_due_yet(store: Store) -> None:
    schedule = await create(store)

    runs = await Scheduler(store).tick(T - 1)

    assert runs == []
    assert await jobs_of(store, schedule.id) == []
    assert await next_run(store, schedule.id) == T


async def test_repeat_tick_fires_nothing(store: Store) -> None:
    schedule = await create(store)
    scheduler = Scheduler(store)

    await scheduler.tick(T + 2)
    again = await scheduler.tick(T + 3)

    assert again == []
    assert len(await jobs_of(store, schedule.id)) == 1


async def test_two_processes_same_instant(store: Store, other_store: Store) -> None:
    schedules = [await create(store, name=f"s{n}") for n in range(5)]

    results = await asyncio.gather(
        *(Scheduler(handle).tick(T + 1) for handle in (store, other_store) * 3)
    )

    for schedule in schedules:
        jobs = await jobs_of(store, schedule.id)
        runs = await runs_of(store, schedule.id)
        assert len(jobs) == 1, schedule.name
        assert [(r.outcome, r.job_id) for r in runs] == [
            (RunOutcome.STARTED, jobs[0].id)
        ]
        assert await next_run(store, schedule.id) == T + HOUR
    assert sum(len(runs) for runs in results) >= len(schedules)


async def test_late_within_grace_is_on_time(store: Store) -> None:
    schedule = await create(store, missed=Missed.SKIP)

    runs = await Scheduler(store).tick(T + GRACE_S)

    assert [(r.outcome, r.missed_count) for r in runs] == [(RunOutcome.STARTED, 0)]
    assert len(await jobs_of(store, schedule.id)) == 1


# -- a process died between two steps ------------------------------------------


async def test_decided_without_job(store: Store, other_store: Store) -> None:
    schedule = await create(store)
    await store.record_schedule_run(
        ScheduleRun(
            schedule.id, str(T), T, T + 1, RunTrigger.SCHEDULE, RunOutcome.STARTED
        )
    )

    runs = await Scheduler(other_store).tick(T + 30)

    jobs = await jobs_of(store, schedule.id)
    assert len(jobs) == 1
    assert [r.job_id for r in runs] == [jobs[0].id]
    assert [r.job_id for r in await runs_of(store, schedule.id)] == [jobs[0].id]
    assert await next_run(store, schedule.id) == T + HOUR


async def test_job_created_not_linked(store: Store, other_store: Store) -> None:
    schedule = await create(store)
    await store.record_schedule_run(
        ScheduleRun(
            schedule.id, str(T), T, T + 1, RunTrigger.SCHEDULE, RunOutcome.STARTED
        )
    )
    job, _ = await store.create_job(
        HOURLY.job,
        idempotency_key=scheduled_job_key(schedule.id, T),
        schedule_id=schedule.id,
    )

    await Scheduler(other_store).tick(T + 30)

    assert [j.id for j in await jobs_of(store, schedule.id)] == [job.id]
    assert [r.job_id for r in await runs_of(store, schedule.id)] == [job.id]
    assert await next_run(store, schedule.id) == T + HOUR


async def test_linked_not_advanced(store: Store, other_store: Store) -> None:
    schedule = await create(store)
    await Scheduler(store).tick(T + 1)
    # Put the next run time back, as if the first process died before advancing.
    await store.advance_schedule(schedule.id, due_at=T + HOUR, next_run_at=T)

    await Scheduler(other_store).tick(T + 40)

    assert len(await jobs_of(store, schedule.id)) == 1
    assert len(await runs_of(store, schedule.id)) == 1
    assert await next_run(store, schedule.id) == T + HOUR


async def test_stored_decision_is_followed(store: Store) -> None:
    schedule = await create(store, overlap=Overlap.ALLOW)
    decided = ScheduleRun(
        schedule.id, str(T), T, T, RunTrigger.SCHEDULE, RunOutcome.SKIPPED_OVERLAP
    )
    await store.record_schedule_run(decided)

    runs = await Scheduler(store).tick(T + 1)

    assert runs == [decided]
    assert await jobs_of(store, schedule.id) == []
    assert await next_run(store, schedule.id) == T + HOUR


async def test_late_follower_of_on_time_decision(store: Store) -> None:
    schedule = await create(store, missed=Missed.SKIP)
    await store.record_schedule_run(
        ScheduleRun(
            schedule.id, str(T), T, T + 1, RunTrigger.SCHEDULE, RunOutcome.STARTED
        )
    )

    # The decider died; this process comes 3 hours later. It finishes the
    # stored on-time run, the late due times after it count as missed, and
    # the one 6 s ago, within the grace, starts its job in the same tick.
    scheduler = Scheduler(store)
    first = await scheduler.tick(T + 3 * HOUR + 5)
    second = await scheduler.tick(T + 3 * HOUR + 6)
    third = await scheduler.tick(T + 3 * HOUR + 6)

    assert [(r.due_at, r.outcome) for r in first] == [(T, RunOutcome.STARTED)]
    assert [(r.due_at, r.outcome, r.missed_count) for r in second] == [
        (T + HOUR, RunOutcome.MISSED, 2),
        (T + 3 * HOUR, RunOutcome.STARTED, 0),
    ]
    assert third == []
    assert len(await jobs_of(store, schedule.id)) == 2
    assert await next_run(store, schedule.id) == T + 4 * HOUR


async def test_foreign_job_with_key(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = await create(store)
    foreign, _ = await store.create_job(
        {}, idempotency_key=scheduled_job_key(schedule.id, T)
    )

    with caplog.at_level(logging.ERROR, logger="crawler.scheduler"):
        runs = await Scheduler(store).tick(T + 1)

    assert [r.job_id for r in runs] == [None]
    assert await jobs_of(store, schedule.id) == []
    assert foreign.id in caplog.text
    assert await next_run(store, schedule.id) == T + HOUR


async def test_deleted_while_firing(store: Store) -> None:
    schedule = await create(store)
    await store.delete_schedule(schedule.id)

    run = await Scheduler(store).fire(schedule, T + 1)

    assert run is None
    assert await jobs_of(store, schedule.id) == []


async def test_invalid_stored_cron_stops(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = await create(store, cron="61 * * * *")

    with caplog.at_level(logging.ERROR, logger="crawler.scheduler"):
        runs = await Scheduler(store).tick(T + 1)

    assert runs == []
    assert await next_run(store, schedule.id) is None
    assert "invalid cron" in caplog.text


# -- overlap -------------------------------------------------------------------


async def test_overlap_skip_while_unfinished(store: Store) -> None:
    schedule = await create(store, overlap=Overlap.SKIP)
    scheduler = Scheduler(store)

    await scheduler.tick(T + 1)
    await scheduler.tick(T + HOUR + 1)
    first = (await jobs_of(store, schedule.id))[0]
    await store.transition(first.id, JobState.COMPLETED, allowed_from=[JobState.QUEUED])
    await scheduler.tick(T + 2 * HOUR + 1)

    runs = list(reversed(await runs_of(store, schedule.id)))
    jobs = await jobs_of(store, schedule.id)
    assert [(r.due_at, r.outcome) for r in runs] == [
        (T, RunOutcome.STARTED),
        (T + HOUR, RunOutcome.SKIPPED_OVERLAP),
        (T + 2 * HOUR, RunOutcome.STARTED),
    ]
    assert runs[1].job_id is None
    assert len(jobs) == 2


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.PAUSED])
async def test_overlap_skip_counts_state(store: Store, state: JobState) -> None:
    schedule = await create(store, overlap=Overlap.SKIP)
    await Scheduler(store).tick(T + 1)
    first = (await jobs_of(store, schedule.id))[0]
    await store.transition(first.id, state, allowed_from=[JobState.QUEUED])

    runs = await Scheduler(store).tick(T + HOUR + 1)

    assert [r.outcome for r in runs] == [RunOutcome.SKIPPED_OVERLAP]


async def test_overlap_skip_counts_manual_run(store: Store) -> None:
    schedule = await create(store, overlap=Overlap.SKIP)
    await start_manual_run(store, schedule, now=T - 100)

    runs = await Scheduler(store).tick(T + 1)

    assert [r.outcome for r in runs] == [RunOutcome.SKIPPED_OVERLAP]


async def test_overlap_allow_starts_each(store: Store) -> None:
    schedule = await create(store, overlap=Overlap.ALLOW)
    scheduler = Scheduler(store)

    await scheduler.tick(T + 1)
    await scheduler.tick(T + HOUR + 1)

    runs = await runs_of(store, schedule.id)
    assert [r.outcome for r in runs] == [RunOutcome.STARTED] * 2
    assert len(await jobs_of(store, schedule.id)) == 2


# -- missed due times ----------------------------------------------------------


async def test_missed_run_once(store: Store) -> None:
    schedule = await create(store, missed=Missed.RUN_ONCE)

    runs = await Scheduler(store).tick(T + 5 * HOUR + 30)

    jobs = await jobs_of(store, schedule.id)
    assert [(r.due_at, r.outcome, r.missed_count) for r in runs] == [
        (T, RunOutcome.STARTED, 6)
    ]
    assert [job.id for job in jobs] == [runs[0].job_id]
    assert await next_run(store, schedule.id) == T + 6 * HOUR


async def test_missed_skip(store: Store) -> None:
    schedule = await create(store, missed=Missed.SKIP)

    runs = await Scheduler(store).tick(T + 5 * HOUR + 90)

    assert [(r.due_at, r.outcome, r.missed_count, r.job_id) for r in runs] == [
        (T, RunOutcome.MISSED, 6, None)
    ]
    assert await jobs_of(store, schedule.id) == []
    assert await next_run(store, schedule.id) == T + 6 * HOUR


async def test_missed_skip_keeps_due_time_within_grace(store: Store) -> None:
    schedule = await create(store, missed=Missed.SKIP)
    scheduler = Scheduler(store)

    first = await scheduler.tick(T + 5 * HOUR + 30)
    second = await scheduler.tick(T + 5 * HOUR + 31)

    assert [(r.due_at, r.outcome, r.missed_count) for r in first] == [
        (T, RunOutcome.MISSED, 5),
        (T + 5 * HOUR, RunOutcome.STARTED, 0),
    ]
    assert second == []
    assert len(await jobs_of(store, schedule.id)) == 1
    assert await next_run(store, schedule.id) == T + 6 * HOUR


async def test_missed_then_on_time(store: Store) -> None:
    schedule = await create(store, missed=Missed.SKIP)
    scheduler = Scheduler(store)

    await scheduler.tick(T + 2 * HOUR + 90)
    runs = await scheduler.tick(T + 3 * HOUR + 1)

    assert [(r.due_at, r.outcome) for r in runs] == [(T + 3 * HOUR, RunOutcome.STARTED)]
    assert len(await jobs_of(store, schedule.id)) == 1


async def test_missed_overlap_skip(store: Store) -> None:
    schedule = await create(store, overlap=Overlap.SKIP, missed=Missed.RUN_ONCE)
    await start_manual_run(store, schedule, now=T - 100)

    runs = await Scheduler(store).tick(T + 3 * HOUR)

    assert [(r.outcome, r.missed_count) for r in runs] == [
        (RunOutcome.SKIPPED_OVERLAP, 4)
    ]
    assert await next_run(store, schedule.id) == T + 4 * HOUR


# -- disabled, updated, manual -------------------------------------------------


async def test_disabled_never_fires(store: Store) -> None:
    schedule = await create(store, enabled=False, next_run_at=None)

    runs = await Scheduler(store).tick(T + DAY)

    assert runs == []
    assert await jobs_of(store, schedule.id) == []


async def test_disabled_with_due_time_never_fires(store: Store) -> None:
    # The API clears the next run time on disable; the store's query does
    # not rely on it.
    schedule = await create(store, enabled=False, next_run_at=T)

    runs = await Scheduler(store).tick(T + 1)

    assert runs == []
    assert await jobs_of(store, schedule.id) == []


async def test_manual_run_recorded(store: Store) -> None:
    schedule = await create(store)

    job, created = await start_manual_run(store, schedule, now=T - 500)
    repeat_job, repeat_created = await start_manual_run(
        store, schedule, now=T - 400, client_key="k1"
    )
    same_job, same_created = await start_manual_run(
        store, schedule, now=T - 300, client_key="k1"
    )

    runs = await runs_of(store, schedule.id)
    assert created is True
    assert job.schedule_id == schedule.id
    assert repeat_created is True
    assert same_created is False
    assert same_job.id == repeat_job.id
    assert [(r.trigger, r.outcome, r.job_id) for r in runs] == [
        (RunTrigger.MANUAL, RunOutcome.STARTED, repeat_job.id),
        (RunTrigger.MANUAL, RunOutcome.STARTED, job.id),
    ]
    assert await next_run(store, schedule.id) == T


# -- daylight-saving days ------------------------------------------------------


async def tick_through(store: Store, start: int, end: int, step: int) -> None:
    scheduler = Scheduler(store)
    for instant in range(start, end, step):
        await scheduler.tick(instant)


async def started_due_times(store: Store, schedule_id: str) -> list[int]:
    runs = await store.list_schedule_runs(schedule_id, limit=1000)
    return sorted(r.due_at for r in runs if r.outcome is RunOutcome.STARTED)


async def test_spring_forward_day(store: Store) -> None:
    start = epoch("2025-03-08T17:00")
    specs = {
        "0230": dataclasses.replace(
            HOURLY, cron="30 2 * * *", timezone="America/New_York"
        ),
        "hourly": dataclasses.replace(HOURLY, timezone="America/New_York"),
    }
    schedules = {
        name: await store.create_schedule(
            spec,
            next_run_at=Timetable.parse(spec.cron, spec.timezone).next_after(start),
        )
        for name, spec in specs.items()
    }

    await tick_through(store, start + 7, start + DAY, 300)

    assert await started_due_times(store, schedules["0230"].id) == [
        epoch("2025-03-09T07:00")
    ]
    assert await started_due_times(store, schedules["hourly"].id) == [
        start + HOUR * n for n in range(1, 24)
    ]


async def test_fall_back_day(store: Store) -> None:
    start = epoch("2025-11-01T16:00")
    spec = dataclasses.replace(HOURLY, cron="30 1 * * *", timezone="America/New_York")
    schedule = await store.create_schedule(spec, next_run_at=epoch("2025-11-02T05:30"))

    await tick_through(store, start + 7, start + 25 * HOUR, 300)

    assert await started_due_times(store, schedule.id) == [epoch("2025-11-02T05:30")]
    assert await next_run(store, schedule.id) == epoch("2025-11-03T06:30")

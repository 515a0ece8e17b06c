"""Contract tests of the schedule operations that every Store must pass.

The ``store`` fixture (conftest.py) runs each test once per implementation,
and ``other_store`` is a second handle on the same data, as another process
would open. Times are epoch seconds that the tests choose.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from crawler.store.base import InvalidCursorError, JobState, Store
from crawler.store.schedules import (
    UNCHANGED,
    Missed,
    Overlap,
    RunOutcome,
    RunTrigger,
    Schedule,
    ScheduleRun,
    ScheduleSpec,
)

DUE = 1_741_503_600
"""2025-03-09T07:00:00Z."""

SPEC = ScheduleSpec(
    name="nightly",
    cron="30 2 * * *",
    timezone="America/New_York",
    job={"seeds": ["http://a.test/"], "max_pages": 5},
    enabled=True,
    overlap=Overlap.ALLOW,
    missed=Missed.SKIP,
)


def run(schedule_id: str, due_at: int = DUE, **changes: object) -> ScheduleRun:
    base = ScheduleRun(
        schedule_id=schedule_id,
        key=str(due_at),
        due_at=due_at,
        decided_at=due_at + 5,
        trigger=RunTrigger.SCHEDULE,
        outcome=RunOutcome.STARTED,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def create(
    store: Store, next_run_at: int | None = DUE, **changes: object
) -> Schedule:
    spec = dataclasses.replace(SPEC, **changes)  # type: ignore[arg-type]
    return await store.create_schedule(spec, next_run_at=next_run_at)


# -- schedules -----------------------------------------------------------------


async def test_create_schedule_stores_spec(store: Store) -> None:
    schedule = await create(store)

    assert schedule.spec == SPEC
    assert schedule.next_run_at == DUE
    assert schedule.created_at == schedule.updated_at
    assert len(schedule.id) >= 16
    assert await store.get_schedule(schedule.id) == schedule


async def test_get_missing_schedule(store: Store) -> None:
    assert await store.get_schedule("missing") is None


async def test_other_handle_sees_schedule(store: Store, other_store: Store) -> None:
    schedule = await create(store)

    assert await other_store.get_schedule(schedule.id) == schedule


async def test_list_schedules_newest_first(store: Store) -> None:
    created = [await create(store, name=f"s{number}") for number in range(5)]

    first = await store.list_schedules(limit=2)
    second = await store.list_schedules(limit=2, cursor=first.next_cursor)
    third = await store.list_schedules(limit=2, cursor=second.next_cursor)

    listed = [s.id for page in (first, second, third) for s in page.items]
    assert listed == [schedule.id for schedule in reversed(created)]
    assert third.next_cursor is None


async def test_list_schedules_rejects_job_cursor(store: Store) -> None:
    await store.create_job({"seeds": ["http://a.test/"]})
    await store.create_job({"seeds": ["http://a.test/"]})
    jobs = await store.list_jobs(limit=1)
    assert jobs.next_cursor is not None

    with pytest.raises(InvalidCursorError):
        await store.list_schedules(cursor=jobs.next_cursor)


async def test_update_schedule_replaces_spec(store: Store) -> None:
    schedule = await create(store)
    spec = dataclasses.replace(SPEC, name="renamed", cron="0 4 * * *")

    updated = await store.update_schedule(schedule.id, spec, next_run_at=DUE + 60)

    assert updated is not None
    assert updated.spec == spec
    assert updated.next_run_at == DUE + 60
    assert await store.get_schedule(schedule.id) == updated


async def test_update_schedule_keeps_next_run(store: Store) -> None:
    schedule = await create(store)
    spec = dataclasses.replace(SPEC, name="renamed")

    updated = await store.update_schedule(schedule.id, spec, next_run_at=UNCHANGED)

    assert updated is not None
    assert updated.name == "renamed"
    assert updated.next_run_at == DUE


async def test_update_schedule_clears_next_run(store: Store) -> None:
    schedule = await create(store)
    spec = dataclasses.replace(SPEC, enabled=False)

    updated = await store.update_schedule(schedule.id, spec, next_run_at=None)

    assert updated is not None
    assert updated.enabled is False
    assert updated.next_run_at is None


async def test_update_missing_schedule(store: Store) -> None:
    assert await store.update_schedule("missing", SPEC, next_run_at=DUE) is None


async def test_delete_schedule_keeps_jobs(store: Store) -> None:
    schedule = await create(store)
    job, _ = await store.create_job({}, schedule_id=schedule.id)
    await store.record_schedule_run(run(schedule.id, job_id=job.id))

    deleted = await store.delete_schedule(schedule.id)

    assert deleted is True
    assert await store.get_schedule(schedule.id) is None
    assert await store.list_schedule_runs(schedule.id, limit=10) == []
    assert await store.get_job(job.id) == job


async def test_delete_missing_schedule(store: Store) -> None:
    assert await store.delete_schedule("missing") is False


# -- due schedules and advancing -----------------------------------------------


async def test_due_schedules_earliest_first(store: Store) -> None:
    later = await create(store, next_run_at=DUE + 60)
    earlier = await create(store, next_run_at=DUE - 60)
    await create(store, next_run_at=DUE + 61)
    await create(store, next_run_at=None)
    await create(store, next_run_at=DUE - 120, enabled=False)

    due = await store.due_schedules(DUE + 60, limit=10)

    assert [schedule.id for schedule in due] == [earlier.id, later.id]


async def test_due_schedules_limit(store: Store) -> None:
    for offset in range(3):
        await create(store, next_run_at=DUE - offset)

    due = await store.due_schedules(DUE, limit=2)

    assert [schedule.next_run_at for schedule in due] == [DUE - 2, DUE - 1]


async def test_advance_schedule_from_due_time(store: Store) -> None:
    schedule = await create(store)

    advanced = await store.advance_schedule(
        schedule.id, due_at=DUE, next_run_at=DUE + 86_400
    )
    again = await store.advance_schedule(
        schedule.id, due_at=DUE, next_run_at=DUE + 2 * 86_400
    )

    stored = await store.get_schedule(schedule.id)
    assert advanced is True
    assert again is False
    assert stored is not None
    assert stored.next_run_at == DUE + 86_400


async def test_advance_schedule_to_none(store: Store) -> None:
    schedule = await create(store)

    assert await store.advance_schedule(schedule.id, due_at=DUE, next_run_at=None)

    stored = await store.get_schedule(schedule.id)
    assert stored is not None
    assert stored.next_run_at is None
    assert await store.due_schedules(DUE, limit=10) == []


async def test_advance_missing_schedule(store: Store) -> None:
    assert not await store.advance_schedule("missing", due_at=DUE, next_run_at=DUE)


async def test_advance_race_has_one_winner(store: Store, other_store: Store) -> None:
    schedule = await create(store)

    results = await asyncio.gather(
        *(
            handle.advance_schedule(
                schedule.id, due_at=DUE, next_run_at=DUE + 60 * number
            )
            for number, handle in enumerate((store, other_store) * 5, start=1)
        )
    )

    stored = await store.get_schedule(schedule.id)
    assert results.count(True) == 1
    assert stored is not None
    winner = results.index(True) + 1
    assert stored.next_run_at == DUE + 60 * winner


# -- runs ----------------------------------------------------------------------


async def test_record_run_first_wins(store: Store) -> None:
    schedule = await create(store)
    first = run(schedule.id, outcome=RunOutcome.SKIPPED_OVERLAP)

    stored = await store.record_schedule_run(first)
    repeat = await store.record_schedule_run(run(schedule.id, decided_at=DUE + 9))

    assert stored == first
    assert repeat == first


async def test_record_run_race_has_one_decision(
    store: Store, other_store: Store
) -> None:
    schedule = await create(store)
    proposals = [
        run(schedule.id, decided_at=DUE + number, missed_count=number)
        for number in range(10)
    ]

    results = await asyncio.gather(
        *(
            handle.record_schedule_run(proposal)
            for handle, proposal in zip(
                (store, other_store) * 5, proposals, strict=True
            )
        )
    )

    assert len(set(results)) == 1
    assert results[0] in proposals
    assert await store.list_schedule_runs(schedule.id, limit=10) == [results[0]]


async def test_record_run_of_missing_schedule(store: Store) -> None:
    assert await store.record_schedule_run(run("missing")) is None
    assert await store.list_schedule_runs("missing", limit=10) == []


async def test_link_schedule_run(store: Store) -> None:
    schedule = await create(store)
    await store.record_schedule_run(run(schedule.id))

    await store.link_schedule_run(schedule.id, str(DUE), "job-1")

    runs = await store.list_schedule_runs(schedule.id, limit=10)
    assert [stored.job_id for stored in runs] == ["job-1"]


async def test_list_runs_newest_due_first(store: Store) -> None:
    schedule = await create(store)
    other = await create(store)
    for offset in (0, 120, 60):
        await store.record_schedule_run(run(schedule.id, DUE + offset))
    await store.record_schedule_run(run(other.id, DUE + 30))

    runs = await store.list_schedule_runs(schedule.id, limit=2)

    assert [stored.due_at for stored in runs] == [DUE + 120, DUE + 60]


async def test_runs_keep_every_field(store: Store) -> None:
    schedule = await create(store)
    manual = run(
        schedule.id,
        key="manual-abc",
        trigger=RunTrigger.MANUAL,
        outcome=RunOutcome.STARTED,
        missed_count=0,
        job_id="abc",
    )
    missed = run(schedule.id, DUE - 60, outcome=RunOutcome.MISSED, missed_count=7)

    await store.record_schedule_run(manual)
    await store.record_schedule_run(missed)

    assert await store.list_schedule_runs(schedule.id, limit=10) == [manual, missed]


# -- jobs of a schedule --------------------------------------------------------


async def test_unfinished_jobs_by_state(store: Store) -> None:
    schedule = await create(store)
    job, _ = await store.create_job({}, schedule_id=schedule.id)
    await store.create_job({})

    queued = await store.has_unfinished_jobs(schedule.id)
    await store.transition(job.id, JobState.PAUSED, allowed_from=[JobState.QUEUED])
    paused = await store.has_unfinished_jobs(schedule.id)
    await store.transition(job.id, JobState.CANCELLED, allowed_from=[JobState.PAUSED])
    cancelled = await store.has_unfinished_jobs(schedule.id)

    assert queued is True
    assert paused is True
    assert cancelled is False


async def test_unfinished_jobs_excluding_key(store: Store) -> None:
    schedule = await create(store)
    await store.create_job({}, schedule_id=schedule.id, idempotency_key="this-due")

    excluded = await store.has_unfinished_jobs(schedule.id, excluding_key="this-due")
    other_key = await store.has_unfinished_jobs(schedule.id, excluding_key="other")

    assert excluded is False
    assert other_key is True


async def test_unfinished_jobs_of_other_schedule(store: Store) -> None:
    schedule = await create(store)
    await store.create_job({}, schedule_id="another")

    assert await store.has_unfinished_jobs(schedule.id) is False

"""Contract tests that every Store implementation must pass.

The ``store`` fixture (conftest.py) runs each test once per implementation.
Leases use an injected clock: ``now`` is a number of seconds that the tests
choose, not the time of day.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection

import pytest

from crawler.errors import StoreError
from crawler.frontier import CrawlRequest
from crawler.records import PageError, PageRecord, utc_timestamp
from crawler.store.base import (
    InvalidCursorError,
    Job,
    JobCounters,
    JobState,
    PageFilter,
    Store,
)

LEASE_S = 30.0
NOW = 1_000_000.0

# -- helpers -------------------------------------------------------------------


def request(path: str, host: str = "a.test", depth: int = 0) -> CrawlRequest:
    url = f"http://{host}{path}"
    return CrawlRequest(
        url=url, key=url, host=host, depth=depth, referrer=f"http://{host}/"
    )


def record(
    name: str,
    *,
    status: int | None = 200,
    error: str | None = None,
    depth: int = 0,
) -> PageRecord:
    url = f"http://a.test/{name}"
    return PageRecord(
        url=url,
        final_url=url,
        key=url,
        depth=depth,
        referrer=None,
        fetched_at=utc_timestamp(),
        status=status,
        title=f"Page {name}",
        robots=("noindex",),
        fields={"h1": ["one", "two"]},
        error=None if error is None else PageError(error, f"{error} failed"),
    )


async def create_jobs(store: Store, count: int) -> list[Job]:
    jobs = []
    for number in range(count):
        created, _ = await store.create_job({"number": number})
        jobs.append(created)
    return jobs


async def all_jobs(
    store: Store, limit: int, states: Collection[JobState] = ()
) -> list[list[str]]:
    """Return the job ids of every page of the job listing."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await store.list_jobs(states=states, limit=limit, cursor=cursor)
        pages.append([job.id for job in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def urls(
    store: Store, job_id: str, filters: PageFilter | None = None
) -> list[str]:
    page = await store.list_pages(job_id, filters=filters or PageFilter(), limit=1000)
    return [item["url"] for item in page.items]


async def claimed_job(store: Store, worker_id: str = "worker-a") -> Job:
    claimed = await store.claim_job(worker_id, lease_s=LEASE_S, now=NOW)
    assert claimed is not None
    return claimed


# -- store ---------------------------------------------------------------------


async def test_ping_open_store(store: Store) -> None:
    await store.ping()


async def test_closed_store_raises(store: Store) -> None:
    await store.close()

    with pytest.raises(StoreError):
        await store.ping()


# -- jobs ----------------------------------------------------------------------


async def test_create_job_is_queued(store: Store) -> None:
    options = {"seeds": ["http://a.test/"], "max_pages": 10}

    job, created = await store.create_job(options, schedule_id="nightly")

    assert created is True
    assert job.state is JobState.QUEUED
    assert job.options == options
    assert job.schedule_id == "nightly"
    assert job.idempotency_key is None
    assert job.created_at == job.updated_at
    assert job.started_at is None
    assert job.finished_at is None
    assert job.lease_owner is None
    assert job.skipped == {}


async def test_get_job_returns_stored(store: Store, job: Job) -> None:
    assert await store.get_job(job.id) == job


async def test_get_missing_job(store: Store) -> None:
    assert await store.get_job("missing") is None


async def test_job_ids_random_url_safe(store: Store) -> None:
    jobs = await create_jobs(store, 20)
    ids = [job.id for job in jobs]

    assert len(set(ids)) == len(ids)
    for job_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{16,}", job_id), job_id
    assert ids != sorted(ids), "ids must not follow creation order"


async def test_idempotency_key_repeat(store: Store) -> None:
    first, first_created = await store.create_job({"n": 1}, idempotency_key="k1")

    repeat, repeat_created = await store.create_job({"n": 2}, idempotency_key="k1")
    other, other_created = await store.create_job({"n": 3}, idempotency_key="k2")

    assert first_created is True
    assert repeat_created is False
    assert repeat == first
    assert other_created is True
    assert other.id != first.id
    assert [len(page) for page in await all_jobs(store, 10)] == [2]


async def test_idempotency_key_race(store: Store, other_store: Store) -> None:
    results = await asyncio.gather(
        *(
            handle.create_job({}, idempotency_key="race")
            for handle in (store, other_store) * 5
        )
    )

    assert len({job.id for job, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1


async def test_list_jobs_newest_first(store: Store) -> None:
    jobs = await create_jobs(store, 7)

    pages = await all_jobs(store, 3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [job_id for page in pages for job_id in page] == [
        job.id for job in reversed(jobs)
    ]


async def test_list_jobs_full_last_page(store: Store) -> None:
    await create_jobs(store, 6)

    pages = await all_jobs(store, 3)

    assert [len(page) for page in pages] == [3, 3]


async def test_list_jobs_filters_states(store: Store) -> None:
    jobs = await create_jobs(store, 4)
    await store.transition(jobs[1].id, JobState.PAUSED, allowed_from=[JobState.QUEUED])
    await store.transition(
        jobs[3].id, JobState.CANCELLED, allowed_from=[JobState.QUEUED]
    )

    pages = await all_jobs(store, 1, states=[JobState.PAUSED, JobState.CANCELLED])

    assert pages == [[jobs[3].id], [jobs[1].id]]


async def test_list_jobs_stable_while_adding(store: Store) -> None:
    jobs = await create_jobs(store, 4)
    first = await store.list_jobs(limit=2)
    await create_jobs(store, 2)

    second = await store.list_jobs(limit=2, cursor=first.next_cursor)

    assert [job.id for job in second.items] == [jobs[1].id, jobs[0].id]
    assert second.next_cursor is None


@pytest.mark.parametrize(
    "cursor", ["", "not a cursor", "e30", "WyJqb2JzIiwtMV0", "x" * 500]
)
async def test_list_jobs_rejects_bad_cursor(store: Store, cursor: str) -> None:
    await create_jobs(store, 3)

    with pytest.raises(InvalidCursorError):
        await store.list_jobs(limit=1, cursor=cursor)


async def test_list_jobs_rejects_pages_cursor(store: Store, job: Job) -> None:
    for name in ("a", "b"):
        await store.save_page(job.id, record(name))
    page = await store.list_pages(job.id, limit=1)
    assert page.next_cursor is not None

    with pytest.raises(InvalidCursorError):
        await store.list_jobs(cursor=page.next_cursor)


# -- transitions ---------------------------------------------------------------


async def test_transition_to_running(store: Store, job: Job) -> None:
    moved = await store.transition(
        job.id, JobState.RUNNING, allowed_from=[JobState.QUEUED]
    )

    assert moved is not None
    assert moved.state is JobState.RUNNING
    assert moved.started_at is not None
    assert moved.finished_at is None
    assert await store.get_job(job.id) == moved


async def test_started_at_set_once(store: Store, job: Job) -> None:
    first = await store.transition(
        job.id, JobState.RUNNING, allowed_from=[JobState.QUEUED]
    )
    await store.transition(job.id, JobState.PAUSED, allowed_from=[JobState.RUNNING])
    await asyncio.sleep(0.01)

    again = await store.transition(
        job.id, JobState.RUNNING, allowed_from=[JobState.PAUSED]
    )

    assert first is not None
    assert again is not None
    assert again.started_at == first.started_at


async def test_transition_from_other_state(store: Store, job: Job) -> None:
    rejected = await store.transition(
        job.id, JobState.COMPLETED, allowed_from=[JobState.RUNNING]
    )

    assert rejected is None
    assert await store.get_job(job.id) == job


async def test_transition_no_allowed_states(store: Store, job: Job) -> None:
    assert await store.transition(job.id, JobState.PAUSED, allowed_from=[]) is None


async def test_transition_missing_job(store: Store) -> None:
    moved = await store.transition(
        "missing", JobState.RUNNING, allowed_from=list(JobState)
    )

    assert moved is None


async def test_final_state_drops_lease(store: Store, job: Job) -> None:
    await claimed_job(store)

    finished = await store.transition(
        job.id,
        JobState.FAILED,
        allowed_from=[JobState.RUNNING],
        last_error="seed unreachable",
    )

    assert finished is not None
    assert finished.state is JobState.FAILED
    assert finished.finished_at is not None
    assert finished.lease_owner is None
    assert finished.lease_expires_at is None
    assert finished.last_error == "seed unreachable"


async def test_leaving_final_state_clears_finished_at(store: Store, job: Job) -> None:
    await store.transition(job.id, JobState.CANCELLED, allowed_from=[JobState.QUEUED])

    requeued = await store.transition(
        job.id, JobState.QUEUED, allowed_from=[JobState.CANCELLED]
    )

    assert requeued is not None
    assert requeued.finished_at is None


async def test_transition_keeps_last_error(store: Store, job: Job) -> None:
    await store.transition(
        job.id, JobState.FAILED, allowed_from=[JobState.QUEUED], last_error="boom"
    )

    requeued = await store.transition(
        job.id, JobState.QUEUED, allowed_from=[JobState.FAILED]
    )

    assert requeued is not None
    assert requeued.last_error == "boom"


# -- delete --------------------------------------------------------------------


async def test_delete_job_removes_everything(store: Store, job: Job) -> None:
    other, _ = await store.create_job({})
    for job_id in (job.id, other.id):
        await store.add_requests(job_id, [request("/1"), request("/2")])
        await store.pop_request(job_id, (), "worker-a")
        await store.claim_key(job_id, "http://a.test/seen")
        await store.save_page(job_id, record("1"))

    deleted = await store.delete_job(job.id)

    assert deleted is True
    assert await store.get_job(job.id) is None
    assert await store.counters(job.id) == JobCounters()
    assert (await store.list_pages(job.id)).items == []
    assert await store.add_requests(job.id, [request("/1")]) == 0
    assert await store.counters(other.id) == JobCounters(
        queued=1, in_progress=1, done=1, pages=1, fetched=1, popped=1
    )
    assert [j.id for j in (await store.list_jobs()).items] == [other.id]


async def test_delete_missing_job(store: Store, job: Job) -> None:
    await store.delete_job(job.id)

    assert await store.delete_job(job.id) is False


# -- leases --------------------------------------------------------------------


async def test_claim_job_leases(store: Store, job: Job) -> None:
    claimed = await store.claim_job("worker-a", lease_s=LEASE_S, now=NOW)

    assert claimed is not None
    assert claimed.id == job.id
    assert claimed.state is JobState.RUNNING
    assert claimed.lease_owner == "worker-a"
    assert claimed.lease_expires_at == NOW + LEASE_S
    assert claimed.started_at is not None
    assert await store.get_job(job.id) == claimed


async def test_claim_oldest_first(store: Store) -> None:
    jobs = await create_jobs(store, 3)

    claimed = [await claimed_job(store, f"worker-{n}") for n in range(3)]

    assert [job.id for job in claimed] == [job.id for job in jobs]


async def test_claim_without_jobs(store: Store) -> None:
    assert await store.claim_job("worker-a", lease_s=LEASE_S, now=NOW) is None


async def test_claim_when_all_leased(store: Store, job: Job) -> None:
    await claimed_job(store)

    assert await store.claim_job("worker-b", lease_s=LEASE_S, now=NOW) is None


@pytest.mark.parametrize(
    "state",
    [JobState.PAUSED, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED],
)
async def test_claim_skips_state(store: Store, job: Job, state: JobState) -> None:
    await store.transition(job.id, state, allowed_from=[JobState.QUEUED])

    assert await store.claim_job("worker-a", lease_s=LEASE_S, now=NOW) is None


async def test_claim_exclusive(store: Store, other_store: Store) -> None:
    jobs = await create_jobs(store, 5)

    results = await asyncio.gather(
        *(
            handle.claim_job(f"worker-{n}", lease_s=LEASE_S, now=NOW)
            for n, handle in enumerate((store, other_store) * 6)
        )
    )

    claimed = sorted(job.id for job in results if job is not None)
    assert claimed == sorted(job.id for job in jobs)
    assert results.count(None) == 7


async def test_lease_ending_now_not_expired(store: Store, job: Job) -> None:
    await claimed_job(store)

    reclaimed = await store.claim_job("worker-b", lease_s=LEASE_S, now=NOW + LEASE_S)

    assert reclaimed is None


async def test_expired_lease_reclaimed(
    store: Store, other_store: Store, job: Job
) -> None:
    first = await claimed_job(store, "worker-a")
    later = NOW + LEASE_S + 1

    reclaimed = await other_store.claim_job("worker-b", lease_s=LEASE_S, now=later)

    assert reclaimed is not None
    assert reclaimed.id == job.id
    assert reclaimed.state is JobState.RUNNING
    assert reclaimed.lease_owner == "worker-b"
    assert reclaimed.lease_expires_at == later + LEASE_S
    assert reclaimed.started_at == first.started_at


async def test_reclaim_oldest_first(store: Store) -> None:
    older, _ = await create_jobs(store, 2)
    await store.claim_job("worker-a", lease_s=LEASE_S, now=NOW)
    later = NOW + LEASE_S + 1

    reclaimed = await store.claim_job("worker-b", lease_s=LEASE_S, now=later)

    assert reclaimed is not None
    assert reclaimed.id == older.id


async def test_renew_extends_lease(store: Store, job: Job) -> None:
    await claimed_job(store, "worker-a")

    renewed = await store.renew_lease(job.id, "worker-a", lease_s=LEASE_S, now=NOW + 20)
    reclaimed = await store.claim_job(
        "worker-b", lease_s=LEASE_S, now=NOW + LEASE_S + 1
    )

    assert renewed is True
    assert reclaimed is None
    stored = await store.get_job(job.id)
    assert stored is not None
    assert stored.lease_expires_at == NOW + 20 + LEASE_S


async def test_renew_after_takeover(store: Store, job: Job) -> None:
    await claimed_job(store, "worker-a")
    later = NOW + LEASE_S + 1
    await store.claim_job("worker-b", lease_s=LEASE_S, now=later)

    renewed = await store.renew_lease(job.id, "worker-a", lease_s=LEASE_S, now=later)

    assert renewed is False
    stored = await store.get_job(job.id)
    assert stored is not None
    assert stored.lease_owner == "worker-b"


async def test_renew_missing_job(store: Store) -> None:
    renewed = await store.renew_lease("missing", "worker-a", lease_s=LEASE_S, now=NOW)

    assert renewed is False


async def test_release_job(store: Store, job: Job) -> None:
    await claimed_job(store, "worker-a")

    await store.release_job(job.id, "worker-a")
    released = await store.get_job(job.id)
    reclaimed = await store.claim_job("worker-b", lease_s=LEASE_S, now=NOW)

    assert released is not None
    assert released.state is JobState.RUNNING
    assert released.lease_owner is None
    assert released.lease_expires_at is None
    assert reclaimed is not None
    assert reclaimed.lease_owner == "worker-b"


async def test_release_by_other_worker(store: Store, job: Job) -> None:
    claimed = await claimed_job(store, "worker-a")

    await store.release_job(job.id, "worker-b")

    assert await store.get_job(job.id) == claimed


# -- frontier ------------------------------------------------------------------


async def test_add_requests_deduplicates(store: Store, job: Job) -> None:
    first = await store.add_requests(
        job.id, [request("/1"), request("/2"), request("/1")]
    )
    second = await store.add_requests(job.id, [request("/2"), request("/3")])

    assert first == 2
    assert second == 1
    assert (await store.counters(job.id)).queued == 3


async def test_add_requests_per_job(store: Store, job: Job) -> None:
    other, _ = await store.create_job({})
    await store.add_requests(job.id, [request("/1")])

    assert await store.add_requests(other.id, [request("/1")]) == 1


async def test_add_no_requests(store: Store, job: Job) -> None:
    assert await store.add_requests(job.id, []) == 0


async def test_claim_key_once(store: Store, job: Job) -> None:
    first = await store.claim_key(job.id, "http://a.test/r")
    second = await store.claim_key(job.id, "http://a.test/r")

    assert first is True
    assert second is False
    assert await store.counters(job.id) == JobCounters(done=1)


async def test_claim_key_blocks_request(store: Store, job: Job) -> None:
    await store.claim_key(job.id, "http://a.test/1")

    assert await store.add_requests(job.id, [request("/1")]) == 0
    assert await store.pop_request(job.id, (), "worker-a") is None


async def test_claim_key_of_queued_key(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request("/1")])

    assert await store.claim_key(job.id, "http://a.test/1") is False


async def test_pop_returns_request(store: Store, job: Job) -> None:
    added = request("/1", depth=3)
    await store.add_requests(job.id, [added])

    assert await store.pop_request(job.id, (), "worker-a") == added


async def test_pop_oldest_first(store: Store, job: Job) -> None:
    added = [request("/1"), request("/1", "b.test"), request("/2"), request("/3")]
    await store.add_requests(job.id, added[:2])
    await store.add_requests(job.id, added[2:])

    popped = [await store.pop_request(job.id, (), "worker-a") for _ in added]

    assert popped == added
    assert await store.pop_request(job.id, (), "worker-a") is None


async def test_pop_skips_busy_hosts(store: Store, job: Job) -> None:
    await store.add_requests(
        job.id, [request("/1"), request("/2"), request("/1", "b.test")]
    )

    popped = await store.pop_request(job.id, ["a.test"], "worker-a")
    none_free = await store.pop_request(job.id, {"a.test", "b.test"}, "worker-a")

    assert popped == request("/1", "b.test")
    assert none_free is None
    assert (await store.counters(job.id)).queued == 2


async def test_pop_marks_in_progress(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request("/1"), request("/2")])

    first = await store.pop_request(job.id, (), "worker-a")
    second = await store.pop_request(job.id, (), "worker-a")

    assert first != second
    assert await store.counters(job.id) == JobCounters(in_progress=2, popped=2)


async def test_pop_missing_job(store: Store) -> None:
    assert await store.pop_request("missing", (), "worker-a") is None


async def test_complete_request(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request("/1"), request("/2")])
    popped = await store.pop_request(job.id, (), "worker-a")
    assert popped is not None

    await store.complete_request(job.id, popped.key)

    assert await store.counters(job.id) == JobCounters(queued=1, done=1, popped=1)


async def test_requeue_in_progress(store: Store, job: Job) -> None:
    added = [request("/1"), request("/2"), request("/3")]
    await store.add_requests(job.id, added)
    await store.pop_request(job.id, (), "worker-dead")
    await store.pop_request(job.id, (), "worker-dead")

    requeued = await store.requeue_in_progress(job.id)
    popped = [await store.pop_request(job.id, (), "worker-b") for _ in added]

    assert requeued == 2
    assert popped == added


async def test_requeue_skips_done(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request("/1"), request("/2")])
    done = await store.pop_request(job.id, (), "worker-a")
    assert done is not None
    await store.complete_request(job.id, done.key)
    await store.pop_request(job.id, (), "worker-a")

    requeued = await store.requeue_in_progress(job.id)

    assert requeued == 1
    assert await store.counters(job.id) == JobCounters(queued=1, done=1, popped=1)


async def test_frontier_of_missing_job(store: Store) -> None:
    assert await store.add_requests("missing", [request("/1")]) == 0
    assert await store.claim_key("missing", "http://a.test/1") is False
    assert await store.requeue_in_progress("missing") == 0


# -- pages ---------------------------------------------------------------------


async def test_save_page_once(store: Store, job: Job) -> None:
    first = record("1")
    again = record("1", status=500, error="http_status")

    stored = await store.save_page(job.id, first)
    repeated = await store.save_page(job.id, again)

    assert stored is True
    assert repeated is False
    assert (await store.list_pages(job.id)).items == [first.to_dict()]


async def test_save_page_missing_job(store: Store) -> None:
    assert await store.save_page("missing", record("1")) is False


async def test_list_pages_oldest_first(store: Store, job: Job) -> None:
    names = [str(n) for n in range(7)]
    for name in names:
        await store.save_page(job.id, record(name))

    pages = []
    cursor = None
    while True:
        page = await store.list_pages(job.id, limit=3, cursor=cursor)
        pages.append([item["url"].rsplit("/", 1)[1] for item in page.items])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert pages == [names[0:3], names[3:6], names[6:7]]


FILTER_CASES = [
    (PageFilter(), ["ok", "deep", "missing", "dns", "robots", "teapot"]),
    (PageFilter(status_class=2), ["ok", "deep"]),
    (PageFilter(status_class=4), ["missing", "teapot"]),
    (PageFilter(error_kind="dns"), ["dns"]),
    (PageFilter(depth=2), ["deep", "teapot"]),
    (PageFilter(errors_only=True), ["missing", "dns", "robots"]),
    (PageFilter(status_class=4, depth=2), ["teapot"]),
    (PageFilter(status_class=3), []),
]


async def save_filter_records(store: Store, job_id: str) -> None:
    for saved in (
        record("ok"),
        record("deep", depth=2),
        record("missing", status=404, error="http_status"),
        record("dns", status=None, error="dns"),
        record("robots", status=None, error="robots"),
        record("teapot", status=418, depth=2),
    ):
        await store.save_page(job_id, saved)


@pytest.mark.parametrize(("filters", "expected"), FILTER_CASES)
async def test_list_pages_filters(
    store: Store, job: Job, filters: PageFilter, expected: list[str]
) -> None:
    await save_filter_records(store, job.id)

    listed = await urls(store, job.id, filters)

    assert listed == [f"http://a.test/{name}" for name in expected]


async def test_list_pages_filtered_cursor(store: Store, job: Job) -> None:
    for n in range(6):
        await store.save_page(job.id, record(str(n), depth=n % 2))
    filters = PageFilter(depth=1)

    first = await store.list_pages(job.id, filters=filters, limit=2)
    second = await store.list_pages(
        job.id, filters=filters, limit=2, cursor=first.next_cursor
    )

    assert [item["url"] for item in first.items] == [
        "http://a.test/1",
        "http://a.test/3",
    ]
    assert [item["url"] for item in second.items] == ["http://a.test/5"]
    assert second.next_cursor is None


async def test_list_pages_rejects_other_job_cursor(store: Store, job: Job) -> None:
    other, _ = await store.create_job({})
    for name in ("a", "b"):
        await store.save_page(job.id, record(name))
        await store.save_page(other.id, record(name))
    page = await store.list_pages(job.id, limit=1)

    with pytest.raises(InvalidCursorError):
        await store.list_pages(other.id, cursor=page.next_cursor)


async def test_list_pages_rejects_jobs_cursor(store: Store, job: Job) -> None:
    await create_jobs(store, 2)
    page = await store.list_jobs(limit=1)

    with pytest.raises(InvalidCursorError):
        await store.list_pages(job.id, cursor=page.next_cursor)


async def test_list_pages_of_missing_job(store: Store) -> None:
    page = await store.list_pages("missing")

    assert page.items == []
    assert page.next_cursor is None


async def test_iter_pages_in_stored_order(store: Store, job: Job) -> None:
    saved = [record(str(n)) for n in range(10)]
    for page_record in saved:
        await store.save_page(job.id, page_record)

    items = [item async for item in store.iter_pages(job.id, batch_size=3)]

    assert items == [page_record.to_dict() for page_record in saved]


async def test_iter_pages_filters(store: Store, job: Job) -> None:
    await save_filter_records(store, job.id)

    items = [
        item["url"]
        async for item in store.iter_pages(
            job.id, filters=PageFilter(errors_only=True), batch_size=2
        )
    ]

    assert items == [f"http://a.test/{name}" for name in ("missing", "dns", "robots")]


async def test_iter_pages_while_adding(store: Store, job: Job) -> None:
    for n in range(30):
        await store.save_page(job.id, record(f"old-{n}"))

    async def add_records() -> None:
        for n in range(30):
            await store.save_page(job.id, record(f"new-{n}"))
            await asyncio.sleep(0)

    writer = asyncio.create_task(add_records())
    iterated = [item["url"] async for item in store.iter_pages(job.id, batch_size=4)]
    await writer
    stored = await urls(store, job.id)

    assert iterated[:30] == stored[:30]
    assert iterated == stored[: len(iterated)]
    assert len(set(iterated)) == len(iterated)


# -- counters and skip counts --------------------------------------------------


async def test_counters_exact(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request(f"/{n}") for n in range(6)])
    for _ in range(3):
        await store.pop_request(job.id, (), "worker-a")
    await store.complete_request(job.id, "http://a.test/0")
    await store.claim_key(job.id, "http://a.test/redirected")
    await save_filter_records(store, job.id)
    await store.save_page(job.id, record("timeout", status=None, error="timeout"))
    await store.save_page(job.id, record("out", status=None, error="out_of_scope"))
    await store.save_page(job.id, record("error", status=503, error="http_status"))

    counters = await store.counters(job.id)

    assert counters == JobCounters(
        queued=3,
        in_progress=2,
        done=2,
        pages=9,
        fetched=5,
        failed=4,
        popped=3,
        errors={
            "http_status": 2,
            "dns": 1,
            "robots": 1,
            "timeout": 1,
            "out_of_scope": 1,
        },
    )


async def test_counters_of_new_job(store: Store, job: Job) -> None:
    assert await store.counters(job.id) == JobCounters()


async def test_counters_of_missing_job(store: Store) -> None:
    assert await store.counters("missing") == JobCounters()


async def test_add_skipped_accumulates(store: Store, job: Job) -> None:
    await store.add_skipped(job.id, {"trap": 2})
    await store.add_skipped(job.id, {"trap": 1, "nofollow": 3})
    await store.add_skipped(job.id, {})

    stored = await store.get_job(job.id)

    assert stored is not None
    assert stored.skipped == {"trap": 3, "nofollow": 3}


async def test_add_skipped_missing_job(store: Store) -> None:
    await store.add_skipped("missing", {"trap": 1})

    assert await store.get_job("missing") is None

"""Contract tests of how several workers share one job, run on every store.

They cover the leases that let workers on different replicas crawl one job
together: helpers joining a running job, per-URL leases that expire when a
worker dies, per-host leases that keep a host on one worker at a time, and the
job's pop budget that caps ``max_pages`` across workers.
"""

from __future__ import annotations

import asyncio

from crawler.store.base import Job, JobCounters, JobState, Store
from tests.crawler.store.test_store_contract import LEASE_S, NOW, request

# -- joining -------------------------------------------------------------------


async def test_claim_skips_excluded_jobs(store: Store) -> None:
    first, _ = await store.create_job({})
    second, _ = await store.create_job({})

    claimed = await store.claim_job(
        "worker-a", lease_s=LEASE_S, now=NOW, exclude={first.id}
    )

    assert claimed is not None
    assert claimed.id == second.id
    stored = await store.get_job(first.id)
    assert stored is not None and stored.state is JobState.QUEUED


async def test_join_running_job_of_another_worker(store: Store, job: Job) -> None:
    await store.claim_job("worker-a", lease_s=LEASE_S, now=NOW)

    joined = await store.join_job("worker-b", now=NOW + 1)

    assert joined is not None
    assert joined.id == job.id
    assert joined.lease_owner == "worker-a"
    stored = await store.get_job(job.id)
    assert stored == joined, "joining must write nothing"


async def test_join_skips_own_excluded_and_queued_jobs(store: Store, job: Job) -> None:
    assert await store.join_job("worker-b", now=NOW) is None

    await store.claim_job("worker-a", lease_s=LEASE_S, now=NOW)

    assert await store.join_job("worker-a", now=NOW) is None
    assert await store.join_job("worker-b", now=NOW, exclude=[job.id]) is None


async def test_join_skips_expired_and_released_leases(store: Store, job: Job) -> None:
    await store.claim_job("worker-a", lease_s=LEASE_S, now=NOW)

    assert await store.join_job("worker-b", now=NOW + LEASE_S + 1) is None

    await store.release_job(job.id, "worker-a")
    assert await store.join_job("worker-b", now=NOW) is None


async def test_join_oldest_first(store: Store) -> None:
    first, _ = await store.create_job({})
    second, _ = await store.create_job({})
    await store.claim_job("worker-a", lease_s=LEASE_S, now=NOW)
    await store.claim_job("worker-c", lease_s=LEASE_S, now=NOW)

    joined = await store.join_job("worker-b", now=NOW)
    after_first = await store.join_job("worker-b", now=NOW, exclude=[first.id])

    assert joined is not None and joined.id == first.id
    assert after_first is not None and after_first.id == second.id


# -- URL leases ----------------------------------------------------------------


async def test_expired_requests_requeued(store: Store, job: Job) -> None:
    added = [request("/1"), request("/2"), request("/3")]
    await store.add_requests(job.id, added)
    await store.pop_request(job.id, (), "worker-dead", lease_s=10, now=NOW)
    await store.pop_request(job.id, (), "worker-live", lease_s=10, now=NOW)
    await store.renew_requests(job.id, "worker-live", lease_s=10, now=NOW + 5)

    requeued = await store.requeue_in_progress(job.id, expired_at=NOW + 12)

    assert requeued == 1
    assert await store.counters(job.id) == JobCounters(
        queued=2, in_progress=1, popped=1
    )
    again = await store.pop_request(job.id, (), "worker-b", now=NOW + 12)
    assert again == added[0], "a requeued request keeps its place"


async def test_lease_ending_now_not_requeued(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request("/1")])
    await store.pop_request(job.id, (), "worker-a", lease_s=10, now=NOW)

    assert await store.requeue_in_progress(job.id, expired_at=NOW + 10) == 0
    assert await store.requeue_in_progress(job.id, expired_at=NOW + 10.5) == 1


async def test_renew_counts_only_own_requests(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request("/1"), request("/2"), request("/3")])
    await store.pop_request(job.id, (), "worker-a", lease_s=10, now=NOW)
    await store.pop_request(job.id, (), "worker-a", lease_s=10, now=NOW)
    await store.pop_request(job.id, (), "worker-b", lease_s=10, now=NOW)

    renewed = await store.renew_requests(job.id, "worker-a", lease_s=10, now=NOW + 9)

    assert renewed == 2
    assert await store.requeue_in_progress(job.id, expired_at=NOW + 15) == 1
    assert await store.renew_requests("missing", "worker-a", lease_s=10, now=NOW) == 0


async def test_requeue_by_owner(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request("/1"), request("/2")])
    await store.pop_request(job.id, (), "worker-a")
    await store.pop_request(job.id, (), "worker-b")

    assert await store.requeue_in_progress(job.id, owner="worker-a") == 1
    assert await store.counters(job.id) == JobCounters(
        queued=1, in_progress=1, popped=1
    )


async def test_return_request_keeps_place(store: Store, job: Job) -> None:
    added = [request("/1"), request("/2")]
    await store.add_requests(job.id, added)
    popped = await store.pop_request(job.id, (), "worker-a")
    assert popped == added[0]

    assert await store.return_request(job.id, popped.key, "worker-b") is False
    assert await store.return_request(job.id, popped.key, "worker-a") is True
    assert await store.return_request(job.id, popped.key, "worker-a") is False

    assert await store.counters(job.id) == JobCounters(queued=2)
    assert await store.pop_request(job.id, (), "worker-b") == added[0]
    assert await store.return_request("missing", popped.key, "worker-a") is False


# -- the pop budget ------------------------------------------------------------


async def test_max_pops_caps_pops(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request(f"/{n}") for n in range(5)])

    popped = [
        await store.pop_request(job.id, (), "worker-a", max_pops=3) for _ in range(5)
    ]

    assert [p is not None for p in popped] == [True, True, True, False, False]
    assert await store.counters(job.id) == JobCounters(
        queued=2, in_progress=3, popped=3
    )


async def test_requeue_returns_budget(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request(f"/{n}") for n in range(3)])
    first = await store.pop_request(job.id, (), "worker-dead", max_pops=2)
    await store.pop_request(job.id, (), "worker-a", max_pops=2)
    assert first is not None
    assert await store.pop_request(job.id, (), "worker-a", max_pops=2) is None

    await store.requeue_in_progress(job.id, owner="worker-dead")

    again = await store.pop_request(job.id, (), "worker-a", max_pops=2)
    assert again == first
    assert await store.pop_request(job.id, (), "worker-a", max_pops=2) is None


async def test_done_requests_keep_budget(store: Store, job: Job) -> None:
    await store.add_requests(job.id, [request(f"/{n}") for n in range(3)])
    popped = await store.pop_request(job.id, (), "worker-a", max_pops=1)
    assert popped is not None
    await store.complete_request(job.id, popped.key)

    assert await store.pop_request(job.id, (), "worker-a", max_pops=1) is None
    assert (await store.counters(job.id)).popped == 1


async def test_max_pops_across_handles(
    store: Store, other_store: Store, job: Job
) -> None:
    await store.add_requests(job.id, [request(f"/{n}") for n in range(20)])

    results = await asyncio.gather(
        *(
            handle.pop_request(job.id, (), f"worker-{n}", max_pops=7)
            for n, handle in enumerate((store, other_store) * 6)
        )
    )

    popped = [result for result in results if result is not None]
    assert len(popped) == 7
    assert len({result.key for result in popped}) == 7
    assert (await store.counters(job.id)).popped == 7


# -- host leases ---------------------------------------------------------------


async def test_host_lease_is_exclusive(store: Store, job: Job) -> None:
    assert await store.acquire_host(job.id, "a.test", "worker-a", lease_s=10, now=NOW)
    assert not await store.acquire_host(
        job.id, "a.test", "worker-b", lease_s=10, now=NOW + 5
    )
    assert await store.acquire_host(
        job.id, "b.test", "worker-b", lease_s=10, now=NOW + 5
    )

    held = await store.held_hosts(job.id, now=NOW + 5)

    assert held == {"a.test": "worker-a", "b.test": "worker-b"}


async def test_host_lease_renewed_by_holder(store: Store, job: Job) -> None:
    await store.acquire_host(job.id, "a.test", "worker-a", lease_s=10, now=NOW)
    assert await store.acquire_host(
        job.id, "a.test", "worker-a", lease_s=10, now=NOW + 8
    )
    await store.renew_requests(job.id, "worker-a", lease_s=10, now=NOW + 15)

    assert not await store.acquire_host(
        job.id, "a.test", "worker-b", lease_s=10, now=NOW + 24
    )
    assert await store.held_hosts(job.id, now=NOW + 24) == {"a.test": "worker-a"}


async def test_expired_host_lease_taken_over(store: Store, job: Job) -> None:
    await store.acquire_host(job.id, "a.test", "worker-dead", lease_s=10, now=NOW)

    assert await store.held_hosts(job.id, now=NOW + 11) == {}
    assert await store.acquire_host(
        job.id, "a.test", "worker-b", lease_s=10, now=NOW + 11
    )
    assert await store.held_hosts(job.id, now=NOW + 11) == {"a.test": "worker-b"}


async def test_released_host_waits_for_free_at(store: Store, job: Job) -> None:
    await store.acquire_host(job.id, "a.test", "worker-a", lease_s=10, now=NOW)
    await store.acquire_host(job.id, "b.test", "worker-a", lease_s=10, now=NOW)
    await store.acquire_host(job.id, "c.test", "worker-c", lease_s=10, now=NOW)

    released = await store.release_hosts(job.id, "worker-a", {"a.test": NOW + 3})

    assert released == 2
    assert await store.held_hosts(job.id, now=NOW + 1) == {
        "a.test": None,
        "c.test": "worker-c",
    }
    assert not await store.acquire_host(
        job.id, "a.test", "worker-b", lease_s=10, now=NOW + 2
    )
    assert await store.acquire_host(
        job.id, "b.test", "worker-b", lease_s=10, now=NOW + 1
    )
    assert await store.acquire_host(
        job.id, "a.test", "worker-b", lease_s=10, now=NOW + 3
    )


async def test_host_lease_race_has_one_winner(
    store: Store, other_store: Store, job: Job
) -> None:
    results = await asyncio.gather(
        *(
            handle.acquire_host(job.id, "a.test", f"worker-{n}", lease_s=10, now=NOW)
            for n, handle in enumerate((store, other_store) * 4)
        )
    )

    assert results.count(True) == 1
    winner = f"worker-{results.index(True)}"
    assert await store.held_hosts(job.id, now=NOW) == {"a.test": winner}


async def test_host_leases_of_missing_and_deleted_jobs(store: Store, job: Job) -> None:
    assert not await store.acquire_host(
        "missing", "a.test", "worker-a", lease_s=10, now=NOW
    )
    assert await store.held_hosts("missing", now=NOW) == {}
    assert await store.release_hosts("missing", "worker-a", {}) == 0

    await store.acquire_host(job.id, "a.test", "worker-a", lease_s=10, now=NOW)
    await store.delete_job(job.id)

    assert await store.held_hosts(job.id, now=NOW) == {}


async def test_release_some_hosts_keeps_membership(store: Store, job: Job) -> None:
    await store.renew_requests(job.id, "worker-a", lease_s=10, now=NOW)
    await store.acquire_host(job.id, "a.test", "worker-a", lease_s=10, now=NOW)
    await store.acquire_host(job.id, "b.test", "worker-a", lease_s=10, now=NOW)

    released = await store.release_hosts(job.id, "worker-a", {}, hosts=["a.test"])

    assert released == 1
    assert await store.held_hosts(job.id, now=NOW) == {"b.test": "worker-a"}
    assert await store.live_workers(job.id, now=NOW) == {"worker-a"}

    assert await store.release_hosts(job.id, "worker-a", {}) == 1
    assert await store.live_workers(job.id, now=NOW) == set()


# -- members and shares --------------------------------------------------------


async def test_live_workers_expire(store: Store, job: Job) -> None:
    await store.renew_requests(job.id, "worker-a", lease_s=10, now=NOW)
    await store.renew_requests(job.id, "worker-b", lease_s=10, now=NOW + 5)

    assert await store.live_workers(job.id, now=NOW + 9) == {"worker-a", "worker-b"}
    assert await store.live_workers(job.id, now=NOW + 10) == {"worker-b"}
    assert await store.live_workers("missing", now=NOW) == set()


async def test_queued_hosts(store: Store, job: Job) -> None:
    await store.add_requests(
        job.id, [request("/1"), request("/2"), request("/1", host="b.test")]
    )
    assert await store.queued_hosts(job.id) == {"a.test", "b.test"}

    await store.pop_request(job.id, ["a.test"], "worker-a")

    assert await store.queued_hosts(job.id) == {"a.test"}
    assert await store.queued_hosts("missing") == set()


async def test_pop_only_hosts(store: Store, job: Job) -> None:
    added = [request("/1"), request("/1", host="b.test"), request("/1", host="c.test")]
    await store.add_requests(job.id, added)

    first = await store.pop_request(
        job.id, ["b.test"], "worker-a", only_hosts=["b.test", "c.test"]
    )
    none = await store.pop_request(job.id, (), "worker-a", only_hosts=["d.test"])
    nothing_allowed = await store.pop_request(job.id, (), "worker-a", only_hosts=[])

    assert first == added[2]
    assert none is None
    assert nothing_allowed is None

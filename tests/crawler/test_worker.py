"""The worker against a real SQLite store and a real loopback site.

Jobs are created in the store as the API would create them; a Worker claims
and crawls them. Lease expiry is driven by the worker's injected clock, not by
waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from crawler.frontier import CrawlRequest
from crawler.guard import parse_networks
from crawler.options import CrawlOptions
from crawler.settings import Settings
from crawler.store.base import Job, JobState, Store
from crawler.store.sqlite import SqliteStore
from crawler.urls import canonicalize_url, host_key
from crawler.worker import Worker
from tests.sites.hostile import ServedApp, serve_app
from tests.sites.tree import create_tree_app, tree_paths

SETTINGS = Settings(
    allow_networks=parse_networks("127.0.0.0/8", option="allow_networks"),
    lease_s=5.0,
    shutdown_grace_s=5.0,
    worker_jobs=2,
    parse_mode="inline",
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await SqliteStore.open(tmp_path / "crawler.db")
    yield opened
    await opened.close()


@pytest.fixture
def tree_site() -> Iterator[ServedApp]:
    with serve_app(create_tree_app(40), "127.0.0.2") as site:
        yield site


@pytest.fixture
def slow_tree_site() -> Iterator[ServedApp]:
    with serve_app(create_tree_app(40, delay_s=0.3), "127.0.0.2") as site:
        yield site


def job_options(site: ServedApp, **overrides: object) -> dict[str, object]:
    options = CrawlOptions(seeds=(site.url("/page/0"),), max_retries=0)
    return {**options.to_mapping(), **overrides}


async def wait_for_state(
    store: Store, job_id: str, states: set[JobState], timeout_s: float = 30.0
) -> Job:
    async with asyncio.timeout(timeout_s):
        while True:
            job = await store.get_job(job_id)
            assert job is not None
            if job.state in states:
                return job
            await asyncio.sleep(0.05)


async def stored_paths(store: Store, job_id: str) -> list[str]:
    paths = []
    async for record in store.iter_pages(job_id):
        paths.append(record["final_url"].split("/", 3)[3])
    return ["/" + path for path in paths]


async def test_worker_completes_job(store: Store, tree_site: ServedApp) -> None:
    job, _ = await store.create_job(job_options(tree_site))
    worker = Worker(store, SETTINGS, poll_interval_s=0.05)

    await worker.start()
    try:
        done = await wait_for_state(
            store, job.id, {JobState.COMPLETED, JobState.FAILED}
        )
    finally:
        await worker.stop()

    assert done.state is JobState.COMPLETED
    assert done.lease_owner is None
    assert sorted(await stored_paths(store, job.id)) == sorted(tree_paths(40))
    counters = await store.counters(job.id)
    assert counters.fetched == 40
    assert counters.queued == 0


async def test_worker_counts_max_pages_across_runs(
    store: Store, tree_site: ServedApp
) -> None:
    job, _ = await store.create_job(job_options(tree_site, max_pages=10))
    worker = Worker(store, SETTINGS, poll_interval_s=0.05)

    await worker.start()
    try:
        await wait_for_state(store, job.id, {JobState.COMPLETED})
    finally:
        await worker.stop()

    assert len(await stored_paths(store, job.id)) == 10


async def test_worker_applies_cancel(store: Store, slow_tree_site: ServedApp) -> None:
    job, _ = await store.create_job(job_options(slow_tree_site, concurrency=2))
    worker = Worker(store, SETTINGS, poll_interval_s=0.05)
    await worker.start()
    try:
        await wait_for_state(store, job.id, {JobState.RUNNING})
        await asyncio.sleep(0.5)

        cancelled = await store.transition(
            job.id, JobState.CANCELLED, allowed_from={JobState.RUNNING}
        )
        assert cancelled is not None
        await asyncio.sleep(2.5)
    finally:
        await worker.stop()

    job_after = await store.get_job(job.id)
    assert job_after is not None
    assert job_after.state is JobState.CANCELLED
    assert job_after.lease_owner is None
    assert len(await stored_paths(store, job.id)) < 40


async def test_worker_pause_then_resume_finishes(
    store: Store, slow_tree_site: ServedApp
) -> None:
    job, _ = await store.create_job(job_options(slow_tree_site, concurrency=4))
    worker = Worker(store, SETTINGS, poll_interval_s=0.05)
    await worker.start()
    try:
        await wait_for_state(store, job.id, {JobState.RUNNING})
        await asyncio.sleep(0.8)
        await store.transition(job.id, JobState.PAUSED, allowed_from={JobState.RUNNING})
        await asyncio.sleep(2.0)
        paused = await store.get_job(job.id)
        assert paused is not None
        assert paused.state is JobState.PAUSED
        assert paused.lease_owner is None

        await store.transition(job.id, JobState.QUEUED, allowed_from={JobState.PAUSED})
        done = await wait_for_state(store, job.id, {JobState.COMPLETED}, timeout_s=60)
    finally:
        await worker.stop()

    assert done.state is JobState.COMPLETED
    paths = await stored_paths(store, job.id)
    assert sorted(paths) == sorted(tree_paths(40))


async def test_worker_reclaims_expired_lease(
    store: Store, tree_site: ServedApp
) -> None:
    # A worker that died mid-crawl: it claimed the job and popped a request.
    job, _ = await store.create_job(job_options(tree_site))
    start = time.time()
    dead = await store.claim_job("dead-worker", lease_s=5.0, now=start)
    assert dead is not None
    seed = tree_site.url("/page/0")
    request = CrawlRequest(seed, canonicalize_url(seed), host_key(seed), 0)
    await store.add_requests(job.id, [request])
    assert await store.pop_request(job.id, (), "dead-worker") == request

    clock: Callable[[], float] = lambda: time.time() + 60  # noqa: E731
    worker = Worker(store, SETTINGS, clock=clock, poll_interval_s=0.05)
    await worker.start()
    try:
        done = await wait_for_state(store, job.id, {JobState.COMPLETED})
    finally:
        await worker.stop()

    assert done.state is JobState.COMPLETED
    paths = await stored_paths(store, job.id)
    assert sorted(paths) == sorted(tree_paths(40))


async def test_worker_stop_hands_job_back(
    store: Store, slow_tree_site: ServedApp
) -> None:
    job, _ = await store.create_job(job_options(slow_tree_site, concurrency=4))
    first = Worker(store, SETTINGS, poll_interval_s=0.05)
    await first.start()
    await wait_for_state(store, job.id, {JobState.RUNNING})
    await asyncio.sleep(0.8)

    await first.stop(grace_s=5.0)
    handed_back = await store.get_job(job.id)
    counters = await store.counters(job.id)

    assert handed_back is not None
    assert handed_back.state is JobState.RUNNING
    assert handed_back.lease_owner is None
    assert counters.in_progress == 0

    second = Worker(store, SETTINGS, poll_interval_s=0.05)
    await second.start()
    try:
        done = await wait_for_state(store, job.id, {JobState.COMPLETED}, timeout_s=60)
    finally:
        await second.stop()

    assert done.state is JobState.COMPLETED
    paths = await stored_paths(store, job.id)
    assert len(paths) == len(set(paths))
    assert sorted(paths) == sorted(tree_paths(40))

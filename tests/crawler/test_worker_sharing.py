"""Three workers share one job: hosts spread out, limits hold in aggregate.

Three :class:`~crawler.worker.Worker` instances, each with its own store
handle (as three replicas would have) and its own source address, crawl a
job over a four-host mesh site on both stores. The site's request log shows
which worker fetched each page (by client address) and when, so the tests
check that the fetches spread over more than one worker, that no host ever
had two requests at once or two starts closer than its delay, and that
``max_pages`` caps the job, not each worker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from crawler.guard import parse_networks
from crawler.options import CrawlOptions
from crawler.settings import Settings
from crawler.store.base import FINAL_STATES, JobState, Store
from crawler.worker import Worker
from tests.crawler.store.conftest import STORE_OPENERS, StoreOpener
from tests.crawler.test_worker import wait_for_state
from tests.sites.mesh import MeshSite, max_overlap, min_start_gap, serve_mesh

HOSTS = ("127.0.2.1", "127.0.2.2", "127.0.2.3", "127.0.2.4")
SOURCES = ("127.0.1.1", "127.0.1.2", "127.0.1.3")
PAGES_PER_HOST = 12
DELAY_S = 0.25
TIMING_SLACK_S = 0.06
"""How much closer than the delay two starts may look in the site's log: the
log takes the time when the request reaches the handler, after transport
work that varies by a few milliseconds, and by tens on a busy machine."""


@pytest.fixture(params=sorted(STORE_OPENERS))
def store_opener(request: pytest.FixtureRequest) -> StoreOpener:
    opener: StoreOpener = STORE_OPENERS[request.param]
    return opener


@pytest.fixture
def mesh() -> Iterator[MeshSite]:
    with serve_mesh(HOSTS, pages_per_host=PAGES_PER_HOST, delay_s=0.05) as site:
        yield site


@pytest.fixture
async def stores(
    store_opener: StoreOpener, tmp_path: Path
) -> AsyncIterator[list[Store]]:
    """Four handles on one store: the test's and one per worker."""
    handles = [await store_opener(tmp_path) for _ in range(4)]
    yield handles
    drop = getattr(handles[0], "drop_database", None)
    if drop is not None:
        await drop()
    for handle in handles:
        await handle.close()


def worker_settings(source: str, worker_jobs: int = 2) -> Settings:
    return Settings(
        allow_networks=parse_networks("127.0.0.0/8", option="allow_networks"),
        lease_s=3.0,
        shutdown_grace_s=2.0,
        worker_jobs=worker_jobs,
        parse_mode="inline",
        source_address=source,
    )


@asynccontextmanager
async def running_workers(
    stores: list[Store], worker_jobs: int = 2
) -> AsyncIterator[None]:
    """Run one worker on each of ``stores[1:]`` for the block."""
    async with AsyncExitStack() as stack:
        for handle, source in zip(stores[1:], SOURCES, strict=False):
            settings = worker_settings(source, worker_jobs)
            worker = Worker(handle, settings, poll_interval_s=0.2)
            await worker.start()
            stack.push_async_callback(worker.stop, 2.0)
        yield


async def run_to_completion(
    stores: list[Store], options: CrawlOptions, timeout_s: float = 60.0
) -> str:
    """Run three workers on the job until it completes; return the job id."""
    store = stores[0]
    job, _ = await store.create_job(options.to_mapping())
    async with running_workers(stores):
        stored = await wait_for_state(store, job.id, set(FINAL_STATES), timeout_s)
    assert stored.state is JobState.COMPLETED, stored
    return job.id


def mesh_options(mesh: MeshSite, **overrides: Any) -> CrawlOptions:
    """Options of a crawl of every host of ``mesh`` with ``overrides``."""
    return CrawlOptions(
        seeds=(mesh.seed(),),
        scope="allowlist",
        allowed_domains=HOSTS,
        concurrency=8,
        max_retries=0,
        **overrides,
    )


async def recorded_urls(store: Store, job_id: str) -> list[str]:
    return [record["url"] async for record in store.iter_pages(job_id)]


async def test_job_shared_by_three_workers(stores: list[Store], mesh: MeshSite) -> None:
    options = mesh_options(mesh, per_host_concurrency=1, per_host_delay_s=DELAY_S)

    job_id = await run_to_completion(stores, options)

    urls = await recorded_urls(stores[0], job_id)
    assert len(urls) == len(set(urls)), "a page was recorded twice"
    assert set(urls) == mesh.page_urls()

    requests = mesh.page_requests()
    assert sorted(entry.path for entry in requests) == sorted(
        f"/page/{n}" for n in range(PAGES_PER_HOST) for _ in HOSTS
    ), "a page was fetched twice"
    workers_used = {entry.client for entry in requests}
    assert workers_used <= set(SOURCES)
    assert len(workers_used) > 1, "one worker did every fetch"

    for host in HOSTS:
        on_host = [entry for entry in requests if entry.host == host]
        assert max_overlap(on_host) == 1, f"{host} had two requests at once"
        gap = min_start_gap(on_host)
        assert gap is not None and gap >= DELAY_S - TIMING_SLACK_S, (host, gap)


async def test_max_pages_caps_the_job_not_each_worker(
    stores: list[Store], mesh: MeshSite
) -> None:
    options = mesh_options(mesh, max_pages=10)

    job_id = await run_to_completion(stores, options)

    urls = await recorded_urls(stores[0], job_id)
    assert len(urls) == 10
    assert len(set(urls)) == 10
    assert len(mesh.page_requests()) == 10


async def wait_for_pages(store: Store, job_id: str, count: int) -> None:
    # The workers write through other store handles, so polling is the only signal.
    async with asyncio.timeout(30):
        while (await store.counters(job_id)).pages < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def wait_until_left(store: Store, job_id: str) -> None:
    """Wait until no worker has a URL, a host or membership in the job."""
    async with asyncio.timeout(15):
        while True:
            now = time.time()
            counters = await store.counters(job_id)
            held = await store.held_hosts(job_id, now=now)
            members = await store.live_workers(job_id, now=now)
            if not counters.in_progress and not held and not members:
                return
            await asyncio.sleep(0.1)


async def test_cancel_stops_every_worker(stores: list[Store]) -> None:
    store = stores[0]
    with serve_mesh(HOSTS, pages_per_host=30, delay_s=0.2) as slow_mesh:
        job, _ = await store.create_job(mesh_options(slow_mesh).to_mapping())
        async with running_workers(stores):
            await wait_for_pages(store, job.id, 6)
            await store.transition(
                job.id, JobState.CANCELLED, allowed_from=[JobState.RUNNING]
            )
            cancelled_at = time.monotonic()
            await wait_until_left(store, job.id)
            await asyncio.sleep(1.0)

        late = [entry for entry in slow_mesh.log if entry.started > cancelled_at + 1.5]
        assert late == [], "a worker kept fetching after the cancel"
        stored = await store.get_job(job.id)
        assert stored is not None and stored.state is JobState.CANCELLED
        assert stored.lease_owner is None


async def test_pause_and_resume_finish_once(stores: list[Store]) -> None:
    store = stores[0]
    with serve_mesh(HOSTS, pages_per_host=24, delay_s=0.1) as slow_mesh:
        options = mesh_options(slow_mesh, per_host_delay_s=0.15)
        job, _ = await store.create_job(options.to_mapping())
        async with running_workers(stores):
            await wait_for_pages(store, job.id, 6)
            await store.transition(
                job.id, JobState.PAUSED, allowed_from=[JobState.RUNNING]
            )
            await wait_until_left(store, job.id)
            paused_pages = (await store.counters(job.id)).pages

            await store.transition(
                job.id, JobState.QUEUED, allowed_from=[JobState.PAUSED]
            )
            await wait_for_state(store, job.id, {JobState.COMPLETED}, 60)

        urls = await recorded_urls(store, job.id)
        assert paused_pages < len(slow_mesh.page_urls())
        assert len(urls) == len(set(urls)), "a page was recorded twice"
        assert set(urls) == slow_mesh.page_urls()


async def test_queued_job_preempts_helpers(stores: list[Store]) -> None:
    store = stores[0]
    with serve_mesh(HOSTS, pages_per_host=40, delay_s=0.2) as slow_mesh:
        big, _ = await store.create_job(mesh_options(slow_mesh).to_mapping())
        async with running_workers(stores, worker_jobs=1):
            async with asyncio.timeout(15):
                # Every worker's only slot is spent on the big job.
                while len(await store.live_workers(big.id, now=time.time())) < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)

            small, _ = await store.create_job(
                mesh_options(slow_mesh, max_pages=3).to_mapping()
            )
            await wait_for_state(store, small.id, {JobState.COMPLETED}, 20)
            still = await store.get_job(big.id)
            await store.transition(
                big.id, JobState.CANCELLED, allowed_from=[JobState.RUNNING]
            )

    assert still is not None
    assert still.state is JobState.RUNNING, "the big job ended before the small one"
    assert len(await recorded_urls(store, small.id)) == 3


async def test_long_delay_host_stays_with_its_worker(stores: list[Store]) -> None:
    """A helper waiting out a host's delay is busy, not idle, so a host does
    not go back and forth between workers."""
    store = stores[0]
    hosts = HOSTS[:2]
    with serve_mesh(hosts, pages_per_host=4, delay_s=0.0) as slow_mesh:
        options = CrawlOptions(
            seeds=(slow_mesh.seed(),),
            scope="allowlist",
            allowed_domains=hosts,
            per_host_concurrency=1,
            per_host_delay_s=6.0,
            max_retries=0,
        )
        job, _ = await store.create_job(options.to_mapping())
        async with running_workers(stores[:3]):
            await wait_for_state(store, job.id, {JobState.COMPLETED}, 60)

    # The worker that seeded the job may take both hosts before the helper
    # joins and hand one over once: one extra robots.txt at most.
    robots = [entry for entry in slow_mesh.log if entry.path == "/robots.txt"]
    assert len(robots) <= len(hosts) + 1
    for host in hosts:
        on_host = sorted(
            (e for e in slow_mesh.page_requests() if e.host == host),
            key=lambda entry: entry.started,
        )
        changes = sum(1 for a, b in itertools.pairwise(on_host) if a.client != b.client)
        assert changes <= 1, f"{host} changed workers {changes} times"

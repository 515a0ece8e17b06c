"""Several processes sharing one SQLite store: claims, pops and saves race.

Four processes open the same file. They start with ``spawn``, as a fresh
``crawler worker`` process would, and wait at a barrier. Then each one claims
jobs until none is left, pops frontier requests until none is left, and saves
the same page keys, all at once. The module runs the race once, and each test
checks one outcome.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crawler.frontier import CrawlRequest
from crawler.records import PageRecord, utc_timestamp
from crawler.store.base import JobState
from crawler.store.sqlite import SqliteStore

PROCESSES = 4
JOBS = 20
KEYS = 200
HOSTS = 5
LEASE_S = 600.0


@dataclass(frozen=True, slots=True)
class RaceResult:
    """What one process did, or the error that stopped it."""

    worker_id: str
    claimed: list[str]
    popped: list[str]
    saved: int
    error: str | None = None


def page_url(number: int) -> str:
    return f"http://host-{number % HOSTS}.test/{number}"


def page_record(number: int, worker_id: str) -> PageRecord:
    url = page_url(number)
    return PageRecord(
        url=url,
        final_url=url,
        key=url,
        depth=0,
        referrer=None,
        fetched_at=utc_timestamp(),
        status=200,
        title=worker_id,
    )


async def race_in_process(
    path: str, worker_id: str, pages_job: str, start: Any
) -> RaceResult:
    store = await SqliteStore.open(path)
    try:
        start.wait()

        async def claim_all() -> list[str]:
            claimed = []
            while (
                job := await store.claim_job(
                    worker_id, lease_s=LEASE_S, now=time.time()
                )
            ) is not None:
                claimed.append(job.id)
            return claimed

        async def pop_all() -> list[str]:
            popped = []
            while (
                request := await store.pop_request(pages_job, (), worker_id)
            ) is not None:
                popped.append(request.key)
                await store.complete_request(pages_job, request.key)
            return popped

        async def save_all() -> int:
            saved = 0
            for number in range(KEYS):
                saved += await store.save_page(
                    pages_job, page_record(number, worker_id)
                )
            return saved

        claimed, popped, saved = await asyncio.gather(
            claim_all(), pop_all(), save_all()
        )
    finally:
        await store.close()
    return RaceResult(worker_id, claimed, popped, saved)


def race(path: str, worker_id: str, pages_job: str, start: Any, results: Any) -> None:
    """Run one racer and put its RaceResult, or its error, on ``results``."""
    try:
        result = asyncio.run(race_in_process(path, worker_id, pages_job, start))
    except Exception as exc:
        result = RaceResult(worker_id, [], [], 0, error=repr(exc))
    results.put(result)


async def prepare_store(path: Path) -> tuple[list[str], str]:
    """Create the jobs to claim and a paused job whose frontier the racers pop."""
    store = await SqliteStore.open(path)
    try:
        job_ids = []
        for number in range(JOBS):
            job, _ = await store.create_job({"number": number})
            job_ids.append(job.id)
        pages_job, _ = await store.create_job({"pages": True})
        await store.transition(
            pages_job.id, JobState.PAUSED, allowed_from=[JobState.QUEUED]
        )
        requests = [
            CrawlRequest(
                url=page_url(n), key=page_url(n), host=f"host-{n % HOSTS}.test", depth=0
            )
            for n in range(KEYS)
        ]
        await store.add_requests(pages_job.id, requests)
    finally:
        await store.close()
    return job_ids, pages_job.id


async def stored_page_keys(path: Path, job_id: str) -> list[str]:
    store = await SqliteStore.open(path)
    try:
        return [item["url"] async for item in store.iter_pages(job_id)]
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class Race:
    job_ids: list[str]
    results: list[RaceResult]
    page_keys: list[str]


@pytest.fixture(scope="module")
def finished_race(tmp_path_factory: pytest.TempPathFactory) -> Race:
    """Run the race once for the module's tests."""
    path = tmp_path_factory.mktemp("race") / "crawler.db"
    job_ids, pages_job = asyncio.run(prepare_store(path))

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(
            target=race, args=(str(path), f"worker-{n}", pages_job, start, results)
        )
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    page_keys = asyncio.run(stored_page_keys(path, pages_job))
    return Race(job_ids, outcomes, page_keys)


def test_no_process_failed(finished_race: Race) -> None:
    errors = [r.error for r in finished_race.results if r.error is not None]

    assert errors == []


def test_every_job_claimed_once(finished_race: Race) -> None:
    claims = Counter(job for r in finished_race.results for job in r.claimed)

    assert sorted(claims) == sorted(finished_race.job_ids)
    assert set(claims.values()) == {1}


def test_every_request_popped_once(finished_race: Race) -> None:
    pops = Counter(key for r in finished_race.results for key in r.popped)

    assert sorted(pops) == sorted(page_url(n) for n in range(KEYS))
    assert set(pops.values()) == {1}


def test_every_key_stored_once(finished_race: Race) -> None:
    saved = sum(r.saved for r in finished_race.results)

    assert saved == KEYS
    assert len(finished_race.page_keys) == KEYS
    assert set(finished_race.page_keys) == {page_url(n) for n in range(KEYS)}

"""Kill -9 the process running a job: another process finishes it, losing nothing.

Two ``crawler worker`` processes share one SQLite file. The first is killed
with SIGKILL in the middle of a crawl; once its lease expires the second
claims the job, returns the dead worker's in-flight URLs to the queue and
finishes. The page set must equal an undisturbed crawl's, with no page
recorded twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.options import CrawlOptions
from crawler.store.base import JobState, Store
from crawler.store.sqlite import SqliteStore
from tests.sites.hostile import ServedApp, serve_app
from tests.sites.tree import create_tree_app, tree_paths

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = 60


@pytest.fixture
def slow_tree_site() -> Iterator[ServedApp]:
    with serve_app(create_tree_app(PAGES, delay_s=0.2), "127.0.0.2") as site:
        yield site


MONGODB_URL = os.environ.get("MONGODB_URL", "").strip().rstrip("/")
# The MongoDB run needs a server: it runs wherever MONGODB_URL is set, and in
# CI, where a missing MONGODB_URL fails it instead of skipping it.
BACKENDS = ["sqlite"] + (["mongo"] if MONGODB_URL or os.environ.get("CI") else [])


async def open_backend(backend: str, tmp_path: Path) -> tuple[Store, str]:
    """Open the store under test; return it and the CRAWLER_STORE_URL naming it."""
    if backend == "sqlite":
        database = tmp_path / "crawler.db"
        return await SqliteStore.open(database), f"sqlite:///{database}"

    if not MONGODB_URL:
        pytest.fail(
            "MONGODB_URL is required when CI is set (scripts/ferretdb.sh start)"
        )
    from crawler.store.mongo import MongoStore

    name = f"killtest_{tmp_path.name[-20:]}".replace("-", "_")
    url = f"{MONGODB_URL}/{name}"
    return await MongoStore.open(url), url


def start_worker(store_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env.update(
        CRAWLER_STORE_URL=store_url,
        CRAWLER_ALLOW_NETWORKS="127.0.0.0/8",
        CRAWLER_LEASE_S="2",
        CRAWLER_LOG_LEVEL="INFO",
    )
    with log.open("ab") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", "crawler", "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=stream,
        )


async def page_keys(store: Store, job_id: str) -> list[str]:
    return [record["final_url"] async for record in store.iter_pages(job_id)]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_killed_worker_job_finished_by_another(
    backend: str, slow_tree_site: ServedApp, tmp_path: Path
) -> None:
    log = tmp_path / "workers.log"
    store, store_url = await open_backend(backend, tmp_path)
    options = CrawlOptions(seeds=(slow_tree_site.url("/page/0"),), concurrency=3)
    killed_job, _ = await store.create_job(options.to_mapping())

    first = start_worker(store_url, log)
    try:
        async with asyncio.timeout(30):
            # Another process writes the pages, so polling is the only signal.
            while len(await page_keys(store, killed_job.id)) < 10:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    pages_at_kill = len(await page_keys(store, killed_job.id))
    undisturbed_job, _ = await store.create_job(options.to_mapping())

    second = start_worker(store_url, log)
    try:
        async with asyncio.timeout(90):
            while True:
                killed = await store.get_job(killed_job.id)
                undisturbed = await store.get_job(undisturbed_job.id)
                assert killed is not None and undisturbed is not None
                if killed.state is JobState.COMPLETED and (
                    undisturbed.state is JobState.COMPLETED
                ):
                    break
                await asyncio.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    killed_pages = await page_keys(store, killed_job.id)
    undisturbed_pages = await page_keys(store, undisturbed_job.id)
    if backend == "mongo":
        await store.drop_database()  # type: ignore[attr-defined]
    await store.close()

    assert first.returncode == -signal.SIGKILL
    assert pages_at_kill < PAGES
    assert len(killed_pages) == len(set(killed_pages))
    assert sorted(killed_pages) == sorted(undisturbed_pages)
    expected = {slow_tree_site.url(path) for path in tree_paths(PAGES)}
    assert set(killed_pages) == expected
    assert second.returncode == 0, log.read_text()

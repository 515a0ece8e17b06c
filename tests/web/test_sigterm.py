"""SIGTERM in the middle of a crawl: fetches in flight finish, nothing is lost.

``crawler serve`` crawls a slow tree site with four fetches in flight. On
SIGTERM the worker starts no new fetch, lets the ones in flight finish and
records them, returns the URLs it had taken but not fetched to the queue and
releases the job. A second ``crawler serve`` on the same store then finishes
the job. The tree site logs every request on arrival and when its handler
returns, so the test can compare the requests the site responded to with the records
in the store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from crawler.store.base import JobState
from crawler.store.sqlite import SqliteStore
from tests.sites.hostile import ServedApp, serve_app
from tests.sites.tree import create_tree_app, tree_paths
from tests.web.processes import (
    SERVICE_HOST,
    SITE_HOST,
    create_job,
    free_port,
    get_job,
    log_tail,
    read_page_urls,
    running,
    serve_command,
    service_env,
    terminate,
    wait_for_exit,
    wait_for_final_state,
    wait_until_ready,
)

PAGES = 40
DELAY_S = 0.5
CONCURRENCY = 4
# Far longer than one fetch (DELAY_S), so every fetch in flight at SIGTERM
# must finish and be recorded rather than be cancelled.
GRACE_S = 10.0
PAGES_BEFORE_SIGNAL = 8
SIGNAL_TIMEOUT_S = 20.0


@dataclass
class SiteLog:
    """The requests a site received, with arrival times, and those it responded to."""

    received: list[tuple[str, float]] = field(default_factory=list)
    """(path, time.monotonic() on arrival) in arrival order."""
    responded: list[str] = field(default_factory=list)

    def received_paths(self) -> list[str]:
        return [path for path, _arrived in self.received]

    def in_flight(self) -> list[tuple[str, float]]:
        """Return (path, arrival time) of each request without a response yet."""
        responded = Counter(self.responded)
        pending = []
        for path, arrived in self.received:
            if responded[path] > 0:
                responded[path] -= 1
            else:
                pending.append((path, arrived))
        return pending


def add_site_log(app: web.Application) -> SiteLog:
    """Log the app's requests on arrival and when their handler returns.

    A path goes into ``responded`` before the response is sent, so a client
    that has read a response always finds its path there.
    """
    log = SiteLog()

    @web.middleware
    async def log_requests(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        log.received.append((request.path, time.monotonic()))
        try:
            response = await handler(request)
        except web.HTTPException:
            # The 404 for /robots.txt is a response too.
            log.responded.append(request.path)
            raise
        log.responded.append(request.path)
        return response

    app.middlewares.append(log_requests)
    return log


@pytest.fixture
def tree_site() -> Iterator[tuple[ServedApp, SiteLog]]:
    app = create_tree_app(PAGES, delay_s=DELAY_S)
    log = add_site_log(app)
    with serve_app(app, SITE_HOST) as site:
        yield site, log


def page_paths(paths: list[str]) -> list[str]:
    """Keep the tree's pages, leaving out robots.txt."""
    return [path for path in paths if path.startswith("/page/")]


def young_fetches(site_log: SiteLog) -> list[str]:
    """Return the pages in flight that arrived less than DELAY_S / 2 ago.

    Each of them is still in flight for at least another DELAY_S / 2, so a
    signal sent right now reaches the crawler while they are being fetched.
    """
    now = time.monotonic()
    return sorted(
        path
        for path, arrived in site_log.in_flight()
        if path.startswith("/page/") and now - arrived < DELAY_S / 2
    )


async def wait_for_fetches_in_flight(
    base_url: str, job_id: str, site_log: SiteLog, log: Path
) -> list[str]:
    """Wait until PAGES_BEFORE_SIGNAL pages are stored and fetches are in flight.

    Returns the paths from young_fetches().
    """
    deadline = time.monotonic() + SIGNAL_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while True:
            job = await get_job(session, base_url, job_id)
            stored = job["counters"]["pages"]
            if stored >= PAGES_BEFORE_SIGNAL:
                in_flight = young_fetches(site_log)
                if in_flight:
                    return in_flight
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {SIGNAL_TIMEOUT_S:g} s the job had {stored} pages and "
                    f"the site had {site_log.in_flight()} in flight; "
                    f"log:\n{log_tail(log)}"
                )
            await asyncio.sleep(0.02)


async def test_sigterm_finishes_fetches(
    tree_site: tuple[ServedApp, SiteLog], tmp_path: Path
) -> None:
    site, site_log = tree_site
    database = tmp_path / "crawler.db"
    port = free_port()
    base_url = f"http://{SERVICE_HOST}:{port}"
    log = tmp_path / "service.log"
    env = service_env(database, CRAWLER_SHUTDOWN_GRACE_S=str(GRACE_S))
    options = {"seeds": [site.url("/page/0")], "concurrency": CONCURRENCY}

    with running(serve_command(port), env, log) as first:
        await wait_until_ready(base_url, first, log)
        async with aiohttp.ClientSession() as session:
            job_id = await create_job(session, base_url, options)
        in_flight_at_signal = await wait_for_fetches_in_flight(
            base_url, job_id, site_log, log
        )
        os.kill(first.pid, signal.SIGTERM)
        first_status = wait_for_exit(first, GRACE_S)
        # The site logs a path as responded before it sends the response, so a
        # request still in flight now never got its response to the crawler.
        in_flight_at_exit = [path for path, _arrived in site_log.in_flight()]
        responded_before_exit = set(page_paths(site_log.responded))

    store = await SqliteStore.open(database)
    try:
        counters = await store.counters(job_id)
        stopped_job = await store.get_job(job_id)
        recorded = [record["final_url"] async for record in store.iter_pages(job_id)]
    finally:
        await store.close()

    assert first_status is not None, (
        f"crawler serve still ran {GRACE_S:g} s after SIGTERM; log:\n{log_tail(log)}"
    )
    assert first_status == 0, f"exit status {first_status}; log:\n{log_tail(log)}"
    assert in_flight_at_exit == [], "the crawler exited before these got a response"
    assert counters.in_progress == 0
    assert counters.queued > 0, "the crawl finished before SIGTERM"
    assert stopped_job is not None
    assert stopped_job.state is JobState.RUNNING
    assert stopped_job.lease_owner is None, "the lease was not released"
    recorded_paths = {url.removeprefix(site.base_url) for url in recorded}
    unrecorded = sorted(set(in_flight_at_signal) - recorded_paths)
    assert unrecorded == [], f"in flight at SIGTERM but not recorded: {unrecorded}"
    missing = sorted(responded_before_exit - recorded_paths)
    assert missing == [], f"the site responded but no record exists: {missing}"

    with running(serve_command(port), env, log) as second:
        await wait_until_ready(base_url, second, log)
        async with aiohttp.ClientSession() as session:
            job = await wait_for_final_state(session, base_url, job_id, log)
            urls = await read_page_urls(session, base_url, job_id)
        second_status = terminate(second, timeout_s=GRACE_S)

    assert job["state"] == "completed", log_tail(log)
    assert len(urls) == len(set(urls)), "a page is recorded twice"
    assert set(urls) == {site.url(path) for path in tree_paths(PAGES)}
    fetches = Counter(page_paths(site_log.received_paths()))
    fetched_twice = sorted(path for path, count in fetches.items() if count > 1)
    assert fetched_twice == [], f"fetched more than once: {fetched_twice}"
    assert second_status == 0, f"exit status {second_status}; log:\n{log_tail(log)}"

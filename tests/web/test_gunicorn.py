"""The production server: gunicorn with two aiohttp worker processes on one store.

Both workers serve the API and run crawl jobs from one SQLite file. The
X-Served-By header (the serving PID) identifies the process behind each
response, so the test can check that both processes respond and that they
return the same job and the same export once the job is complete.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.sites.hostile import ServedApp, serve_app
from tests.sites.tree import create_tree_app, tree_paths
from tests.web.processes import (
    SERVICE_HOST,
    SITE_HOST,
    child_pids,
    create_job,
    free_port,
    gunicorn_command,
    log_tail,
    running,
    service_env,
    terminate,
    wait_for_final_state,
    wait_until_ready,
)

PAGES = 40
WORKERS = 2
SERVED_BY = "X-Served-By"
# Max requests sent, in batches on new connections, until every worker responded.
MAX_REQUESTS = 400
BATCH = 8


@pytest.fixture
def tree_site() -> Iterator[ServedApp]:
    with serve_app(create_tree_app(PAGES, delay_s=0.02), SITE_HOST) as site:
        yield site


async def wait_for_workers(master: int, log: Path) -> set[int]:
    """Return gunicorn's worker PIDs once all WORKERS have started."""
    for _ in range(200):
        workers = child_pids(master)
        if len(workers) == WORKERS:
            return workers
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"gunicorn started {len(child_pids(master))} workers, expected {WORKERS}; "
        f"log:\n{log_tail(log)}"
    )


async def bodies_by_process(url: str, workers: set[int]) -> dict[int, set[bytes]]:
    """GET ``url`` on new connections until every worker responded.

    Returns every distinct body each process returned, keyed by the
    X-Served-By PID. Stops after MAX_REQUESTS, so a worker that never responds
    shows up as a missing key.
    """
    bodies: dict[int, set[bytes]] = {}
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def fetch() -> tuple[int, bytes]:
            async with session.get(url) as response:
                assert response.status == 200, f"GET {url}: {response.status}"
                return int(response.headers[SERVED_BY]), await response.read()

        sent = 0
        while sent < MAX_REQUESTS and not workers <= bodies.keys():
            responses = await asyncio.gather(*(fetch() for _ in range(BATCH)))
            sent += BATCH
            for pid, body in responses:
                bodies.setdefault(pid, set()).add(body)
    return bodies


async def test_two_workers_serve_same_job(tree_site: ServedApp, tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://{SERVICE_HOST}:{port}"
    log = tmp_path / "gunicorn.log"
    env = service_env(
        tmp_path / "crawler.db",
        GUNICORN_BIND=f"{SERVICE_HOST}:{port}",
        GUNICORN_WORKERS=str(WORKERS),
    )

    with running(gunicorn_command(tmp_path / "gunicorn.ctl"), env, log) as master:
        await wait_until_ready(base_url, master, log)
        workers = await wait_for_workers(master.pid, log)

        async with aiohttp.ClientSession() as session:
            job_id = await create_job(
                session, base_url, {"seeds": [tree_site.url("/page/0")]}
            )
            job = await wait_for_final_state(session, base_url, job_id, log)

        job_url = f"{base_url}/api/v1/jobs/{job_id}"
        status_bodies = await bodies_by_process(job_url, workers)
        export_bodies = await bodies_by_process(f"{job_url}/pages.jsonl", workers)
        exit_status = terminate(master, timeout_s=30)

    assert job["state"] == "completed", log_tail(log)
    assert set(status_bodies) == workers, f"status served by {set(status_bodies)}"
    assert set(export_bodies) == workers, f"export served by {set(export_bodies)}"
    distinct_statuses: set[bytes] = set().union(*status_bodies.values())
    assert len(distinct_statuses) == 1, f"job objects differ: {distinct_statuses}"
    distinct_exports: set[bytes] = set().union(*export_bodies.values())
    assert len(distinct_exports) == 1, "pages.jsonl differs between responses"

    export = distinct_exports.pop().decode()
    urls = [json.loads(line)["final_url"] for line in export.splitlines()]
    assert len(urls) == len(set(urls)), "a page is recorded twice"
    assert set(urls) == {tree_site.url(path) for path in tree_paths(PAGES)}
    assert exit_status == 0, f"gunicorn exited with {exit_status}: {log_tail(log)}"

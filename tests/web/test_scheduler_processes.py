"""The scheduler in real service processes, on the real clock.

Three ``crawler serve`` processes share one store, each with its scheduler on
(the default). The test moves a schedule's next run time to a second ago, as
if its due time had just come, and checks that the three processes together
start exactly one job for it, three times over. ``crawler worker`` fires
schedules too, unless CRAWLER_RUN_SCHEDULER is false.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from crawler.scheduler import INTERVAL_S
from crawler.service import open_store
from crawler.settings import Settings
from crawler.store.base import Store
from crawler.store.mongo import MongoStore
from crawler.store.schedules import Overlap, ScheduleSpec
from tests.web.helpers import SEED
from tests.web.processes import (
    SERVICE_HOST,
    free_port,
    log_tail,
    running,
    serve_command,
    service_env,
    terminate,
    wait_until_ready,
)

SERVERS = 3
ROUNDS = 3
SETTLE_S = 2.5 * INTERVAL_S
"""Long enough for every process to tick at least twice."""
MONGODB_URL = os.environ.get("MONGODB_URL", "").strip()
STORES = ["sqlite"]
if MONGODB_URL or os.environ.get("CI"):
    STORES.append("mongo")
# Yearly, so that no real due time comes while a test runs: the tests set the
# next run time themselves.
SPEC = ScheduleSpec(
    name="yearly",
    cron="@yearly",
    timezone="UTC",
    job={"seeds": [SEED], "max_pages": 1},
    overlap=Overlap.ALLOW,
)


@pytest.fixture(params=STORES)
async def store_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crawler.db'}"
        return
    if not MONGODB_URL:
        pytest.fail("MONGODB_URL is required when CI is set")
    database = f"crawler_test_serve_{os.getpid()}_{random.randrange(1 << 32):08x}"
    yield urlunsplit(urlsplit(MONGODB_URL)._replace(path=f"/{database}"))
    handle = await MongoStore.open(MONGODB_URL, database=database)
    try:
        await handle.drop_database()
    finally:
        await handle.close()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(Settings(store_url=store_url))
    try:
        yield opened
    finally:
        await opened.close()


def env_for(store_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = service_env(tmp_path / "unused.db", CRAWLER_RUN_WORKER="false", **extra)
    env["CRAWLER_STORE_URL"] = store_url
    return env


async def make_due(store: Store, schedule_id: str) -> int:
    """Set the next run time to a second ago and return it."""
    schedule = await store.get_schedule(schedule_id)
    assert schedule is not None
    due = int(time.time()) - 1
    await store.update_schedule(schedule_id, schedule.spec, next_run_at=due)
    return due


async def wait_until_advanced(
    store: Store, schedule_id: str, due: int, logs: str
) -> None:
    deadline = time.monotonic() + 10 * INTERVAL_S
    while True:
        schedule = await store.get_schedule(schedule_id)
        assert schedule is not None
        if schedule.next_run_at != due:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no process fired the due time {due}:\n{logs}")
        await asyncio.sleep(0.1)


async def schedule_jobs(store: Store, schedule_id: str) -> list[Any]:
    page = await store.list_jobs(limit=100)
    return [job for job in page.items if job.schedule_id == schedule_id]


def tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log_tail(log)}" for log in logs)


@pytest.mark.timeout(180)
async def test_three_servers_fire_once(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=None)
    logs = [tmp_path / f"serve-{n}.log" for n in range(SERVERS)]

    with ExitStack() as stack:
        processes = []
        for log in logs:
            port = free_port()
            process = stack.enter_context(
                running(serve_command(port), env_for(store_url, tmp_path), log)
            )
            processes.append(process)
            await wait_until_ready(f"http://{SERVICE_HOST}:{port}", process, log)

        due_times = []
        for _ in range(ROUNDS):
            due = await make_due(store, schedule.id)
            due_times.append(due)
            await wait_until_advanced(store, schedule.id, due, tails(logs))
            await asyncio.sleep(SETTLE_S)
            # Keep the next round's due time distinct from this one.
            await asyncio.sleep(1.1)

        jobs = await schedule_jobs(store, schedule.id)
        runs = await store.list_schedule_runs(schedule.id, limit=100)
        for process in processes:
            assert terminate(process, timeout_s=20) == 0, tails(logs)

    assert sorted(run.due_at for run in runs) == due_times, tails(logs)
    assert sorted(job.id for job in jobs) == sorted(str(run.job_id) for run in runs)
    assert len(jobs) == ROUNDS


def worker_command() -> list[str]:
    return [sys.executable, "-m", "crawler", "worker"]


@pytest.mark.parametrize("run_scheduler", ["true", "false"])
async def test_worker_command_scheduler(
    store: Store, store_url: str, tmp_path: Path, run_scheduler: str
) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=None)
    log = tmp_path / "worker.log"
    env = env_for(store_url, tmp_path, CRAWLER_RUN_SCHEDULER=run_scheduler)

    with running(worker_command(), env, log) as process:
        due = await make_due(store, schedule.id)
        if run_scheduler == "true":
            await wait_until_advanced(store, schedule.id, due, log_tail(log))
        else:
            await asyncio.sleep(SETTLE_S)
        jobs = await schedule_jobs(store, schedule.id)
        status = terminate(process, timeout_s=20)

    assert status == 0, log_tail(log)
    assert len(jobs) == (1 if run_scheduler == "true" else 0), log_tail(log)


async def test_app_scheduler_setting(aiohttp_client: Any, tmp_path: Path) -> None:
    from web import create_app

    async def jobs_after_due(run_scheduler: bool) -> int:
        path = tmp_path / f"app-{run_scheduler}.db"
        settings = Settings(
            store_url=f"sqlite:///{path}", run_worker=False, run_scheduler=run_scheduler
        )
        client = await aiohttp_client(create_app(settings))
        response = await client.post(
            "/api/v1/schedules",
            json={"name": "x", "cron": "@yearly", "job": {"seeds": [SEED]}},
        )
        created = await response.json()
        store = await open_store(settings)
        try:
            due = await make_due(store, created["id"])
            deadline = time.monotonic() + SETTLE_S
            while time.monotonic() < deadline:
                if await schedule_jobs(store, created["id"]):
                    break
                await asyncio.sleep(0.1)
            count = len(await schedule_jobs(store, created["id"]))
            assert due > 0
        finally:
            await store.close()
            await client.close()
        return count

    assert await jobs_after_due(True) == 1
    assert await jobs_after_due(False) == 0

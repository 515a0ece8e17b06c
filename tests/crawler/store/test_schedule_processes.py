"""Three scheduler processes on one store fire each due time exactly once.

Three OS processes (schedule_ticker.py) run the scheduler's tick over the same
simulated day, one instant at a time. The test writes the next instant's
index to a control file and waits until every live process has ticked it,
so all three race to fire every due time. The day includes a daylight-saving
change, and the processes are killed with SIGKILL twice:

* one process at the instant of ``KILL_ONE``, possibly in the middle of a
  firing, restarted ``RESTART_ONE`` instants later. The other two finish
  what it left.
* all three after ``KILL_ALL``, a moment when nothing is due, restarted
  ``RESTART_ALL`` instants later. The due times in between are missed, and
  each schedule's ``missed`` policy decides what happens to them.

Between instants the test completes a job (so ``overlap: skip`` starts the
next one) and disables a schedule. At the end the store must hold exactly the
runs and jobs written out below for each schedule.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from crawler.schedule import Timetable
from crawler.scheduler import scheduled_job_key
from crawler.service import open_store
from crawler.settings import Settings
from crawler.store.base import JobState, Store
from crawler.store.mongo import MongoStore
from crawler.store.schedules import Missed, Overlap, RunOutcome, ScheduleSpec
from tests.web.processes import log_tail, start_process

HOUR = 3600
STEP_S = 300
OFFSET_S = 7
"""Each instant is 7 s past a five-minute mark, so due times are 7 s old."""
PROCESSES = ("a", "b", "c")
KILL_ONE = 96
RESTART_ONE = 108
COMPLETE_FIRST_JOB = 100
DISABLE = 150
KILL_ALL = 193
RESTART_ALL = 216
ACK_TIMEOUT_S = 60.0

MONGODB_URL = os.environ.get("MONGODB_URL", "").strip()
STORES = ["sqlite"]
if MONGODB_URL or os.environ.get("CI"):
    STORES.append("mongo")

Expected = list[tuple[int, RunOutcome, int]]
"""(due time, outcome, missed count) of each run, oldest first."""


@dataclass(frozen=True, slots=True)
class Day:
    """A simulated day in America/New_York and what each schedule must do."""

    name: str
    start: int
    instants: int
    expected: Callable[[int], dict[str, Expected]]


def epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def instant(day: Day, index: int) -> int:
    return day.start + OFFSET_S + STEP_S * index


def started(times: list[int], missed: dict[int, int] | None = None) -> Expected:
    missed = missed or {}
    return [(t, RunOutcome.STARTED, missed.get(t, 0)) for t in times]


def spring_expected(start: int) -> dict[str, Expected]:
    """2025-03-08T17:00Z to 2025-03-09T16:55Z; clocks jump at 07:00Z."""
    hours = [start + HOUR * n for n in range(1, 24)]  # 18Z .. 16Z
    halves = [start + HOUR * n + HOUR // 2 for n in range(24)]  # 17:30Z .. 16:30Z
    # Down from 09:05:07Z to 11:00:07Z: 10:00Z and 11:00Z pass unseen.
    ten, eleven = start + 17 * HOUR, start + 18 * HOUR
    return {
        "daily-0230": started([epoch("2025-03-09T07:00")]),
        "hourly-run-once": started([t for t in hours if t != eleven], missed={ten: 2}),
        # 11:00Z is 7 s old at the restart, within the grace, so it starts.
        "hourly-skip-missed": sorted(
            [
                *started([t for t in hours if t != ten]),
                (ten, RunOutcome.MISSED, 1),
            ]
        ),
        "hourly-disabled": started(hours[:12]),
        "kolkata-hourly": started(
            [t for t in halves if t != start + 17 * HOUR + HOUR // 2],
            missed={start + 16 * HOUR + HOUR // 2: 2},
        ),
        "six-hourly-overlap-skip": [
            (start + 6 * HOUR, RunOutcome.STARTED, 0),
            (start + 12 * HOUR, RunOutcome.STARTED, 0),
            (start + 17 * HOUR, RunOutcome.SKIPPED_OVERLAP, 1),
            (start + 23 * HOUR, RunOutcome.SKIPPED_OVERLAP, 0),
        ],
    }


def fall_expected(start: int) -> dict[str, Expected]:
    """2025-11-01T16:00Z to 2025-11-02T16:55Z; clocks go back at 06:00Z."""
    hours = [start + HOUR * n for n in range(1, 25)]  # 17Z .. 16Z
    halves = [start + HOUR * n + HOUR // 2 for n in range(25)]  # 16:30Z .. 16:30Z
    # Down from 08:05:07Z to 10:00:07Z: 09:00Z and 10:00Z pass unseen.
    nine, ten = start + 17 * HOUR, start + 18 * HOUR
    return {
        "daily-0130": started([epoch("2025-11-02T05:30")]),
        "hourly-run-once": started([t for t in hours if t != ten], missed={nine: 2}),
        "hourly-skip-missed": sorted(
            [
                *started([t for t in hours if t != nine]),
                (nine, RunOutcome.MISSED, 1),
            ]
        ),
        "hourly-disabled": started(hours[:12]),
        "kolkata-hourly": started(
            [t for t in halves if t != start + 17 * HOUR + HOUR // 2],
            missed={start + 16 * HOUR + HOUR // 2: 2},
        ),
        "six-hourly-overlap-skip": [
            (start + 6 * HOUR, RunOutcome.STARTED, 0),
            (start + 12 * HOUR, RunOutcome.STARTED, 0),
            (start + 19 * HOUR, RunOutcome.SKIPPED_OVERLAP, 0),
        ],
    }


DAYS = [
    Day("spring-forward", epoch("2025-03-08T17:00"), 288, spring_expected),
    Day("fall-back", epoch("2025-11-01T16:00"), 300, fall_expected),
]

TEMPLATE = ScheduleSpec(
    name="",
    cron="0 * * * *",
    timezone="America/New_York",
    job={"seeds": ["http://127.0.0.1:9/"], "max_pages": 1},
    overlap=Overlap.ALLOW,
    missed=Missed.RUN_ONCE,
)
SPECS = [
    replace(TEMPLATE, name="daily-0230", cron="30 2 * * *"),
    replace(TEMPLATE, name="daily-0130", cron="30 1 * * *"),
    replace(TEMPLATE, name="hourly-run-once"),
    replace(TEMPLATE, name="hourly-skip-missed", missed=Missed.SKIP),
    replace(TEMPLATE, name="hourly-disabled"),
    replace(TEMPLATE, name="kolkata-hourly", timezone="Asia/Kolkata"),
    replace(
        TEMPLATE,
        name="six-hourly-overlap-skip",
        cron="0 */6 * * *",
        overlap=Overlap.SKIP,
    ),
]


def mongo_url(database: str) -> str:
    parts = urlsplit(MONGODB_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store; the test drops a MongoDB database at its end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crawler.db'}"
    if not MONGODB_URL:
        pytest.fail(
            "MONGODB_URL is required when CI is set: run scripts/ferretdb.sh start"
        )
    database = f"crawler_test_processes_{os.getpid()}_{random.randrange(1 << 32):08x}"
    return mongo_url(database)


class Tickers:
    """The ticker processes of one test, by name, with their logs."""

    def __init__(self, store_url: str, folder: Path) -> None:
        self.store_url = store_url
        self.folder = folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.crawler.store.schedule_ticker",
            self.store_url,
            str(self.folder),
            name,
        ]
        log = self.folder / f"ticker-{name}.log"
        self.processes[name] = start_process(command, dict(os.environ), log)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log_tail(log)}"
            for log in sorted(self.folder.glob("ticker-*.log"))
        )

    async def wait_for_acks(self, index: int) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while True:
            acked = [self.acked(name) >= index for name in self.processes]
            if all(acked):
                return
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(
                        f"ticker {name} exited with status {process.returncode} "
                        f"before instant {index}:\n{self.logs()}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"tickers did not finish instant {index} within "
                    f"{ACK_TIMEOUT_S:g} s:\n{self.logs()}"
                )
            await asyncio.sleep(0.002)

    def acked(self, name: str) -> int:
        path = self.folder / f"ack-{name}.json"
        return int(json.loads(path.read_text())) if path.exists() else -1

    def stop_all(self) -> None:
        write_control(self.folder, {"stop": True})
        for name, process in list(self.processes.items()):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
                raise AssertionError(
                    f"ticker {name} did not stop:\n{self.logs()}"
                ) from None
            assert process.returncode == 0, f"ticker {name} failed:\n{self.logs()}"
        self.processes.clear()

    def kill_all(self) -> None:
        for name in list(self.processes):
            self.kill(name)


def write_control(folder: Path, value: dict[str, object]) -> None:
    temporary = folder / "control.json.tmp"
    temporary.write_text(json.dumps(value))
    os.replace(temporary, folder / "control.json")


@contextmanager
def tickers_for(store_url: str, folder: Path) -> Iterator[Tickers]:
    tickers = Tickers(store_url, folder)
    try:
        yield tickers
    finally:
        for process in tickers.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


async def create_schedules(store: Store, day: Day) -> dict[str, str]:
    names = set(day.expected(day.start))
    ids = {}
    for spec in SPECS:
        if spec.name in names:
            first = Timetable.parse(spec.cron, spec.timezone).next_after(day.start)
            schedule = await store.create_schedule(spec, next_run_at=first)
            ids[spec.name] = schedule.id
    return ids


async def between_instants(store: Store, ids: dict[str, str], index: int) -> None:
    """Change the store as a client would, while no process ticks."""
    if index == COMPLETE_FIRST_JOB:
        page = await store.list_jobs(limit=1000)
        for job in page.items:
            if job.schedule_id == ids["six-hourly-overlap-skip"]:
                await store.transition(
                    job.id, JobState.COMPLETED, allowed_from=[JobState.QUEUED]
                )
    if index == DISABLE:
        schedule = await store.get_schedule(ids["hourly-disabled"])
        assert schedule is not None
        await store.update_schedule(
            schedule.id, replace(schedule.spec, enabled=False), next_run_at=None
        )


async def simulate_day(
    store: Store, tickers: Tickers, day: Day, ids: dict[str, str]
) -> None:
    folder = tickers.folder
    write_control(folder, {"index": 0})
    (folder / "instants.json").write_text(
        json.dumps([instant(day, index) for index in range(day.instants)])
    )
    for name in PROCESSES:
        tickers.start(name)

    for index in range(day.instants):
        if index == RESTART_ONE:
            tickers.start("b")
        if index == RESTART_ALL:
            for name in PROCESSES:
                tickers.start(name)
        if KILL_ALL < index < RESTART_ALL:
            continue  # nothing runs: these instants pass unseen

        write_control(folder, {"index": index})
        if index == KILL_ONE:
            # Kill it a moment into the instant, possibly mid-firing.
            await asyncio.sleep(random.uniform(0, 0.005))
            tickers.kill("b")
        await tickers.wait_for_acks(index)
        if index == KILL_ALL:
            tickers.kill_all()
        await between_instants(store, ids, index)

    tickers.stop_all()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("day", DAYS, ids=[day.name for day in DAYS])
async def test_each_due_time_once(store_url: str, tmp_path: Path, day: Day) -> None:
    store = await open_store(Settings(store_url=store_url))
    try:
        ids = await create_schedules(store, day)
        with tickers_for(store_url, tmp_path) as tickers:
            await simulate_day(store, tickers, day, ids)

        page = await store.list_jobs(limit=1000)
        jobs_by_schedule = Counter(job.schedule_id for job in page.items)
        keys = Counter(job.idempotency_key for job in page.items)
        for name, expected in day.expected(day.start).items():
            schedule_id = ids[name]
            runs = sorted(
                await store.list_schedule_runs(schedule_id, limit=1000),
                key=lambda run: run.due_at,
            )
            got = [(run.due_at, run.outcome, run.missed_count) for run in runs]
            assert got == expected, f"{name}: {got} != {expected}\n{tickers.logs()}"

            started = [run for run in runs if run.outcome is RunOutcome.STARTED]
            assert jobs_by_schedule[schedule_id] == len(started), name
            for run in started:
                key = scheduled_job_key(schedule_id, run.due_at)
                assert keys[key] == 1, f"{name}: {keys[key]} jobs for {run.due_at}"
                assert run.job_id is not None, f"{name}: run {run.due_at} has no job"
                job = await store.get_job(run.job_id)
                assert job is not None
                assert job.idempotency_key == key
        assert sum(jobs_by_schedule.values()) == len(page.items)
    finally:
        if isinstance(store, MongoStore):
            await store.drop_database()
        await store.close()

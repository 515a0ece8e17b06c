"""Tests for per-host politeness, timed by a fake clock and a fake sleep."""

from __future__ import annotations

import asyncio
import logging

import pytest

from crawler.politeness import MAX_CRAWL_DELAY_S, HostPoliteness

HOST = "example.org:80"
OTHER = "other.example:80"


class FakeClock:
    """A manual clock that only a test or the fake sleep advances."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_politeness(
    clock: FakeClock, concurrency: int = 2, delay_s: float = 0.0
) -> HostPoliteness:
    return HostPoliteness(concurrency, delay_s, clock=clock, sleep=clock.sleep)


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(20):
        await asyncio.sleep(0)


async def start_times(
    politeness: HostPoliteness, clock: FakeClock, n: int
) -> list[float]:
    starts: list[float] = []
    for _ in range(n):
        async with politeness.slot(HOST):
            starts.append(clock())
    return starts


# Concurrency


async def test_slot_limits_concurrency() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, concurrency=2)
    release = asyncio.Event()
    active = 0
    max_active = 0

    async def request() -> None:
        nonlocal active, max_active
        async with politeness.slot(HOST):
            active += 1
            max_active = max(max_active, active)
            await release.wait()
            active -= 1

    tasks = [asyncio.create_task(request()) for _ in range(5)]
    await settle()

    assert active == 2
    assert politeness.is_busy(HOST)

    release.set()
    await asyncio.gather(*tasks)

    assert max_active == 2
    assert not politeness.is_busy(HOST)


async def test_waiting_request_counts_as_busy() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, concurrency=2)
    release = asyncio.Event()

    async def request() -> None:
        async with politeness.slot(HOST):
            await release.wait()

    task = asyncio.create_task(request())
    await settle()

    # One request runs and no delay applies, so a second could start now.
    assert not politeness.is_busy(HOST)

    waiting = [asyncio.create_task(request()) for _ in range(2)]
    await settle()

    assert politeness.is_busy(HOST)

    release.set()
    await asyncio.gather(task, *waiting)


async def test_hosts_are_independent() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, concurrency=1, delay_s=10.0)
    release = asyncio.Event()

    async def hold() -> None:
        async with politeness.slot(HOST):
            await release.wait()

    holder = asyncio.create_task(hold())
    await settle()

    async with politeness.slot(OTHER):
        started_other = clock()

    assert started_other == 1000.0
    assert clock.sleeps == []
    assert politeness.busy_hosts() == {HOST, OTHER}

    release.set()
    await holder


# Delay between starts


async def test_delay_between_starts() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, delay_s=2.0)

    starts = await start_times(politeness, clock, 3)

    assert starts == [1000.0, 1002.0, 1004.0]
    assert clock.sleeps == [2.0, 2.0]


async def test_delay_counts_from_previous_start() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, delay_s=2.0)

    async with politeness.slot(HOST):
        clock.now += 1.5
    async with politeness.slot(HOST):
        started = clock()

    assert clock.sleeps == [0.5]
    assert started == 1002.0


async def test_raised_delay_counts_from_last_start() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, delay_s=0.5)

    async with politeness.slot(HOST):
        clock.now += 0.2
    politeness.raise_delay(HOST, 2.0, reason="robots.txt Crawl-delay")
    async with politeness.slot(HOST):
        started = clock()

    assert started == 1002.0
    assert clock.sleeps == [pytest.approx(1.8)]


async def test_raised_delay_before_any_start() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, delay_s=0.5)

    politeness.raise_delay(HOST, 2.0, reason="robots.txt Crawl-delay")
    async with politeness.slot(HOST):
        started = clock()

    assert started == 1000.0


async def test_no_delay_no_sleep() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, delay_s=0.0)

    starts = await start_times(politeness, clock, 3)

    assert starts == [1000.0, 1000.0, 1000.0]
    assert clock.sleeps == []


async def test_busy_during_delay() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, delay_s=3.0)

    async with politeness.slot(HOST):
        pass

    assert politeness.is_busy(HOST)
    assert politeness.busy_hosts() == {HOST}
    assert politeness.seconds_until_ready() == 3.0

    clock.now += 3.0

    assert not politeness.is_busy(HOST)
    assert politeness.busy_hosts() == set()
    assert politeness.seconds_until_ready() is None


# Raised delays and pauses


def test_raise_delay() -> None:
    politeness = make_politeness(FakeClock(), delay_s=1.0)

    politeness.raise_delay(HOST, 4.0, reason="robots.txt Crawl-delay")

    assert politeness.delay_of(HOST) == 4.0
    assert politeness.delay_of(OTHER) == 1.0


def test_raise_delay_never_lowers() -> None:
    politeness = make_politeness(FakeClock(), delay_s=5.0)

    politeness.raise_delay(HOST, 2.0, reason="robots.txt Crawl-delay")

    assert politeness.delay_of(HOST) == 5.0


def test_raise_delay_capped(caplog: pytest.LogCaptureFixture) -> None:
    politeness = make_politeness(FakeClock())

    with caplog.at_level(logging.WARNING, logger="crawler.politeness"):
        politeness.raise_delay(HOST, 3600.0, reason="robots.txt Crawl-delay")

    assert politeness.delay_of(HOST) == MAX_CRAWL_DELAY_S
    assert "robots.txt Crawl-delay" in caplog.text
    assert "capping" in caplog.text


async def test_raised_delay_spaces_starts() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, delay_s=0.0)
    politeness.raise_delay(HOST, 3.0, reason="Retry-After on HTTP 429")

    starts = await start_times(politeness, clock, 2)

    assert starts == [1000.0, 1003.0]


async def test_pause_delays_next_start() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock)

    politeness.pause(HOST, 5.0)

    assert politeness.is_busy(HOST)
    assert politeness.seconds_until_ready() == 5.0

    starts = await start_times(politeness, clock, 1)

    assert starts == [1005.0]


def test_pause_never_shortens() -> None:
    politeness = make_politeness(FakeClock())

    politeness.pause(HOST, 5.0)
    politeness.pause(HOST, 1.0)

    assert politeness.seconds_until_ready() == 5.0


def test_seconds_until_ready_picks_soonest_host() -> None:
    politeness = make_politeness(FakeClock())

    politeness.pause(HOST, 5.0)
    politeness.pause(OTHER, 2.0)

    assert politeness.seconds_until_ready() == 2.0


async def test_seconds_until_ready_ignores_full_host() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, concurrency=1, delay_s=4.0)
    release = asyncio.Event()

    async def hold() -> None:
        async with politeness.slot(HOST):
            await release.wait()

    holder = asyncio.create_task(hold())
    await settle()

    # The host waits for its running request, not for the clock.
    assert politeness.seconds_until_ready() is None

    release.set()
    await holder

    assert politeness.seconds_until_ready() == 4.0


def test_unknown_host_not_busy() -> None:
    politeness = make_politeness(FakeClock())

    assert not politeness.is_busy(HOST)
    assert politeness.busy_hosts() == set()
    assert politeness.seconds_until_ready() is None


# Cancellation


async def test_cancel_while_waiting_for_slot() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, concurrency=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with politeness.slot(HOST):
            await release.wait()

    holder = asyncio.create_task(hold())
    waiter = asyncio.create_task(hold())
    await settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)

    assert waiter.cancelled()
    assert politeness.is_busy(HOST)

    release.set()
    await holder

    assert not politeness.is_busy(HOST)
    async with politeness.slot(HOST):
        assert politeness.is_busy(HOST)


async def test_cancel_during_delay_releases_slot() -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        clock.sleeps.append(seconds)
        await never.wait()

    politeness = HostPoliteness(1, 2.0, clock=clock, sleep=blocking_sleep)
    async with politeness.slot(HOST):
        pass

    async def request() -> None:
        async with politeness.slot(HOST):
            pass

    delayed = asyncio.create_task(request())
    await settle()

    assert clock.sleeps == [2.0]

    delayed.cancel()
    await asyncio.gather(delayed, return_exceptions=True)
    clock.now += 2.0

    assert delayed.cancelled()
    assert not politeness.is_busy(HOST)
    async with politeness.slot(HOST):
        started = clock()
    assert started == 1002.0


async def test_cancelled_waiter_skipped() -> None:
    clock = FakeClock()
    politeness = make_politeness(clock, concurrency=1)
    release = asyncio.Event()
    entered: list[str] = []

    async def hold(name: str) -> None:
        async with politeness.slot(HOST):
            entered.append(name)
            await release.wait()

    holder = asyncio.create_task(hold("holder"))
    await settle()
    cancelled = asyncio.create_task(hold("cancelled"))
    patient = asyncio.create_task(hold("patient"))
    await settle()

    cancelled.cancel()
    release.set()
    await asyncio.gather(holder, patient)
    await asyncio.gather(cancelled, return_exceptions=True)

    assert entered == ["holder", "patient"]

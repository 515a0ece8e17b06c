"""Per-host politeness: how many requests a host gets at once, and how often.

Each host (``host:port``) has a concurrency limit and a minimum delay between
the *starts* of consecutive requests. robots.txt ``Crawl-delay`` and a
``Retry-After`` answer raise that host's delay for the rest of the crawl; a
``Retry-After`` also pauses the host until the time it names.

The clock and sleep are injected so tests can check the timing rules without
waiting, and so the engine can ask which hosts are busy before it picks the next
URL (no worker sits waiting on one slow host while others have work).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# A robots.txt may ask for any delay; past this one the crawl would stall for
# hours on a single host, so the delay is capped and the cap is logged.
MAX_CRAWL_DELAY_S = 60.0


@dataclass(slots=True)
class _HostState:
    delay_s: float
    active: int = 0
    next_start: float = 0.0
    waiters: int = 0
    last_start: float | None = None


class HostPoliteness:
    """Grants request slots per host under a concurrency limit and a start delay."""

    def __init__(
        self,
        per_host_concurrency: int,
        delay_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limit = per_host_concurrency
        self._default_delay_s = delay_s
        self._clock = clock
        self._sleep = sleep
        self._hosts: dict[str, _HostState] = {}
        self._changed = asyncio.Condition()

    def _state(self, host: str) -> _HostState:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _HostState(delay_s=self._default_delay_s)
        return state

    def delay_of(self, host: str) -> float:
        """Return the current minimum delay between request starts for ``host``."""
        return self._state(host).delay_s

    def raise_delay(self, host: str, delay_s: float, *, reason: str) -> None:
        """Make ``host``'s delay at least ``delay_s`` (capped at MAX_CRAWL_DELAY_S).

        The new delay counts from the last request start, so the request
        after the robots.txt that set a Crawl-delay waits for that delay too.
        """
        if delay_s > MAX_CRAWL_DELAY_S:
            logger.warning(
                "%s asks for a %.1f s delay; capping it at %.0f s",
                reason,
                delay_s,
                MAX_CRAWL_DELAY_S,
                extra={"host": host},
            )
            delay_s = MAX_CRAWL_DELAY_S
        state = self._state(host)
        if delay_s > state.delay_s:
            logger.info(
                "Host delay raised from %.2f s to %.2f s (%s)",
                state.delay_s,
                delay_s,
                reason,
                extra={"host": host},
            )
            state.delay_s = delay_s
            if state.last_start is not None:
                state.next_start = max(state.next_start, state.last_start + delay_s)

    def pause(self, host: str, seconds: float) -> None:
        """Start no request to ``host`` for the next ``seconds``."""
        state = self._state(host)
        state.next_start = max(state.next_start, self._clock() + seconds)

    def is_busy(self, host: str) -> bool:
        """Return True if a request to ``host`` could not start right now."""
        state = self._hosts.get(host)
        if state is None:
            return False
        return (
            state.active + state.waiters >= self._limit
            or state.next_start > self._clock()
        )

    def busy_hosts(self) -> set[str]:
        """Return the hosts that cannot take a request right now."""
        return {host for host in self._hosts if self.is_busy(host)}

    def seconds_until_ready(self) -> float | None:
        """Return seconds until a paused host may start again, or None."""
        now = self._clock()
        waits = [
            state.next_start - now
            for state in self._hosts.values()
            if state.next_start > now and state.active < self._limit
        ]
        return min(waits) if waits else None

    def waits(self) -> dict[str, float]:
        """Return the seconds each host must still wait before its next start
        (only hosts that must wait), so a hand-over can keep the delay."""
        now = self._clock()
        return {
            host: state.next_start - now
            for host, state in self._hosts.items()
            if state.next_start > now
        }

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Hold one of ``host``'s request slots, waiting for the limit and the delay."""
        state = self._state(host)
        state.waiters += 1
        try:
            async with self._changed:
                await self._changed.wait_for(lambda: state.active < self._limit)
                state.active += 1
        finally:
            state.waiters -= 1

        try:
            while (wait := state.next_start - self._clock()) > 0:
                await self._sleep(wait)
            state.last_start = self._clock()
            state.next_start = state.last_start + state.delay_s
            yield
        finally:
            state.active -= 1
            async with self._changed:
                self._changed.notify_all()

"""The narrow interface between the engine and wherever a crawl's state lives.

The engine needs only a few operations: add discovered URLs (de-duplicated by
canonical key), claim a key that a redirect reached, take the next URL whose
host is free, mark a URL finished, and save a record. :class:`CrawlStore` names
them; :class:`MemoryStore` implements them in memory for one-shot CLI crawls,
and the service backs the same interface with a database.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from crawler.records import PageRecord


@dataclass(frozen=True, slots=True)
class CrawlRequest:
    """A URL waiting to be fetched, with how the crawler reached it."""

    url: str
    key: str
    host: str
    depth: int
    referrer: str | None = None


class CrawlStore(Protocol):
    """What the engine needs from a crawl's frontier and result storage."""

    async def add(self, requests: Sequence[CrawlRequest]) -> int:
        """Queue the requests whose key was never seen; return how many were new."""
        ...

    async def claim_key(self, key: str) -> bool:
        """Mark ``key`` as seen without queueing it; return False if it was seen before.

        A redirect target is claimed this way, so a page reached both by a
        redirect and by a link is fetched and recorded once.
        """
        ...

    async def pop(self, busy_hosts: Collection[str]) -> CrawlRequest | None:
        """Take the next request whose host is not in ``busy_hosts``, or None."""
        ...

    async def done(self, request: CrawlRequest) -> None:
        """Mark a popped request as finished (its record, if any, is saved)."""
        ...

    async def pending(self) -> int:
        """Return how many requests are queued and not yet popped."""
        ...

    async def save(self, record: PageRecord) -> None:
        """Store ``record``; a second record with the same key replaces nothing."""
        ...


class MemoryStore:
    """An in-memory CrawlStore: per-host FIFO queues served round-robin.

    ``on_record`` receives every new record (the CLI writes it to the output
    file at once, so an interrupted crawl keeps every page it recorded).
    Memory grows with the number of distinct URLs seen (their keys are kept to
    de-duplicate) but not with page bodies.
    """

    def __init__(self, on_record: Callable[[PageRecord], None] | None = None) -> None:
        self._seen: set[str] = set()
        self._queues: OrderedDict[str, deque[CrawlRequest]] = OrderedDict()
        self._size = 0
        self._recorded: set[str] = set()
        self._on_record = on_record
        self.records_saved = 0

    async def add(self, requests: Sequence[CrawlRequest]) -> int:
        added = 0
        for request in requests:
            if request.key in self._seen:
                continue
            self._seen.add(request.key)
            self._queues.setdefault(request.host, deque()).append(request)
            added += 1
        self._size += added
        return added

    async def claim_key(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    async def pop(self, busy_hosts: Collection[str]) -> CrawlRequest | None:
        for host in list(self._queues):
            if host in busy_hosts:
                continue
            queue = self._queues[host]
            request = queue.popleft()
            # Round-robin: the host goes to the back, or away once drained.
            del self._queues[host]
            if queue:
                self._queues[host] = queue
            self._size -= 1
            return request
        return None

    async def done(self, request: CrawlRequest) -> None:
        return None

    async def pending(self) -> int:
        return self._size

    async def save(self, record: PageRecord) -> None:
        if record.key in self._recorded:
            return
        self._recorded.add(record.key)
        self.records_saved += 1
        if self._on_record is not None:
            self._on_record(record)

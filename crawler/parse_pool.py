"""Runs page extraction off the event loop.

Parsing a large page takes milliseconds to tens of milliseconds of CPU, and the
event loop must keep serving sockets meanwhile. ``docs/concurrency.md`` records
the measurements behind the modes:

* ``thread``: a ThreadPoolExecutor. The lxml hot path holds the GIL for a few
  milliseconds at a time, so the loop's p99 lag stays in the tens of
  milliseconds, and no page body or result is pickled.
* ``process``: a ProcessPoolExecutor. The loop lags least, but every body goes
  to the worker process and every result (hundreds of links on a large page)
  comes back pickled.
* ``auto`` (the default): threads for crawls without selectors, processes for
  crawls with them, because building a BeautifulSoup tree in a thread stalls
  the loop for hundreds of milliseconds (the garbage collector walks the tree
  holding the GIL).
* ``inline``: on the loop itself; only for measurements and tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Literal

from crawler.options import Selector
from crawler.parse import ParsedPage, extract_page

logger = logging.getLogger(__name__)

ParseMode = Literal["auto", "thread", "process", "inline"]
PARSE_MODES: tuple[str, ...] = ("auto", "thread", "process", "inline")


class ParsePool:
    """Runs :func:`crawler.parse.extract_page` in the executor its mode picks.

    Executors start on first use, so a crawl that never needs the process pool
    never starts a process.
    """

    def __init__(self, mode: ParseMode = "auto", workers: int = 1) -> None:
        self.mode = mode
        self._workers = workers
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None

    def _executor_for(self, selectors: Sequence[Selector]) -> Executor | None:
        mode = self.mode
        if mode == "auto":
            mode = "process" if selectors else "thread"
        if mode == "thread":
            if self._threads is None:
                self._threads = ThreadPoolExecutor(
                    self._workers, thread_name_prefix="parse"
                )
            return self._threads
        if mode == "process":
            if self._processes is None:
                self._processes = ProcessPoolExecutor(self._workers)
            return self._processes
        return None

    async def extract(
        self,
        url: str,
        body: bytes,
        content_type: str | None,
        selectors: Sequence[Selector] = (),
    ) -> ParsedPage:
        """Extract a page's metadata, links and fields without blocking the loop."""
        executor = self._executor_for(selectors)
        if executor is None:
            return extract_page(url, body, content_type, tuple(selectors))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            executor, extract_page, url, body, content_type, tuple(selectors)
        )

    def close(self) -> None:
        """Shut the executors down; pending parses are cancelled."""
        for executor in (self._threads, self._processes):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self._threads = None
        self._processes = None

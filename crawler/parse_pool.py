"""Runs page extraction off the event loop.

Parsing a large page takes milliseconds to tens of milliseconds of CPU, and the
event loop must keep serving sockets meanwhile. ``docs/concurrency.md`` records
the measurements behind the default mode.

* ``thread``: a ThreadPoolExecutor. The loop stays responsive, but parsing and
  the loop share one core because of the GIL.
* ``process``: a ProcessPoolExecutor; bodies are pickled to worker processes,
  which parse on the other cores.
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

ParseMode = Literal["thread", "process", "inline"]
PARSE_MODES: tuple[str, ...] = ("thread", "process", "inline")


class ParsePool:
    """Runs :func:`crawler.parse.extract_page` in the configured executor."""

    def __init__(self, mode: ParseMode = "thread", workers: int = 1) -> None:
        self.mode = mode
        self._executor: Executor | None
        if mode == "thread":
            self._executor = ThreadPoolExecutor(workers, thread_name_prefix="parse")
        elif mode == "process":
            self._executor = ProcessPoolExecutor(workers)
        else:
            self._executor = None

    async def extract(
        self,
        url: str,
        body: bytes,
        content_type: str | None,
        selectors: Sequence[Selector] = (),
    ) -> ParsedPage:
        """Extract a page's metadata, links and fields without blocking the loop."""
        if self._executor is None:
            return extract_page(url, body, content_type, tuple(selectors))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, extract_page, url, body, content_type, tuple(selectors)
        )

    def close(self) -> None:
        """Shut the executor down; pending parses are cancelled."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

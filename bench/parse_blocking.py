"""Measure what HTML parsing costs and how much it stalls the asyncio event loop.

The crawler fetches pages on one event loop and must keep serving sockets while
it parses. This script measures, on four large pages of the Python 3.11 HTML
documentation (Debian package python3.11-doc) and a synthetic 30 KB page:

1. Per-page time: decoding alone, the lxml hot path (``extract_page`` without
   selectors), BeautifulSoup with the "lxml" parser plus ``find_all("a")``,
   and ``extract_page`` with two CSS selectors.
2. GIL effects: lxml tree building in one and two threads, and how late the
   main thread wakes up while another thread builds BeautifulSoup trees, with
   the garbage collector enabled and disabled.
3. Event-loop stall: a ticker task sleeps 1 ms in a loop and records how late
   each wake-up is, while the pages are parsed inline on the loop, in a thread
   pool, or in a process pool. It reports the max and p99 lateness and the
   parsing throughput in pages per second.

Usage::

    python bench/parse_blocking.py [--pages 200] [--selector-pages 40]

It reads files only and opens no socket. The results are printed as Markdown
tables for docs/concurrency.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bs4 import BeautifulSoup
from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.encoding import decode_html
from crawler.options import Selector
from crawler.parse import extract_page

DOCS = Path("/usr/share/doc/python3.11/html")
LARGE_PAGES = (
    "library/functions.html",
    "reference/datamodel.html",
    "library/stdtypes.html",
    "library/os.html",
)
CONTENT_TYPE = "text/html; charset=utf-8"
SELECTORS = (
    Selector("heading", "h1"),
    Selector("references", "a.reference", "href", all=True),
)
TICK_SECONDS = 0.001
# Parses in flight at once in the pool modes, as an engine with a bounded
# queue in front of its pool would have.
IN_FLIGHT = 4


@dataclass(frozen=True)
class Page:
    name: str
    url: str
    body: bytes


@dataclass(frozen=True)
class StallResult:
    mode: str
    pages: int
    seconds: float
    max_lag_ms: float
    p99_lag_ms: float
    ticks: int


def synthetic_page() -> Page:
    """Build a 30 KB article page with 50 links, the same on every run."""
    words = "crawler parser socket queue worker thread buffer latency".split()
    paragraphs = []
    for i in range(120):
        sentence = " ".join(words[(i + j) % len(words)] for j in range(30))
        paragraphs.append(f"<p>{sentence}.</p>")
    links = [
        f'<li><a class="reference" href="/section{i % 7}/page{i:04d}.html">'
        f"Page {i}</a></li>"
        for i in range(50)
    ]
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>Synthetic article</title>"
        '<meta name="description" content="A page for measurements">'
        "<style>body { font-family: serif }</style></head><body>"
        "<h1>Synthetic article</h1>"
        + "".join(paragraphs)
        + "<ul>"
        + "".join(links)
        + "</ul><script>var tracking = 1;</script></body></html>"
    )
    return Page(
        "synthetic 30 KB, 50 links", "https://example.com/a.html", html.encode()
    )


def load_pages(names: Sequence[str]) -> list[Page]:
    return [
        Page(name, f"https://docs.example.com/{name}", (DOCS / name).read_bytes())
        for name in names
    ]


def best_ms(function: Callable[[], object], repeat: int) -> float:
    """Return the fastest of ``repeat`` wall times of ``function``, in ms.

    The minimum, as ``python -m timeit`` reports it, because other processes on
    the machine can only add time to a run.
    """
    function()  # warm-up: imports, caches
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return min(timings) * 1000


def bs4_links(body: bytes) -> int:
    text, _ = decode_html(body, CONTENT_TYPE)
    return len(BeautifulSoup(text, "lxml").find_all("a"))


def lxml_tree_only(body: bytes) -> None:
    parser = etree.HTMLParser(encoding="utf-8", recover=True, no_network=True)
    etree.fromstring(body, parser)


def per_page_table(pages: Sequence[Page], repeat: int) -> str:
    rows = [
        "| page | size | decode | lxml tree only | (a) extract_page | "
        "(b) bs4 + find_all | (c) extract_page + 2 selectors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for page in pages:
        body, url = page.body, page.url
        slow_repeat = max(3, repeat // 4)
        decode = best_ms(partial(decode_html, body, CONTENT_TYPE), repeat)
        tree = best_ms(partial(lxml_tree_only, body), repeat)
        hot = best_ms(partial(extract_page, url, body, CONTENT_TYPE), repeat)
        soup = best_ms(partial(bs4_links, body), slow_repeat)
        selectors = best_ms(
            partial(extract_page, url, body, CONTENT_TYPE, SELECTORS), slow_repeat
        )
        rows.append(
            f"| {page.name} | {len(body) / 1024:.0f} KB | {decode:.1f} ms | "
            f"{tree:.1f} ms | {hot:.1f} ms | {soup:.1f} ms | {selectors:.1f} ms |"
        )
    return "\n".join(rows)


def build_trees(body: bytes, count: int) -> None:
    for _ in range(count):
        lxml_tree_only(body)


def gil_table(body: bytes, count: int, runs: int = 3) -> str:
    """Compare lxml tree building in one and two threads (best of ``runs``)."""
    rows = ["| threads | trees/s |", "| ---: | ---: |"]
    for threads in (1, 2):
        per_thread = count // threads
        best = 0.0
        for _ in range(runs):
            workers = [
                threading.Thread(target=build_trees, args=(body, per_thread))
                for _ in range(threads)
            ]
            start = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            elapsed = time.perf_counter() - start
            best = max(best, per_thread * threads / elapsed)
        rows.append(f"| {threads} | {best:.1f} |")
    return "\n".join(rows)


def bs4_builds(text: str, count: int) -> None:
    for _ in range(count):
        BeautifulSoup(text, "lxml").decompose()


def gc_table(body: bytes, builds: int = 4) -> str:
    """Time the main thread's 1 ms sleeps while a thread builds soups.

    Shows how long the cyclic garbage collector, running in the parsing
    thread, keeps the GIL from the main thread.
    """
    text, _ = decode_html(body, CONTENT_TYPE)
    rows = [
        "| garbage collector | max lateness | p99 lateness |",
        "| --- | ---: | ---: |",
    ]
    for enabled in (True, False):
        if not enabled:
            gc.disable()
        try:
            worker = threading.Thread(target=bs4_builds, args=(text, builds))
            worker.start()
            lateness: list[float] = []
            while worker.is_alive():
                start = time.perf_counter()
                time.sleep(TICK_SECONDS)
                lateness.append(time.perf_counter() - start - TICK_SECONDS)
            worker.join()
        finally:
            gc.enable()
        lateness_ms = sorted(value * 1000 for value in lateness)
        p99 = lateness_ms[int(len(lateness_ms) * 0.99)]
        state = "enabled" if enabled else "disabled"
        rows.append(f"| {state} | {lateness_ms[-1]:.1f} ms | {p99:.1f} ms |")
    return "\n".join(rows)


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    """Record how late each 1 ms sleep wakes up, until ``stop`` is set."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(TICK_SECONDS)
        lags.append(time.perf_counter() - start - TICK_SECONDS)


async def parse_all(
    jobs: Sequence[Page], selectors: Sequence[Selector], executor: Executor | None
) -> None:
    if executor is None:
        for page in jobs:
            extract_page(page.url, page.body, CONTENT_TYPE, selectors)
            await asyncio.sleep(0)
        return

    loop = asyncio.get_running_loop()
    semaphore = asyncio.Semaphore(IN_FLIGHT)

    async def one(page: Page) -> None:
        async with semaphore:
            await loop.run_in_executor(
                executor,
                extract_page,
                page.url,
                page.body,
                CONTENT_TYPE,
                tuple(selectors),
            )

    await asyncio.gather(*(one(page) for page in jobs))


async def measure_stall(
    mode: str,
    jobs: Sequence[Page],
    selectors: Sequence[Selector],
    executor: Executor | None,
) -> StallResult:
    if executor is not None:
        # Start every worker (process start-up is not parsing cost).
        loop = asyncio.get_running_loop()
        warm = synthetic_page()
        await asyncio.gather(
            *(
                loop.run_in_executor(
                    executor, extract_page, warm.url, warm.body, CONTENT_TYPE, ()
                )
                for _ in range(4)
            )
        )

    lags: list[float] = []
    stop = asyncio.Event()
    tick_task = asyncio.create_task(ticker(lags, stop))
    await asyncio.sleep(0.05)
    lags.clear()

    start = time.perf_counter()
    await parse_all(jobs, selectors, executor)
    seconds = time.perf_counter() - start

    stop.set()
    await tick_task

    lags_ms = sorted(lag * 1000 for lag in lags)
    p99 = lags_ms[min(len(lags_ms) - 1, int(len(lags_ms) * 0.99))]
    return StallResult(mode, len(jobs), seconds, lags_ms[-1], p99, len(lags_ms))


def executors() -> list[tuple[str, Callable[[], Executor | None]]]:
    return [
        ("inline on the loop", lambda: None),
        ("ThreadPoolExecutor(1)", lambda: ThreadPoolExecutor(1)),
        ("ThreadPoolExecutor(2)", lambda: ThreadPoolExecutor(2)),
        ("ProcessPoolExecutor(1)", lambda: ProcessPoolExecutor(1)),
        ("ProcessPoolExecutor(2)", lambda: ProcessPoolExecutor(2)),
    ]


async def stall_table(jobs: Sequence[Page], selectors: Sequence[Selector]) -> str:
    rows = [
        "| mode | pages | pages/s | max loop lag | p99 loop lag | ticks |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, make in executors():
        executor = make()
        try:
            result = await measure_stall(mode, jobs, selectors, executor)
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
        rows.append(
            f"| {result.mode} | {result.pages} | "
            f"{result.pages / result.seconds:.1f} | {result.max_lag_ms:.1f} ms | "
            f"{result.p99_lag_ms:.1f} ms | {result.ticks} |"
        )
    return "\n".join(rows)


async def idle_lag() -> str:
    lags: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(ticker(lags, stop))
    await asyncio.sleep(1.0)
    stop.set()
    await task
    lags_ms = sorted(lag * 1000 for lag in lags)
    p99 = lags_ms[int(len(lags_ms) * 0.99)]
    return f"idle loop: max lag {lags_ms[-1]:.2f} ms, p99 {p99:.2f} ms"


def hardware() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
        f"Python {platform.python_version()}, "
        f"lxml {'.'.join(map(str, etree.LXML_VERSION))}, "
        f"libxml2 {'.'.join(map(str, etree.LIBXML_VERSION))}"
    )


def load_average(when: str) -> str:
    """Describe the 1-minute load average: other work skews every figure."""
    one_minute, _, _ = os.getloadavg()
    return f"1-minute load average {when}: {one_minute:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pages", type=int, default=200, help="pages parsed per mode (default 200)"
    )
    parser.add_argument(
        "--selector-pages",
        type=int,
        default=40,
        help="pages parsed per mode with two selectors (default 40)",
    )
    parser.add_argument(
        "--repeat", type=int, default=12, help="timed runs per page (default 12)"
    )
    args = parser.parse_args()

    large = load_pages(LARGE_PAGES)
    print(hardware())
    print(load_average("at the start"))
    print()
    print(per_page_table([synthetic_page(), *large], args.repeat))
    print()
    print("lxml tree building of library/stdtypes.html in threads:")
    print(gil_table(large[2].body, 40))
    print()
    print("BeautifulSoup builds of library/os.html in a thread, main thread sleeping:")
    print(gc_table(large[3].body))
    print()

    jobs = [large[i % len(large)] for i in range(args.pages)]
    selector_jobs = [large[i % len(large)] for i in range(args.selector_pages)]
    print(asyncio.run(idle_lag()))
    print()
    print(load_average("before the loop-stall runs"))
    print(f"Loop stall while parsing {args.pages} large pages, no selectors:")
    print(asyncio.run(stall_table(jobs, ())))
    print()
    print(f"Loop stall while parsing {args.selector_pages} large pages, 2 selectors:")
    print(asyncio.run(stall_table(selector_jobs, SELECTORS)))
    print()
    print(load_average("at the end"))


if __name__ == "__main__":
    main()

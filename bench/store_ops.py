"""Time the store calls that a crawl worker makes for each page, one at a time.

bench/cluster.py measures whole crawls, where store calls, fetches and
parsing overlap. This script isolates the store: one process, no network, and
for every page the calls that ``JobFrontier`` and the engine make, in order:

1. ``pop_request``: take the oldest queued URL of a free host;
2. ``acquire_host``: only for the first URL of each host;
3. ``save_page``: store the page's record;
4. ``add_requests``: offer the page's links, as many as a generated page has
   and all already known, so nothing new is queued;
5. ``complete_request``: mark the URL done.

The frontier starts with every URL queued (``--hosts`` x ``--pages-per-host``),
as it is soon after a crawl of a densely linked site begins. Timings are
reported per call and for the first and last tenth of the pages, which shows
whether a call gets slower as the job's collections grow. On a MongoDB URL,
a pymongo command listener also counts the commands each call sends, which
on FerretDB include the lock document's insert and delete.

Run from the repository root, on a new SQLite file or a MongoDB database that
this script creates and drops::

    python bench/store_ops.py sqlite:////tmp/store-ops.db
    python bench/store_ops.py 'mongodb://127.0.0.1:27031/store_ops'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pymongo import monitoring

from crawler.frontier import CrawlRequest
from crawler.records import Links, PageRecord, utc_timestamp
from crawler.service import open_store
from crawler.settings import Settings
from crawler.store.base import Store

OPERATIONS = (
    "pop_request",
    "acquire_host",
    "save_page",
    "add_requests",
    "complete_request",
)
WORKER_ID = "store-ops-worker"
LEASE_S = 30.0
SEED = 20240501
T = TypeVar("T")


class CommandCounter(monitoring.CommandListener):
    """Count the MongoDB commands sent, by command name and collection."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        name = event.command_name
        if isinstance(target, str):
            name += f" {target}"
        self.counts[name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def page_url(host: int, number: int) -> str:
    return f"http://127.0.4.{host + 1}:8000/page{number:05d}.html"


def make_requests(hosts: int, pages_per_host: int) -> list[CrawlRequest]:
    """Return every URL of the job, hosts interleaved as links would find them."""
    return [
        CrawlRequest(
            page_url(host, number),
            page_url(host, number),
            f"127.0.4.{host + 1}:8000",
            1,
        )
        for number in range(pages_per_host)
        for host in range(hosts)
    ]


def make_record(request: CrawlRequest, links: Sequence[str]) -> PageRecord:
    """Build a record of the size a generated page gives: title, links."""
    return PageRecord(
        url=request.url,
        final_url=request.url,
        key=request.key,
        depth=request.depth,
        referrer=request.referrer,
        fetched_at=utc_timestamp(),
        status=200,
        elapsed_ms=31,
        content_type="text/html",
        size_bytes=30_000,
        encoding="utf-8",
        title=f"Overview {request.key[-10:]}: generated benchmark page",
        description="Generated benchmark page. " * 4,
        links=Links(count=len(links) + 5, in_scope=tuple(links)),
    )


class CallTimer:
    """Time store calls, and count the commands they send, for one page."""

    def __init__(self, counter: CommandCounter) -> None:
        self._counter = counter
        self.timings: dict[str, float] = {}
        self.commands: dict[str, Counter[str]] = {}

    async def run(self, name: str, call: Awaitable[T]) -> T:
        before = Counter(self._counter.counts)
        started = time.perf_counter()
        result = await call
        self.timings[name] = time.perf_counter() - started
        self.commands[name] = self._counter.counts - before
        return result


async def crawl_through(
    store: Store,
    job_id: str,
    requests: list[CrawlRequest],
    links_per_page: int,
    counter: CommandCounter,
) -> list[CallTimer]:
    """Pop, save, offer links and complete every queued URL; time each call."""
    rng = random.Random(SEED)
    leased_hosts: set[str] = set()
    pages: list[CallTimer] = []
    for _ in range(len(requests)):
        timer = CallTimer(counter)
        request = await timer.run(
            "pop_request",
            store.pop_request(
                job_id, (), WORKER_ID, lease_s=LEASE_S, now=time.time(), max_pops=10**6
            ),
        )
        if request is None:
            raise RuntimeError(f"pop_request returned None after {len(pages)} pages")
        if request.host not in leased_hosts:
            await timer.run(
                "acquire_host",
                store.acquire_host(
                    job_id, request.host, WORKER_ID, lease_s=LEASE_S, now=time.time()
                ),
            )
            leased_hosts.add(request.host)

        links = rng.sample(requests, links_per_page)
        record = make_record(request, [link.url for link in links])
        await timer.run("save_page", store.save_page(job_id, record))
        await timer.run("add_requests", store.add_requests(job_id, links))
        await timer.run("complete_request", store.complete_request(job_id, request.key))
        pages.append(timer)
    return pages


def mean_ms(pages: Sequence[CallTimer], name: str) -> float | None:
    values = [page.timings[name] * 1000 for page in pages if name in page.timings]
    return statistics.fmean(values) if values else None


def describe_calls(pages: Sequence[CallTimer]) -> dict[str, Any]:
    """Summarize the timings in milliseconds, and the commands per call."""
    summary: dict[str, Any] = {}
    tenth = max(1, len(pages) // 10)
    for name in OPERATIONS:
        calls = sum(name in page.timings for page in pages)
        if not calls:
            continue
        commands: Counter[str] = Counter()
        for page in pages:
            commands.update(page.commands.get(name, {}))
        summary[name] = {
            "calls": calls,
            "mean_ms": mean_ms(pages, name),
            "first_tenth_mean_ms": mean_ms(pages[:tenth], name),
            "last_tenth_mean_ms": mean_ms(pages[-tenth:], name),
            "commands_per_call": {
                command: count / calls for command, count in commands.items()
            },
        }
    per_page = [sum(page.timings.values()) * 1000 for page in pages]
    summary["per_page"] = {
        "calls": len(pages),
        "mean_ms": statistics.fmean(per_page),
        "first_tenth_mean_ms": statistics.fmean(per_page[:tenth]),
        "last_tenth_mean_ms": statistics.fmean(per_page[-tenth:]),
    }
    return summary


def format_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_summary(url: str, pages: int, summary: dict[str, Any]) -> None:
    print(f"{url}: {pages} pages, one call at a time")
    print("| Call | Calls | Mean ms | First tenth ms | Last tenth ms | Commands |")
    print("|---|---:|---:|---:|---:|---|")
    for name in (*OPERATIONS, "per_page"):
        if name not in summary:
            continue
        facts = summary[name]
        commands = ", ".join(
            f"{command} {count:.1f}"
            for command, count in sorted(facts.get("commands_per_call", {}).items())
        )
        print(
            f"| {name} | {facts['calls']} | {format_ms(facts['mean_ms'])} | "
            f"{format_ms(facts['first_tenth_mean_ms'])} | "
            f"{format_ms(facts['last_tenth_mean_ms'])} | {commands or '-'} |"
        )


async def measure(args: argparse.Namespace, counter: CommandCounter) -> dict[str, Any]:
    store = await open_store(Settings(store_url=args.store_url))
    try:
        requests = make_requests(args.hosts, args.pages_per_host)
        job, _ = await store.create_job(
            {"seeds": [requests[0].url], "max_pages": 10_000_000}
        )
        await store.add_requests(job.id, requests)
        pages = await crawl_through(
            store, job.id, requests, args.links_per_page, counter
        )
    finally:
        drop = getattr(store, "drop_database", None)
        if drop is not None:
            await drop()
        await store.close()
    return describe_calls(pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "store_url",
        help="a new SQLite file (sqlite:////tmp/x.db) or MongoDB database URL",
    )
    parser.add_argument("--hosts", type=int, default=8, help="hosts (default 8)")
    parser.add_argument(
        "--pages-per-host", type=int, default=312, help="URLs per host (default 312)"
    )
    parser.add_argument(
        "--links-per-page",
        type=int,
        default=40,
        help="known links offered again per page (default 40)",
    )
    parser.add_argument("--results", type=Path, help="JSON file for the summary")
    args = parser.parse_args(argv)
    if args.store_url.startswith("sqlite:///"):
        path = Path(args.store_url.removeprefix("sqlite:///"))
        if path.exists():
            parser.error(f"{path} exists; name a new file, which this script deletes")

    counter = CommandCounter()
    monitoring.register(counter)
    summary = asyncio.run(measure(args, counter))
    if args.store_url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    pages = args.hosts * args.pages_per_host
    print_summary(args.store_url, pages, summary)
    if args.results:
        args.results.write_text(
            json.dumps(
                {"store_url": args.store_url, "pages": pages, **summary}, indent=1
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

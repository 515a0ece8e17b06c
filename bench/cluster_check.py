"""Check one bench/cluster.py run, and compute its figures from the site's log.

The checks use two independent sources: the page records in the job's store,
and the site's own log of the requests it handled. A run fails when the job
did not complete, a page is missing, recorded twice or recorded with an
error, or a host handled more requests at once than the job's per-host limit.
"""

from __future__ import annotations

import argparse
import datetime
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import urlsplit

from cluster_processes import WorkerProcess
from report import canonical_url

ROBOTS_PATH = "/robots.txt"
EXAMPLES_SHOWN = 3


def page_key(url: str) -> str:
    """Return ``host:port/path?sorted-query`` for a URL, without its fragment."""
    return urlsplit(url).netloc + canonical_url(url)


def page_fetches(requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the site's log entries for pages, robots.txt left out."""
    return [entry for entry in requests if entry["path"] != ROBOTS_PATH]


def expected_keys(hosts: Sequence[str], port: int, paths: Sequence[str]) -> set[str]:
    return {f"{host}:{port}{path}" for host in hosts for path in paths}


def check_run(
    state: str,
    pages: Sequence[dict[str, Any]],
    site_log: dict[str, Any],
    expected: Collection[str],
    per_host_limit: int,
) -> list[str]:
    """Return what is wrong with the run, or an empty list."""
    failures = []
    if state != "completed":
        failures.append(f"the job ended as {state!r}, not 'completed'")
    if not site_log:
        failures.append("the site wrote no request log")

    keys = Counter(page_key(page["url"]) for page in pages)
    twice = sorted(key for key, count in keys.items() if count > 1)
    if twice:
        failures.append(
            f"{len(twice)} pages recorded more than once: {twice[:EXAMPLES_SHOWN]}"
        )
    missing = sorted(set(expected) - set(keys))
    if missing:
        failures.append(
            f"{len(missing)} pages not recorded: {missing[:EXAMPLES_SHOWN]}"
        )
    unexpected = sorted(set(keys) - set(expected))
    if unexpected:
        failures.append(
            f"{len(unexpected)} unexpected records: {unexpected[:EXAMPLES_SHOWN]}"
        )
    errors = [
        page["url"]
        for page in pages
        if page.get("status") != 200 or page.get("error") is not None
    ]
    if errors:
        failures.append(
            f"{len(errors)} records without status 200: {errors[:EXAMPLES_SHOWN]}"
        )

    peaks = site_log.get("peak_in_flight", {})
    over = {host: peak for host, peak in peaks.items() if peak > per_host_limit}
    if over:
        failures.append(
            f"hosts handled more than {per_host_limit} requests at once: {over}"
        )
    return failures


def count_log_lines(worker: WorkerProcess, level: str) -> int:
    text = worker.output_path.read_text(errors="replace")
    return sum(f" {level} " in line for line in text.splitlines())


def describe_workers(
    workers: Sequence[WorkerProcess],
    requests: Sequence[dict[str, Any]],
    first_fetch: float | None,
    cpu: dict[str, float],
    peak_rss_mb: dict[int, float | None],
) -> list[dict[str, Any]]:
    """Split the site's requests by worker (by source address), with each
    worker's CPU seconds, peak RSS and the warnings and errors it logged."""
    pages = page_fetches(requests)
    described = []
    for worker in workers:
        own = [entry for entry in requests if entry["client"] == worker.source]
        own_pages = [entry for entry in own if entry["path"] != ROBOTS_PATH]
        starts = [entry["started"] for entry in own]
        joined = None
        if starts and first_fetch is not None:
            joined = min(starts) - first_fetch
        described.append(
            {
                "index": worker.index,
                "source": worker.source,
                "pid": worker.process.pid,
                "page_fetches": len(own_pages),
                "robots_fetches": len(own) - len(own_pages),
                "share": len(own_pages) / len(pages) if pages else 0.0,
                "hosts": sorted({entry["host"] for entry in own_pages}),
                "first_fetch_after_s": joined,
                "cpu_seconds": cpu.get(f"worker-{worker.index}"),
                "peak_rss_mb": peak_rss_mb.get(worker.index),
                "warnings": count_log_lines(worker, "WARNING"),
                "errors": count_log_lines(worker, "ERROR"),
                "log": str(worker.output_path),
            }
        )
    return described


def epoch_seconds(timestamp: str | None) -> float | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromisoformat(timestamp).timestamp()


def measure_run(
    args: argparse.Namespace,
    site_log: dict[str, Any],
    pages: list[dict[str, Any]],
    workers: list[WorkerProcess],
    before: dict[str, float],
    after: dict[str, float],
    peak_rss: dict[int, float | None],
    finished_at: str | None,
) -> dict[str, Any]:
    """Turn the site's log, the records and the CPU snapshots into figures."""
    requests = site_log.get("requests", [])
    first_fetch = min((entry["started"] for entry in requests), default=None)
    last_fetch_end = max((entry["finished"] for entry in requests), default=None)
    finished = epoch_seconds(finished_at)
    seconds = None
    if first_fetch is not None and finished is not None:
        seconds = finished - first_fetch

    cpu = {key: after[key] - before[key] for key in after if key in before}
    worker_cpu = sum(value for key, value in cpu.items() if key.startswith("worker-"))
    window = cpu.pop("machine")
    wall = max(seconds or 0.0, 1e-9)
    return {
        "pages": len(pages),
        "seconds": seconds,
        "pages_per_second": len(pages) / wall if seconds else None,
        "completion_lag_s": (
            finished - last_fetch_end if finished and last_fetch_end else None
        ),
        "page_fetches": len(page_fetches(requests)),
        "worker_cpu_seconds": worker_cpu,
        "store_server_cpu_seconds": cpu.get("store_server"),
        "site_cpu_seconds": cpu["site"],
        "cpu_seconds": cpu,
        "busy_cores": window / wall,
        # CPU time the machine spent on anything but this run's processes,
        # such as other people's work, in cores busy on average.
        "other_load_cores": max(window - sum(cpu.values()), 0.0) / wall,
        "per_worker": describe_workers(workers, requests, first_fetch, cpu, peak_rss),
        "peak_in_flight": site_log.get("peak_in_flight", {}),
        "latency_ms": args.latency_ms,
    }

"""Measure how one crawl job's throughput scales with the workers that share it.

Each run serves a generated site on several loopback hosts with a fixed
latency (bench/cluster_site.py) and starts N ``crawler worker`` processes on
one store. It then creates one job that crawls every host with
``scope=allowlist``, and times it from the first request the site received to
the job's ``finished_at``. The workers start first and the job is created once all of
them are polling, so that the run times the job and not interpreter start-up.

Each worker binds its own source address (``CRAWLER_SOURCE_ADDRESS``), so the
site can tell which worker made each request. A run fails, loudly, unless:

* the job completed and every page of every host was recorded exactly once,
  with status 200;
* no host ever handled more than ``per_host_concurrency`` requests at once;
* every worker was still running when the job completed.

Stores: ``sqlite`` (a new file per run) and ``ferretdb`` (a new database per
run on a FerretDB that this script starts with scripts/ferretdb.sh on its own
port and data folder, and stops at the end).

Run from the repository root with the project's Python::

    python bench/cluster.py                      # 1-4 workers x 2 stores x 3 rounds
    python bench/cluster.py --quick              # 1 round, 1 and 2 workers, SQLite
    python bench/cluster_report.py /tmp/bench-cluster/results.json

Every run stops after ``--run-timeout-s``. The processes this script starts
(the site, the workers, FerretDB) are stopped by their PID when a run or the
benchmark ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cluster_check import check_run, expected_keys, measure_run
from cluster_processes import (
    FerretDB,
    WorkerProcess,
    cpu_snapshot,
    read_peak_rss_mb,
    start_site,
    start_workers,
    stop_all,
    wait_until_ready,
)
from cluster_report import markdown_table, summarize
from gen_site import ensure_site
from measure import wait_for_quiet
from run import git_revision, read_cpu_model, read_memory_gib, safe_version

from crawler.options import CrawlOptions
from crawler.service import open_store
from crawler.settings import Settings
from crawler.store.base import FINAL_STATES, Store

SITE_DIR_PREFIX = "/tmp/bench-cluster-site-"
DEFAULT_WORK_DIR = Path("/tmp/bench-cluster")
DEFAULT_FERRETDB_DIR = Path("/tmp/bench-ferret")
DEFAULT_FERRETDB_PORT = 27031
# Port 27018 is the FerretDB that the project's tests and other people use.
SHARED_FERRETDB_PORT = 27018
HOSTS = tuple(f"127.0.4.{index}" for index in range(1, 9))
SITE_SEED = 20240501
STORES = ("sqlite", "ferretdb")
POLL_INTERVAL_S = 0.1
SITE_START_TIMEOUT_S = 30.0
WORKER_START_TIMEOUT_S = 60.0


def add_site_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the site and the job")
    group.add_argument(
        "--hosts",
        type=int,
        default=len(HOSTS),
        help=f"hosts, on 127.0.4.1 upwards (default {len(HOSTS)})",
    )
    group.add_argument(
        "--pages-per-host",
        type=int,
        default=300,
        help="generated pages each host serves (default 300)",
    )
    group.add_argument(
        "--latency-ms",
        type=float,
        default=30.0,
        help="milliseconds the site waits before each response (default 30)",
    )
    group.add_argument(
        "--per-host-concurrency",
        type=int,
        default=2,
        help="the job's per_host_concurrency (default 2)",
    )
    group.add_argument(
        "--per-host-delay-s",
        type=float,
        default=0.02,
        help="the job's per_host_delay_s, seconds between request starts to one "
        "host (default 0.02)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to run")
    group.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round of 1 and 2 workers on SQLite",
    )
    group.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2, 3, 4],
        help="worker process counts to measure, at most 8 (default 1 2 3 4)",
    )
    group.add_argument(
        "--stores",
        nargs="+",
        choices=STORES,
        default=list(STORES),
        help="stores to measure (default: both)",
    )
    group.add_argument(
        "--rounds", type=int, default=3, help="runs of each case (default 3)"
    )
    group.add_argument(
        "--run-timeout-s",
        type=float,
        default=180.0,
        help="seconds a job may take before its run is stopped and failed "
        "(default 180)",
    )
    group.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="before each run, wait until the machine's busy CPU falls to this "
        "many cores (default 0.3)",
    )
    group.add_argument(
        "--quiet-wait-s",
        type=float,
        default=15.0,
        help="seconds to wait for that before running anyway (default 15)",
    )


def add_path_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("files and servers")
    group.add_argument(
        "--site-dir",
        type=Path,
        default=None,
        help=f"folder of the generated site, made if missing "
        f"(default {SITE_DIR_PREFIX}PAGES_PER_HOST)",
    )
    group.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"folder for stores, logs and results (default {DEFAULT_WORK_DIR})",
    )
    group.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSON results file (default WORK_DIR/results.json)",
    )
    group.add_argument(
        "--ferretdb-dir",
        type=Path,
        default=DEFAULT_FERRETDB_DIR,
        help=f"data, log and PID file of the FerretDB this script starts "
        f"(default {DEFAULT_FERRETDB_DIR})",
    )
    group.add_argument(
        "--ferretdb-port",
        type=int,
        default=DEFAULT_FERRETDB_PORT,
        help=f"port of that FerretDB on 127.0.0.1 (default {DEFAULT_FERRETDB_PORT})",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check the command line, applying --quick."""
    parser = argparse.ArgumentParser(
        description="Measure one job's pages per second against its worker count."
    )
    add_site_arguments(parser)
    add_run_arguments(parser)
    add_path_arguments(parser)
    args = parser.parse_args(argv)

    if args.quick:
        args.rounds = 1
        args.workers = [1, 2]
        args.stores = ["sqlite"]
    if not 1 <= args.hosts <= len(HOSTS):
        parser.error(f"--hosts must be from 1 to {len(HOSTS)}, got {args.hosts}")
    if args.pages_per_host < 1:
        parser.error(f"--pages-per-host must be at least 1, got {args.pages_per_host}")
    if not all(1 <= count <= 8 for count in args.workers):
        parser.error(f"--workers must be from 1 to 8, got {args.workers}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.ferretdb_port == SHARED_FERRETDB_PORT:
        parser.error(
            f"--ferretdb-port {SHARED_FERRETDB_PORT} is the shared FerretDB's port; "
            "choose another so the benchmark starts its own"
        )
    if args.results is None:
        args.results = args.work_dir / "results.json"
    if args.site_dir is None:
        args.site_dir = Path(f"{SITE_DIR_PREFIX}{args.pages_per_host}")
    return args


def job_options(args: argparse.Namespace, port: int) -> dict[str, Any]:
    """Return the job's options: every host's home page, limits per host."""
    hosts = HOSTS[: args.hosts]
    options = CrawlOptions.from_mapping(
        {
            "seeds": [f"http://{host}:{port}/index.html" for host in hosts],
            "scope": "allowlist",
            "allowed_domains": list(hosts),
            "per_host_concurrency": args.per_host_concurrency,
            "per_host_delay_s": args.per_host_delay_s,
        }
    )
    return options.to_mapping()


def store_url(store: str, run_name: str, args: argparse.Namespace) -> str:
    if store == "sqlite":
        return f"sqlite:///{args.work_dir / 'stores' / run_name}.db"
    database = run_name.replace("-", "_")
    return (
        f"mongodb://127.0.0.1:{args.ferretdb_port}/{database}"
        "?serverSelectionTimeoutMS=5000"
    )


async def drop_store(store: Store, url: str) -> None:
    """Remove a run's database or file, so runs do not fill the disk."""
    drop = getattr(store, "drop_database", None)
    if drop is not None:
        await drop()
    await store.close()
    if url.startswith("sqlite:///"):
        remove_sqlite_files(Path(url.removeprefix("sqlite:///")))


def remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def wait_for_job(
    store: Store, job_id: str, workers: list[WorkerProcess], timeout_s: float
) -> tuple[str, str | None]:
    """Poll the job until it ends, a worker exits or the timeout passes.

    Returns the job's state (or why the wait ended) and its ``finished_at``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = await store.get_job(job_id)
        if job is not None and job.state in FINAL_STATES:
            return str(job.state), job.finished_at
        exited = [worker for worker in workers if worker.process.poll() is not None]
        if exited:
            return f"worker {exited[0].index} exited", None
        await asyncio.sleep(POLL_INTERVAL_S)
    return f"not finished after {timeout_s:.0f} s", None


async def run_once(
    args: argparse.Namespace,
    store_name: str,
    worker_count: int,
    round_number: int,
    ferretdb: FerretDB | None,
    expected_paths: Sequence[str],
) -> dict[str, Any]:
    """Run one job with ``worker_count`` workers and return its record."""
    name = f"{store_name}-w{worker_count}-r{round_number}"
    folder = args.work_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (args.work_dir / "stores").mkdir(exist_ok=True)
    url = store_url(store_name, name, args)
    hosts = HOSTS[: args.hosts]
    record: dict[str, Any] = {
        "store": store_name,
        "workers": worker_count,
        "round": round_number,
        "name": name,
        "folder": str(folder),
    }
    record["load_before_run_cores"] = wait_for_quiet(
        args.quiet_cores, args.quiet_wait_s
    )

    store_server = ferretdb if store_name == "ferretdb" else None
    store = await open_store(Settings(store_url=url))
    site = start_site(args.site_dir, hosts, args.latency_ms, folder, args)
    workers: list[WorkerProcess] = []
    try:
        await wait_until_ready([site], SITE_START_TIMEOUT_S)
        workers = start_workers(worker_count, url, folder)
        await wait_until_ready(workers, WORKER_START_TIMEOUT_S)

        before = cpu_snapshot(workers, site, store_server)
        job, _ = await store.create_job(job_options(args, site.port))
        state, finished_at = await wait_for_job(
            store, job.id, workers, args.run_timeout_s
        )
        after = cpu_snapshot(workers, site, store_server)
        peak_rss = {w.index: read_peak_rss_mb(w.process.pid) for w in workers}
    finally:
        # Workers first: fetches in flight during their shutdown grace still
        # reach the site, and are recorded, instead of failing.
        stop_all(workers)
        stop_all([site])

    site_log = json.loads(site.log_path.read_text()) if site.log_path.exists() else {}
    pages = [page async for page in store.iter_pages(job.id)]
    counters = await store.counters(job.id)
    await drop_store(store, url)

    record.update(
        job_id=job.id,
        state=state,
        finished_at=finished_at,
        counters={"pages": counters.pages, "failed": counters.failed},
    )
    record.update(
        measure_run(
            args, site_log, pages, workers, before, after, peak_rss, finished_at
        )
    )
    expected = expected_keys(hosts, site.port, expected_paths)
    failures = check_run(state, pages, site_log, expected, args.per_host_concurrency)
    record["status"] = "failed" if failures else "ok"
    record["failures"] = failures
    return record


def plan_runs(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """List (store, workers, round), rounds outermost so a stop loses the last."""
    return [
        (store, count, round_number)
        for round_number in range(1, args.rounds + 1)
        for store in args.stores
        for count in args.workers
    ]


def describe_run(record: dict[str, Any]) -> str:
    """Summarize one run in a line of progress output."""
    if record["status"] != "ok":
        return "FAILED: " + "; ".join(record["failures"])
    shares = " / ".join(f"{worker['share']:.0%}" for worker in record["per_worker"])
    rss = ", ".join(f"{worker['peak_rss_mb']:.0f}" for worker in record["per_worker"])
    return (
        f"{record['pages']} pages in {record['seconds']:.1f} s "
        f"({record['pages_per_second']:.0f} pages/s), shares {shares}, "
        f"peak RSS MB {rss}, worker CPU {record['worker_cpu_seconds']:.1f} s, "
        f"busy {record['busy_cores']:.2f} cores"
    )


def describe_environment(args: argparse.Namespace) -> dict[str, Any]:
    """Record the hardware and software versions the numbers depend on."""
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": read_cpu_model(),
        "memory_gib": round(read_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {
            name: safe_version(name) for name in ("aiohttp", "lxml", "pymongo")
        },
        "ferretdb": FerretDB.VERSION if "ferretdb" in args.stores else None,
        "crawler_revision": git_revision(),
    }


@contextlib.contextmanager
def ferretdb_server(args: argparse.Namespace) -> Iterator[FerretDB | None]:
    """Start the benchmark's own FerretDB when a FerretDB run is planned."""
    if "ferretdb" not in args.stores:
        yield None
        return
    server = FerretDB(args.ferretdb_dir, args.ferretdb_port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def run_all(
    args: argparse.Namespace, ferretdb: FerretDB | None, expected_paths: list[str]
) -> list[dict[str, Any]]:
    records = []
    for store_name, worker_count, round_number in plan_runs(args):
        record = await run_once(
            args, store_name, worker_count, round_number, ferretdb, expected_paths
        )
        stream = sys.stdout if record["status"] == "ok" else sys.stderr
        print(f"  {record['name']}: {describe_run(record)}", file=stream, flush=True)
        records.append(record)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    manifest = ensure_site(args.site_dir, args.pages_per_host, SITE_SEED)
    print(
        f"site: {len(manifest['expected_paths'])} URLs per host on "
        f"{args.hosts} hosts, {args.latency_ms:g} ms per response",
        flush=True,
    )

    with ferretdb_server(args) as ferretdb:
        records = asyncio.run(run_all(args, ferretdb, manifest["expected_paths"]))

    summary = summarize(records)
    results = {
        "started_at": started_at,
        "total_seconds": time.monotonic() - started,
        "command": [Path(sys.executable).name, *sys.argv],
        "arguments": {key: str(value) for key, value in vars(args).items()},
        "environment": describe_environment(args),
        "summary": summary,
        "runs": records,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")

    print()
    print(markdown_table(summary))
    print(f"\nresults written to {args.results} after {results['total_seconds']:.0f} s")
    failed = [record for record in records if record["status"] != "ok"]
    if failed:
        names = ", ".join(record["name"] for record in failed)
        print(
            f"FAILED: {len(failed)} runs failed their checks: {names}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

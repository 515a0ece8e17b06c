"""Benchmark this project's crawler against Scrapy on two nginx-served sites.

Each case (site x concurrency) runs both crawlers for several rounds, taking
turns and swapping which goes first every round, so a slow phase of the
machine or a cold cache hurts both alike. Every run is measured as a process
tree (see bench/measure.py): wall seconds, CPU seconds, peak RSS. The pages a
crawler fetched are counted from its JSON Lines output (status 200 only) and
compared with the other crawler's and, for the generated site, with the
generator's manifest, so the speeds compare equal work.

Sites:

* ``generated``: 5,000 seeded pages from bench/gen_site.py.
* ``python-docs``: Debian's python3.11-doc HTML (/usr/share/doc/python3.11/html).

Run from the repository root with the project's Python::

    python bench/run.py            # 2 sites x concurrency 16, 64 x 3 rounds
    python bench/run.py --quick    # 1 round, concurrency 16 only

Scrapy runs with the Python of a separate virtualenv (``--scrapy-python``), so
it never enters the project's environment. Every run stops at its timeout
(``--run-timeout-s``). A run is skipped, and shown as skipped, when the previous
round of its case would not finish within what is left of ``--budget-s``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from gen_site import DEFAULT_OUTPUT, DEFAULT_PAGES, DEFAULT_SEED, ensure_site
from measure import (
    Measurement,
    find_tree,
    read_cpu_seconds,
    read_machine_busy_seconds,
    run_measured,
    wait_for_quiet,
)
from report import (
    canonical_url,
    markdown_table,
    summarize,
    url_set_lines,
    url_set_report,
)
from serve import NGINX, Server, serve

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SPIDER = BENCH_DIR / "scrapy_spider.py"
DEFAULT_SCRAPY_PYTHON = Path("/tmp/bench-scrapy-venv/bin/python")
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
DEFAULT_WORK_DIR = Path("/tmp/bench-results")
CRAWLERS = ("ours", "scrapy")
SITES = ("generated", "python-docs")
MAX_PAGES = 100_000
MAX_DEPTH = 100
BUDGET_GRACE_SECONDS = 60.0
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class Case:
    """One measured run: which crawler, site, concurrency and round."""

    crawler: str
    site: str
    concurrency: int
    round: int

    @property
    def name(self) -> str:
        return f"{self.site}-{self.crawler}-c{self.concurrency}-r{self.round}"


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to run")
    group.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round at concurrency 16 only",
    )
    group.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of each crawler per case (default 3)",
    )
    group.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[16, 64],
        help="concurrency levels, used for total and per-host limits (default 16 64)",
    )
    group.add_argument(
        "--sites",
        nargs="+",
        choices=SITES,
        default=list(SITES),
        help="sites to crawl (default: both)",
    )
    group.add_argument(
        "--crawlers",
        nargs="+",
        choices=CRAWLERS,
        default=list(CRAWLERS),
        help="crawlers to run (default: both)",
    )
    group.add_argument(
        "--crawler-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for this project's crawler only, such as "
        "CRAWLER_PARSE_MODE=process; repeatable",
    )


def add_path_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("files")
    group.add_argument(
        "--site-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"folder of the generated site, generated if missing "
        f"(default {DEFAULT_OUTPUT})",
    )
    group.add_argument(
        "--scrapy-python",
        type=Path,
        default=DEFAULT_SCRAPY_PYTHON,
        help=f"Python of the virtualenv with Scrapy (default {DEFAULT_SCRAPY_PYTHON})",
    )
    group.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help=f"folder for crawl outputs and logs (default {DEFAULT_WORK_DIR})",
    )
    group.add_argument(
        "--results",
        type=Path,
        default=None,
        help="JSON results file (default WORK_DIR/results.json)",
    )


def add_time_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("time limits")
    group.add_argument(
        "--run-timeout-s",
        type=float,
        default=240.0,
        help="seconds before one run is stopped and marked failed (default 240)",
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
        default=20.0,
        help="seconds to wait for that before running anyway (default 20)",
    )
    group.add_argument(
        "--budget-s",
        type=float,
        default=840.0,
        help="seconds for the whole benchmark: a pair of runs is skipped when "
        "its previous round would not finish in the time left (default 840)",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check the command line, applying --quick."""
    parser = argparse.ArgumentParser(
        description="Benchmark the crawler against Scrapy on loopback nginx sites."
    )
    add_selection_arguments(parser)
    add_path_arguments(parser)
    add_time_arguments(parser)
    args = parser.parse_args(argv)

    if args.quick:
        args.rounds = 1
        args.concurrency = [16]
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if min(args.concurrency) < 1:
        parser.error(f"--concurrency must be at least 1, got {args.concurrency}")
    for assignment in args.crawler_env:
        if "=" not in assignment or not assignment.split("=", 1)[0]:
            parser.error(f"--crawler-env expects NAME=VALUE, got {assignment!r}")
    if args.results is None:
        args.results = args.work_dir / "results.json"
    return args


def child_environment(extra: Sequence[str] = ()) -> dict[str, str]:
    """Copy the environment without proxy settings, so requests stay on loopback.

    ``extra`` contains NAME=VALUE assignments added on top.
    """
    environment = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in PROXY_VARIABLES
    }
    for assignment in extra:
        name, _, value = assignment.partition("=")
        environment[name] = value
    return environment


def our_command(start_url: str, concurrency: int, output: Path) -> list[str]:
    return [
        sys.executable, "-m", "crawler", "crawl", start_url,
        "--max-pages", str(MAX_PAGES),
        "--max-depth", str(MAX_DEPTH),
        "--concurrency", str(concurrency),
        "--per-host-concurrency", str(concurrency),
        "--allow-network", "127.0.0.0/8",
        "-o", str(output),
    ]  # fmt: skip


def scrapy_command(
    scrapy_python: Path, start_url: str, concurrency: int, output: Path
) -> list[str]:
    return [
        str(scrapy_python), "-m", "scrapy", "runspider", str(SPIDER),
        "-a", f"start_url={start_url}",
        "-s", f"CONCURRENT_REQUESTS={concurrency}",
        "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}",
        "-O", f"{output}:jsonlines",
    ]  # fmt: skip


def check_our_crawler() -> str | None:
    """Return why ``python -m crawler`` cannot run yet, or None if it can."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "crawler", "crawl", "--help"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "python -m crawler crawl --help timed out after 60 s"
    if result.returncode != 0:
        error_lines = result.stderr.strip().splitlines()
        last_line = error_lines[-1] if error_lines else "no output"
        return f"python -m crawler crawl --help failed: {last_line}"
    return None


def check_scrapy(scrapy_python: Path) -> str | None:
    """Return why Scrapy cannot run from ``scrapy_python``, or None if it can."""
    if not scrapy_python.exists():
        return (
            f"{scrapy_python} not found; create it with python3 -m venv "
            f"{scrapy_python.parent.parent} and pip install scrapy into it"
        )
    result = subprocess.run(
        [str(scrapy_python), "-c", "import scrapy"], capture_output=True, text=True
    )
    if result.returncode != 0:
        return f"Scrapy does not import in {scrapy_python}: {result.stderr.strip()}"
    return None


def read_output(path: Path) -> dict[str, Any]:
    """Count status-200 records and collect their canonical URLs."""
    pages = 0
    other_records = 0
    invalid_lines = 0
    urls: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            invalid_lines += 1
            continue
        if record.get("status") == 200:
            pages += 1
            urls.add(canonical_url(record["url"]))
        else:
            other_records += 1
    return {
        "pages": pages,
        "other_records": other_records,
        "invalid_lines": invalid_lines,
        "canonical_urls": sorted(urls),
    }


def server_cpu_seconds(server: Server) -> float:
    return read_cpu_seconds(find_tree(server.pid))


def run_case(
    case: Case, server: Server, args: argparse.Namespace, timeout_seconds: float
) -> dict[str, Any]:
    """Run one crawl against ``server`` and return its measured record."""
    start_url = server.base_url + "index.html"
    output = args.work_dir / f"{case.name}.jsonl"
    log_path = args.work_dir / f"{case.name}.log"
    output.unlink(missing_ok=True)
    if case.crawler == "ours":
        command = our_command(start_url, case.concurrency, output)
        cwd = REPO_ROOT
        environment = child_environment(args.crawler_env)
    else:
        command = scrapy_command(
            args.scrapy_python, start_url, case.concurrency, output
        )
        cwd = args.work_dir
        environment = child_environment()

    idle_busy_cores = wait_for_quiet(args.quiet_cores, args.quiet_wait_s)
    server_cpu_before = server_cpu_seconds(server)
    machine_busy_before = read_machine_busy_seconds()
    measurement = run_measured(
        command,
        cwd=cwd,
        env=environment,
        log_path=log_path,
        timeout_seconds=timeout_seconds,
    )
    machine_busy = read_machine_busy_seconds() - machine_busy_before
    server_cpu = server_cpu_seconds(server) - server_cpu_before
    record = build_record(case, command, measurement, server_cpu, output, log_path)
    # CPU time the machine spent on anything but this crawl and nginx, such as
    # other programs or the sampler, in cores busy on average during the run.
    other = machine_busy - measurement.cpu_seconds - server_cpu
    record["other_load_cores"] = max(other, 0.0) / measurement.wall_seconds
    record["load_before_run_cores"] = idle_busy_cores
    return record


def build_record(
    case: Case,
    command: list[str],
    measurement: Measurement,
    server_cpu: float,
    output: Path,
    log_path: Path,
) -> dict[str, Any]:
    """Combine a run's case, measurement and output counts into one record."""
    counts = read_output(output)
    ok = measurement.exit_code == 0 and not measurement.timed_out
    wall = measurement.wall_seconds
    return {
        **asdict(case),
        "status": "ok" if ok else "failed",
        "command": command,
        "exit_code": measurement.exit_code,
        "timed_out": measurement.timed_out,
        "wall_seconds": wall,
        "user_seconds": measurement.user_seconds,
        "system_seconds": measurement.system_seconds,
        "cpu_seconds": measurement.cpu_seconds,
        "cores_busy": measurement.cpu_seconds / wall,
        "pages_per_second": counts["pages"] / wall,
        "pages_per_cpu_second": counts["pages"] / max(measurement.cpu_seconds, 1e-9),
        "peak_tree_rss_mb": measurement.peak_tree_rss_bytes / 2**20,
        "max_process_rss_mb": measurement.max_process_rss_bytes / 2**20,
        "max_tree_processes": measurement.max_tree_processes,
        "server_cpu_seconds": server_cpu,
        "output": str(output),
        "log": str(log_path),
        **counts,
    }


def plan_pairs(args: argparse.Namespace, sites: Sequence[str]) -> list[list[Case]]:
    """List all runs as pairs (one per crawler), alternating which goes first.

    Rounds are the outer loop, so if the time budget runs out it is the last
    round that is lost for every case, not all rounds of the last case.
    """
    pairs = []
    for round_number in range(1, args.rounds + 1):
        for site_index, site in enumerate(sites):
            for level_index, concurrency in enumerate(args.concurrency):
                order = list(args.crawlers)
                if (round_number + site_index + level_index) % 2 == 0:
                    order.reverse()
                pairs.append(
                    [
                        Case(crawler, site, concurrency, round_number)
                        for crawler in order
                    ]
                )
    return pairs


def skipped(case: Case, reason: str) -> dict[str, Any]:
    return {**asdict(case), "status": "skipped", "reason": reason}


def warm_page_cache(root: Path) -> None:
    """Read every file under ``root`` once, so the first run reads no disk."""
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                while handle.read(1 << 20):
                    pass


def describe_run(record: dict[str, Any]) -> str:
    """Summarize one run record in a line of progress output."""
    if record["status"] == "skipped":
        return f"skipped: {record['reason']}"
    status = record["status"]
    if record["timed_out"]:
        status += f" (timed out, log {record['log']})"
    elif record["exit_code"] != 0:
        status += f" (exit code {record['exit_code']}, log {record['log']})"
    return (
        f"{status}: {record['pages']} pages in "
        f"{record['wall_seconds']:.1f} s ({record['pages_per_second']:.0f} pages/s), "
        f"CPU {record['cpu_seconds']:.1f} s, "
        f"peak RSS {record['peak_tree_rss_mb']:.0f} MB, "
        f"other load {record['other_load_cores']:.2f} cores"
    )


def budget_exceeded(
    pair: Sequence[Case],
    remaining: float,
    previous_walls: dict[tuple[str, str, int], float],
) -> bool:
    """Tell whether the pair's previous round would not fit in ``remaining``.

    A run cut short by the budget would be wasted, and running only one
    crawler of a pair would leave the rounds unmatched, so the whole pair is
    skipped instead.
    """
    expected = sum(
        previous_walls.get((case.site, case.crawler, case.concurrency), 0.0)
        for case in pair
    )
    return remaining <= 0 or remaining <= 1.2 * expected


def run_all(
    pairs: Sequence[Sequence[Case]],
    servers: dict[str, Server],
    args: argparse.Namespace,
    unavailable: dict[str, str],
    deadline: float,
) -> list[dict[str, Any]]:
    """Run every pair of cases against its site's server, within the budget."""
    records = []
    previous_walls: dict[tuple[str, str, int], float] = {}
    for pair in pairs:
        over_budget = budget_exceeded(pair, deadline - time.monotonic(), previous_walls)
        for case in pair:
            remaining = deadline - time.monotonic()
            if case.crawler in unavailable:
                record = skipped(case, unavailable[case.crawler])
            elif over_budget:
                record = skipped(case, f"time budget of {args.budget_s:.0f} s used up")
            else:
                # The pair was judged to fit, so the second run of it may
                # overrun the budget by up to BUDGET_GRACE_SECONDS.
                timeout = min(
                    args.run_timeout_s, max(remaining, 0.0) + BUDGET_GRACE_SECONDS
                )
                record = run_case(case, servers[case.site], args, timeout)
                key = (case.site, case.crawler, case.concurrency)
                previous_walls[key] = record["wall_seconds"]
            print(f"  {case.name}: {describe_run(record)}", flush=True)
            records.append(record)
    return records


def start_servers(
    stack: contextlib.ExitStack, roots: dict[str, Path]
) -> dict[str, Server]:
    """Start one nginx per site, each stopped when ``stack`` closes."""
    servers = {}
    for site, root in roots.items():
        warm_page_cache(root)
        server = stack.enter_context(serve(root))
        print(f"{site}: nginx PID {server.pid} serving {root} at {server.base_url}")
        servers[site] = server
    return servers


def package_version(python: Path | str, package: str) -> str:
    """Return a package's installed version as seen by another interpreter."""
    code = f"from importlib import metadata; print(metadata.version({package!r}))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "not installed"


def read_cpu_model() -> str:
    text = Path("/proc/cpuinfo").read_text()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def read_memory_gib() -> float:
    text = Path("/proc/meminfo").read_text()
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 2**20 if match else 0.0


def nginx_version() -> str:
    result = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True)
    return result.stderr.strip().removeprefix("nginx version: ")


def describe_environment(
    scrapy_python: Path, crawler_env: Sequence[str]
) -> dict[str, Any]:
    """Record the hardware and software versions the numbers depend on."""
    ours = {name: safe_version(name) for name in ("aiohttp", "lxml")}
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": read_cpu_model(),
        "memory_gib": round(read_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "crawler_packages": ours,
        "scrapy_venv_python": platform_python(scrapy_python),
        "scrapy_packages": {
            name: package_version(scrapy_python, name)
            for name in ("scrapy", "twisted", "lxml", "parsel")
        },
        "nginx": nginx_version(),
        "crawler_revision": git_revision(),
        "crawler_settings": {
            name: value
            for name, value in child_environment(crawler_env).items()
            if name.startswith("CRAWLER_")
        },
    }


def git_revision() -> str:
    """Describe the checked-out commit, marked dirty if files changed."""
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--broken"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return f"unknown ({result.stderr.strip() or 'git describe failed'})"
    return result.stdout.strip()


def safe_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def platform_python(python: Path) -> str:
    code = "import platform; print(platform.python_version())"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def site_roots(
    args: argparse.Namespace,
) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """Return each site's folder and, for the generated site, its expected URLs."""
    roots: dict[str, Path] = {}
    references: dict[str, list[str]] = {}
    if "generated" in args.sites:
        manifest = ensure_site(args.site_dir, DEFAULT_PAGES, DEFAULT_SEED)
        roots["generated"] = args.site_dir
        references["generated"] = manifest["expected_paths"]
    if "python-docs" in args.sites:
        if not (PYTHON_DOCS / "index.html").is_file():
            raise FileNotFoundError(
                f"{PYTHON_DOCS}/index.html not found; "
                "install the python3.11-doc package"
            )
        roots["python-docs"] = PYTHON_DOCS
    return roots, references


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    deadline = started + args.budget_s
    args.work_dir.mkdir(parents=True, exist_ok=True)

    unavailable: dict[str, str] = {}
    checks: dict[str, Callable[[], str | None]] = {
        "ours": check_our_crawler,
        "scrapy": lambda: check_scrapy(args.scrapy_python),
    }
    for crawler in args.crawlers:
        reason = checks[crawler]()
        if reason:
            unavailable[crawler] = reason
            print(f"warning: {crawler} runs skipped: {reason}", file=sys.stderr)

    environment = describe_environment(args.scrapy_python, args.crawler_env)
    roots, references = site_roots(args)
    pairs = plan_pairs(args, list(roots))
    with contextlib.ExitStack() as stack:
        servers = start_servers(stack, roots)
        records = run_all(pairs, servers, args, unavailable, deadline)

    summary = summarize(records)
    url_sets = url_set_report(records, references)
    # The URL lists served the checks above and would make the file megabytes.
    for record in records:
        record.pop("canonical_urls", None)
    results = {
        "started_at": started_at,
        "total_seconds": time.monotonic() - started,
        "arguments": {key: str(value) for key, value in vars(args).items()},
        "environment": environment,
        "summary": summary,
        "url_sets": url_sets,
        "runs": records,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")

    print()
    print(markdown_table(summary))
    print()
    print("\n".join(url_set_lines(url_sets)))
    print(f"\nresults written to {args.results} after {results['total_seconds']:.0f} s")
    failed = [record for record in records if record["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

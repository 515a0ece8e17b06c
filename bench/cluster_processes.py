"""Start and stop the processes of one bench/cluster.py run, each by its PID.

A run needs the site (bench/cluster_site.py), N ``crawler worker`` processes
and, for the MongoDB store, a FerretDB of its own. Each process writes its
output to a file in the run's folder. Readiness is read from that file, and
each wait is bounded in time. Every process is stopped with SIGTERM to its
own PID and, if it is still running after ``STOP_TIMEOUT_S``, SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from measure import read_cpu_seconds, read_machine_busy_seconds

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SITE_SCRIPT = BENCH_DIR / "cluster_site.py"
FERRETDB_SCRIPT = REPO_ROOT / "scripts" / "ferretdb.sh"
WORKER_SOURCES = tuple(f"127.0.5.{index}" for index in range(1, 9))
STOP_TIMEOUT_S = 15.0
READY_POLL_S = 0.05
# Seconds the site keeps serving if the benchmark never stops it.
SITE_MAX_SECONDS = 900.0
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
WORKER_STARTED = " started ("
"""Part of the message a worker logs once its claim loop runs (crawler/worker.py)."""


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class SiteProcess:
    """The running site: its process, output file and request log file."""

    process: subprocess.Popen[bytes]
    output_path: Path
    log_path: Path
    port: int = 0

    @property
    def label(self) -> str:
        return "site"

    def is_ready(self) -> bool:
        for line in self.output_path.read_text(errors="replace").splitlines():
            if line.startswith("ready "):
                self.port = int(line.split()[1])
                return True
        return False


@dataclass
class WorkerProcess:
    """One ``crawler worker`` process and the source address it fetches from."""

    index: int
    source: str
    process: subprocess.Popen[bytes]
    output_path: Path

    @property
    def label(self) -> str:
        return f"worker {self.index}"

    def is_ready(self) -> bool:
        return WORKER_STARTED in self.output_path.read_text(errors="replace")


Process = SiteProcess | WorkerProcess


def clean_environment() -> dict[str, str]:
    """Copy the environment without proxies and CRAWLER_ settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in PROXY_VARIABLES and not key.startswith("CRAWLER_")
    }


def start_site(
    root: Path,
    hosts: Sequence[str],
    latency_ms: float,
    folder: Path,
    args: argparse.Namespace,
) -> SiteProcess:
    """Start bench/cluster_site.py serving ``root`` on every host."""
    output_path = folder / "site.out"
    log_path = folder / "site-log.json"
    log_path.unlink(missing_ok=True)
    command = [
        sys.executable, str(SITE_SCRIPT), str(root),
        "--hosts", *hosts,
        "--latency-ms", str(latency_ms),
        "--log", str(log_path),
        "--max-seconds", str(min(SITE_MAX_SECONDS, args.run_timeout_s + 300)),
    ]  # fmt: skip
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=BENCH_DIR,
            env=clean_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return SiteProcess(process, output_path, log_path)


def start_workers(count: int, store_url: str, folder: Path) -> list[WorkerProcess]:
    """Start ``count`` workers on ``store_url``, each from its own source address."""
    workers = []
    for index in range(count):
        source = WORKER_SOURCES[index]
        environment = clean_environment()
        environment.update(
            CRAWLER_STORE_URL=store_url,
            CRAWLER_ALLOW_NETWORKS="127.0.0.0/8",
            CRAWLER_SOURCE_ADDRESS=source,
            CRAWLER_LOG_LEVEL="INFO",
            CRAWLER_SHUTDOWN_GRACE_S="2",
        )
        output_path = folder / f"worker-{index}.log"
        with output_path.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "crawler", "worker"],
                cwd=REPO_ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        workers.append(WorkerProcess(index, source, process, output_path))
    return workers


async def wait_until_ready(processes: Sequence[Process], timeout_s: float) -> None:
    """Wait until every process reports that it is ready.

    Raises RuntimeError when one exits first, TimeoutError after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    waiting = list(processes)
    while waiting:
        for process in list(waiting):
            if process.process.poll() is not None:
                raise RuntimeError(
                    f"{process.label} exited with status {process.process.returncode} "
                    f"before it was ready; {process.output_path} ends with:\n"
                    f"{tail(process.output_path)}"
                )
            if process.is_ready():
                waiting.remove(process)
        if not waiting:
            return
        if time.monotonic() >= deadline:
            labels = ", ".join(process.label for process in waiting)
            raise TimeoutError(f"{labels} not ready within {timeout_s:.0f} s")
        await asyncio.sleep(READY_POLL_S)


def stop_all(processes: Sequence[Process]) -> None:
    """Send SIGTERM to each process, then SIGKILL to any still running later."""
    for process in processes:
        if process.process.poll() is None:
            os.kill(process.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(
                f"warning: {process.label} (PID {process.process.pid}) ignored "
                f"SIGTERM for {STOP_TIMEOUT_S:.0f} s; sending SIGKILL",
                file=sys.stderr,
            )
            os.kill(process.process.pid, signal.SIGKILL)
            process.process.wait()


class FerretDB:
    """The benchmark's own FerretDB, run with scripts/ferretdb.sh."""

    VERSION = "1.24.2"
    """The version scripts/ferretdb.sh builds."""

    def __init__(self, run_dir: Path, port: int) -> None:
        self.run_dir = run_dir
        self.port = port
        self._started_here = False

    @property
    def pid(self) -> int | None:
        """Return the server's PID from its PID file, or None if it has none."""
        try:
            return int((self.run_dir / "ferretdb.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _script(self, command: str) -> None:
        environment = {
            **os.environ,
            "FERRETDB_RUN_DIR": str(self.run_dir),
            "FERRETDB_PORT": str(self.port),
        }
        result = subprocess.run(
            ["bash", str(FERRETDB_SCRIPT), command],
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"scripts/ferretdb.sh {command} failed: {result.stderr.strip()}"
            )

    def start(self) -> None:
        """Start the server, unless one with this run folder is running already."""
        pid = self.pid
        if pid is not None and Path(f"/proc/{pid}").exists():
            print(f"FerretDB already running in {self.run_dir} (PID {pid}); reusing it")
            return
        self._script("start")
        self._started_here = True
        print(
            f"FerretDB PID {self.pid} on 127.0.0.1:{self.port}, data in {self.run_dir}"
        )

    def stop(self) -> None:
        """Stop the server if this object started it."""
        if self._started_here:
            self._script("stop")
            self._started_here = False


def cpu_snapshot(
    workers: list[WorkerProcess], site: SiteProcess, ferretdb: FerretDB | None
) -> dict[str, float]:
    """Read the CPU seconds used so far by each process this run depends on."""
    snapshot = {f"worker-{w.index}": read_cpu_seconds({w.process.pid}) for w in workers}
    snapshot["site"] = read_cpu_seconds({site.process.pid})
    snapshot["bench"] = read_cpu_seconds({os.getpid()})
    if ferretdb is not None and ferretdb.pid is not None:
        snapshot["store_server"] = read_cpu_seconds({ferretdb.pid})
    snapshot["machine"] = read_machine_busy_seconds()
    return snapshot


def read_peak_rss_mb(pid: int) -> float | None:
    """Return the process's peak resident set size (VmHWM), or None if it exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None

"""Run one command and measure its wall time, CPU time and memory as a tree.

A crawler may hand parsing to worker processes, so measuring only the process
that was started would hide most of its cost. Both figures here cover the whole
process tree:

* CPU seconds come from ``os.wait4``. On Linux its resource usage is that of
  the child plus every descendant the child waited for, as a process pool does
  when it shuts down. A descendant that is never waited for is not counted.
* Peak RSS is the largest sum of resident memory over the tree, sampled from
  /proc every 50 ms. Pages that forked workers share with their parent are
  counted once per process, so the sum overstates shared memory, and a spike
  shorter than the interval can be missed. ``ru_maxrss`` from ``wait4`` is kept
  as well: the peak of the single largest process.

Linux only, because both figures read Linux interfaces (/proc, ``wait4``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_INTERVAL_SECONDS = 0.05
# Finding new descendants scans all of /proc, so it runs every 10th sample
# (every 0.5 s). Reading the memory of known processes runs every sample.
RESCAN_EVERY_SAMPLES = 10
STOP_GRACE_SECONDS = 5.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measurement:
    """Resource use of one finished (or stopped) command and its descendants."""

    exit_code: int
    timed_out: bool
    wall_seconds: float
    user_seconds: float
    system_seconds: float
    peak_tree_rss_bytes: int
    max_process_rss_bytes: int
    max_tree_processes: int

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds


def read_parent_pids() -> dict[int, int]:
    """Map every visible PID to its parent PID, read from /proc/PID/stat."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so split after it.
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(name)] = int(fields[1])
    return parents


def find_tree(root_pid: int) -> set[int]:
    """Return ``root_pid`` and all its current descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in read_parent_pids().items():
        children.setdefault(parent, []).append(pid)
    tree = {root_pid}
    pending = [root_pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in tree:
                tree.add(child)
                pending.append(child)
    return tree


def read_rss_bytes(pid: int) -> int:
    """Return the resident set size of ``pid``, or 0 if it has exited."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def read_cpu_seconds(pids: set[int]) -> float:
    """Return user plus system CPU seconds used so far by live ``pids``."""
    total_ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # Fields 14 and 15 of proc_pid_stat(5), utime and stime, counted from 1.
        total_ticks += int(fields[11]) + int(fields[12])
    return total_ticks / CLOCK_TICKS


def read_machine_busy_seconds() -> float:
    """Return CPU seconds all cores spent busy since boot, from /proc/stat."""
    with open("/proc/stat", "rb") as stat_file:
        fields = [int(value) for value in stat_file.readline().split()[1:]]
    # Columns: user nice system idle iowait irq softirq steal guest guest_nice.
    # Guest time is already part of user and nice, so it is not added again.
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def wait_for_quiet(
    max_busy_cores: float, max_wait_seconds: float, window_seconds: float = 1.0
) -> float:
    """Wait until the machine is idle enough, and return its last busy cores.

    Other work on the machine takes CPU from the crawl under test and makes it
    look slower. This samples machine-wide busy time over ``window_seconds``
    until it drops to ``max_busy_cores`` or ``max_wait_seconds`` pass.
    """
    deadline = time.monotonic() + max_wait_seconds
    while True:
        before = read_machine_busy_seconds()
        time.sleep(window_seconds)
        busy_cores = (read_machine_busy_seconds() - before) / window_seconds
        if busy_cores <= max_busy_cores or time.monotonic() >= deadline:
            return busy_cores


class TreeSampler:
    """Track the summed RSS of a process tree and its peak."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.pids: set[int] = {root_pid}
        self.samples = 0
        self.peak_rss_bytes = 0
        self.max_processes = 1

    def sample(self) -> None:
        if self.samples % RESCAN_EVERY_SAMPLES == 0:
            self.pids = find_tree(self.root_pid)
            self.max_processes = max(self.max_processes, len(self.pids))
        self.samples += 1
        total = sum(read_rss_bytes(pid) for pid in self.pids)
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)


def signal_group(process_group: int, signal_number: int) -> None:
    """Send a signal to the process group this module started, if it is alive."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process_group, signal_number)


def wait_measured(
    process: subprocess.Popen[bytes], timeout_seconds: float
) -> tuple[int, resource.struct_rusage, TreeSampler, bool]:
    """Sample the tree until the process exits, stopping it at the timeout."""
    sampler = TreeSampler(process.pid)
    deadline = time.monotonic() + timeout_seconds
    kill_at: float | None = None
    timed_out = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid == process.pid:
            return status, usage, sampler, timed_out
        sampler.sample()
        now = time.monotonic()
        if now >= deadline and kill_at is None:
            timed_out = True
            signal_group(process.pid, signal.SIGTERM)
            kill_at = now + STOP_GRACE_SECONDS
        elif kill_at is not None and now >= kill_at:
            signal_group(process.pid, signal.SIGKILL)
        time.sleep(SAMPLE_INTERVAL_SECONDS)


def run_measured(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_seconds: float,
) -> Measurement:
    """Run ``command`` in a new session, logging its output, and measure it.

    On timeout the whole process group gets SIGTERM, then SIGKILL after
    ``STOP_GRACE_SECONDS``. Members of the group still alive after the command
    exits are killed too, so no run outlives its measurement.
    """
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        status, usage, sampler, timed_out = wait_measured(process, timeout_seconds)
        wall_seconds = time.perf_counter() - started
    # wait4 reaped the child, so tell Popen the exit code it would have read.
    process.returncode = os.waitstatus_to_exitcode(status)
    signal_group(process.pid, signal.SIGKILL)

    return Measurement(
        exit_code=process.returncode,
        timed_out=timed_out,
        wall_seconds=wall_seconds,
        user_seconds=usage.ru_utime,
        system_seconds=usage.ru_stime,
        peak_tree_rss_bytes=sampler.peak_rss_bytes,
        # Linux reports ru_maxrss in kibibytes.
        max_process_rss_bytes=usage.ru_maxrss * 1024,
        max_tree_processes=sampler.max_processes,
    )

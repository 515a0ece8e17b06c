"""Start and stop the service as a real process for the end-to-end web tests.

Every server listens on a 127.x.y.z address, and every request the helpers
send goes to a server the test started. The helpers stop only the processes
they started, by PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import gunicorn.config  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_HOST = "127.0.0.1"
SITE_HOST = "127.0.0.2"
FINAL_STATES = frozenset({"completed", "failed", "cancelled"})
LOG_TAIL_CHARS = 4000


def free_port(host: str = SERVICE_HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    NOTE: another process may take the port before the server binds it. On
    a test machine that runs nothing else, this has not been seen to happen.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def service_env(database: Path, **extra: str) -> dict[str, str]:
    """Return this environment without CRAWLER_* and GUNICORN_* variables,
    plus a SQLite store at ``database``, loopback access and ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CRAWLER_", "GUNICORN_"))
    }
    env.update(
        CRAWLER_STORE_URL=f"sqlite:///{database}",
        CRAWLER_ALLOW_NETWORKS="127.0.0.0/8",
        CRAWLER_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def serve_command(port: int) -> list[str]:
    """Return the command that runs ``crawler serve`` on SERVICE_HOST:``port``."""
    return [
        sys.executable,
        "-m",
        "crawler",
        "serve",
        "--host",
        SERVICE_HOST,
        "--port",
        str(port),
    ]


def log_tail(log: Path) -> str:
    """Return the end of a process log, for failure messages."""
    if not log.exists():
        return "(no log written)"
    return log.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def start_process(
    command: Sequence[str], env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start ``command`` in the repository root, appending its output to ``log``."""
    with log.open("ab") as stream:
        return subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=stream,
        )


def wait_for_exit(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """Return the exit status, or None if the process still runs after ``timeout_s``."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """Send SIGTERM to the process by PID; return its exit status, or None if it
    still runs after ``timeout_s`` (then it is killed)."""
    if process.poll() is not None:
        return process.returncode
    os.kill(process.pid, signal.SIGTERM)
    status = wait_for_exit(process, timeout_s)
    if status is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    return status


@contextmanager
def running(
    command: Sequence[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` for the ``with`` block; kill it on the way out if it
    still runs, so that a failed test leaves no server behind."""
    process = start_process(command, env, log)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


async def wait_until_ready(
    base_url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float = 20.0,
) -> None:
    """Poll ``base_url``/healthz until it returns 200.

    Fails at once, with the log, if the process exits, and after
    ``timeout_s`` seconds if the server never returns 200.
    """
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            status = process.poll()
            if status is not None:
                raise AssertionError(
                    f"the server exited with status {status} before it served "
                    f"{base_url}/healthz; log:\n{log_tail(log)}"
                )
            try:
                async with session.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{base_url}/healthz did not return 200 within {timeout_s:g} s; "
                    f"log:\n{log_tail(log)}"
                )
            await asyncio.sleep(0.1)


async def create_job(
    session: aiohttp.ClientSession, base_url: str, options: Mapping[str, Any]
) -> str:
    """Create a job through the API and return its id."""
    async with session.post(f"{base_url}/api/v1/jobs", json=dict(options)) as response:
        body = await response.text()
        assert response.status == 201, f"creating the job failed: {body}"
        job: dict[str, Any] = await response.json()
    job_id: str = job["id"]
    return job_id


async def get_job(
    session: aiohttp.ClientSession, base_url: str, job_id: str
) -> dict[str, Any]:
    """Return the API's job object."""
    async with session.get(f"{base_url}/api/v1/jobs/{job_id}") as response:
        body = await response.text()
        assert response.status == 200, f"reading job {job_id} failed: {body}"
        job: dict[str, Any] = await response.json()
    return job


async def wait_for_final_state(
    session: aiohttp.ClientSession,
    base_url: str,
    job_id: str,
    log: Path,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Poll the job until it reaches a final state and return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = await get_job(session, base_url, job_id)
        if job["state"] in FINAL_STATES:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(
                f"job {job_id} did not finish within {timeout_s:g} s: {job}; "
                f"log:\n{log_tail(log)}"
            )
        await asyncio.sleep(0.1)


async def read_page_urls(
    session: aiohttp.ClientSession, base_url: str, job_id: str
) -> list[str]:
    """Return the final_url of every record in the job's JSON Lines export."""
    async with session.get(f"{base_url}/api/v1/jobs/{job_id}/pages.jsonl") as response:
        body = await response.text()
        assert response.status == 200, f"exporting job {job_id} failed: {body}"
    return [json.loads(line)["final_url"] for line in body.splitlines()]


def gunicorn_command(control_socket: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "web.serve:app_factory",
        "-c",
        "gunicorn.conf.py",
    ]
    # gunicorn 24 and later open a control socket under ~/.gunicorn by
    # default; the test keeps it in tmp_path so parallel runs do not clash.
    if "control_socket" in gunicorn.config.Config().settings:
        command += ["--control-socket", str(control_socket)]
    return command


def child_pids(parent: int) -> set[int]:
    """Return the PIDs of the processes whose parent is ``parent``."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so split after it.
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            children.add(int(stat.parent.name))
    return children

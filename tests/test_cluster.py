"""Three gunicorn replicas on one MongoDB-wire store, behind the project's nginx.

Every test starts its own FerretDB (so it may stop it), three replicas
(``gunicorn web.serve:app_factory -c gunicorn.conf.py``, one worker process
each, each with its own CRAWLER_SOURCE_ADDRESS so the test site can tell
which replica fetched a page) and Debian's nginx with the configuration in
nginx/, its upstream rendered for the loopback ports. The crawl target is a
four-host mesh site that logs every request with its client and times.

The tests check what users of several replicas rely on: every replica and
nginx give the same answer, one job's fetches spread over the replicas while
per-host limits hold in aggregate, and a job survives a replica killed with
SIGKILL and a database restart with the same pages as an undisturbed crawl,
none recorded twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.sites.mesh import MeshSite, max_overlap, min_start_gap, serve_mesh
from tests.test_nginx_config import render_config, running_nginx
from tests.web.processes import (
    REPO_ROOT,
    SERVICE_HOST,
    child_pids,
    free_port,
    gunicorn_command,
    log_tail,
)

MONGODB_URL = os.environ.get("MONGODB_URL", "").strip()
FERRETDB_SCRIPT = REPO_ROOT / "scripts" / "ferretdb.sh"
HOSTS = ("127.0.3.1", "127.0.3.2", "127.0.3.3", "127.0.3.4")
REPLICAS = 3
PAGES_PER_HOST = 12
HOST_DELAY_S = 0.25
TIMING_SLACK_S = 0.06
"""How much closer than the delay two starts may look in the site's log,
which stamps a request when it reaches the handler: transport work before
that varies by tens of milliseconds on a busy machine."""
LEASE_S = 3
START_TIMEOUT_S = 30.0
JOB_TIMEOUT_S = 90.0

pytestmark = pytest.mark.skipif(
    not MONGODB_URL and not os.environ.get("CI"),
    reason="needs FerretDB: run scripts/ferretdb.sh start and set MONGODB_URL",
)


# -- the database ---------------------------------------------------------------


@dataclass
class Database:
    """A FerretDB server of the test's own, started with scripts/ferretdb.sh."""

    run_dir: Path
    port: int

    @property
    def url(self) -> str:
        # Two seconds to find the server, so that an outage shows as a
        # StoreError within seconds instead of after the driver's 30 s.
        return (
            f"mongodb://{SERVICE_HOST}:{self.port}/cluster"
            "?serverSelectionTimeoutMS=2000"
        )

    def _script(self, command: str) -> None:
        env = {
            **os.environ,
            "FERRETDB_RUN_DIR": str(self.run_dir),
            "FERRETDB_PORT": str(self.port),
        }
        result = subprocess.run(
            ["bash", str(FERRETDB_SCRIPT), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, (
            f"scripts/ferretdb.sh {command} failed: {result.stderr}"
        )

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    if not MONGODB_URL:
        pytest.fail(
            "MONGODB_URL is required when CI is set (scripts/ferretdb.sh start)"
        )
    server = Database(tmp_path / "ferretdb", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the replicas and nginx ------------------------------------------------------


@dataclass
class Replica:
    index: int
    port: int
    source: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{SERVICE_HOST}:{self.port}"

    def kill(self) -> None:
        """SIGKILL the replica's gunicorn master and workers (its own group)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def worker_pids(self) -> set[int]:
        """Return the PIDs of the gunicorn master's children."""
        return child_pids(self.process.pid)


def start_replica(index: int, store_url: str, folder: Path) -> Replica:
    port = free_port()
    source = f"127.0.1.{index + 1}"
    log = folder / f"replica-{index}.log"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CRAWLER_", "GUNICORN_"))
    }
    env.update(
        CRAWLER_STORE_URL=store_url,
        CRAWLER_ALLOW_NETWORKS="127.0.0.0/8",
        CRAWLER_SOURCE_ADDRESS=source,
        CRAWLER_LEASE_S=str(LEASE_S),
        CRAWLER_SHUTDOWN_GRACE_S="2",
        CRAWLER_PARSE_MODE="inline",
        CRAWLER_LOG_LEVEL="INFO",
        GUNICORN_BIND=f"{SERVICE_HOST}:{port}",
        GUNICORN_WORKERS="1",
        GUNICORN_GRACEFUL_TIMEOUT="10",
    )
    command = gunicorn_command(folder / f"replica-{index}.ctl")
    with log.open("ab") as stream:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=stream,
            start_new_session=True,
        )
    return Replica(index, port, source, log, process)


def stop_replica(replica: Replica) -> None:
    if replica.process.poll() is not None:
        return
    replica.process.send_signal(signal.SIGTERM)
    try:
        replica.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(replica.process.pid, signal.SIGKILL)
        replica.process.wait(timeout=10)


@dataclass
class Cluster:
    replicas: list[Replica]
    nginx_url: str
    folder: Path

    def logs(self) -> str:
        parts = [f"replica {r.index} log:\n{log_tail(r.log)}" for r in self.replicas]
        parts.append(
            f"nginx error log:\n{log_tail(self.folder / 'nginx' / 'error.log')}"
        )
        return "\n".join(parts)


@pytest.fixture
async def cluster(database: Database, tmp_path: Path) -> AsyncIterator[Cluster]:
    with ExitStack() as exits:
        replicas = []
        for index in range(REPLICAS):
            replica = start_replica(index, database.url, tmp_path)
            exits.callback(stop_replica, replica)
            replicas.append(replica)

        nginx_port = free_port()
        config = render_config(
            tmp_path / "nginx",
            port=nginx_port,
            upstream_ports=[replica.port for replica in replicas],
        )
        exits.enter_context(running_nginx(config, nginx_port))
        started = Cluster(replicas, f"http://{SERVICE_HOST}:{nginx_port}", tmp_path)
        async with aiohttp.ClientSession() as session:
            for replica in replicas:
                await wait_for_status(session, f"{replica.url}/readyz", 200, started)
        yield started


@pytest.fixture
def mesh() -> Iterator[MeshSite]:
    with serve_mesh(HOSTS, pages_per_host=PAGES_PER_HOST, delay_s=0.05) as site:
        yield site


# -- API helpers ------------------------------------------------------------------


async def wait_for_status(
    session: aiohttp.ClientSession,
    url: str,
    status: int,
    cluster: Cluster,
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as response:
                last = response.status
                if response.status == status:
                    return
        except aiohttp.ClientError as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"GET {url} did not return {status} within {timeout_s:g} s (last: {last}); "
        f"{cluster.logs()}"
    )


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json(content_type=None)


async def create_job(
    session: aiohttp.ClientSession, base_url: str, mesh: MeshSite
) -> str:
    options = {
        "seeds": [mesh.seed()],
        "scope": "allowlist",
        "allowed_domains": list(HOSTS),
        "concurrency": 8,
        "per_host_concurrency": 1,
        "per_host_delay_s": HOST_DELAY_S,
        "max_retries": 0,
    }
    async with session.post(f"{base_url}/api/v1/jobs", json=options) as response:
        body = await response.json()
        assert response.status == 201, body
    job_id: str = body["id"]
    return job_id


async def wait_for_job(
    session: aiohttp.ClientSession,
    cluster: Cluster,
    job_id: str,
    *,
    states: frozenset[str] = frozenset({"completed", "failed", "cancelled"}),
    min_pages: int = 0,
) -> dict[str, Any]:
    """Poll the live replicas until the job is in ``states`` (and has at least
    ``min_pages`` records); errors while the store is down are retried."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    job: Any = None
    while time.monotonic() < deadline:
        for replica in cluster.replicas:
            if replica.process.poll() is not None:
                continue
            try:
                status, job = await get_json(
                    session, f"{replica.url}/api/v1/jobs/{job_id}"
                )
            except aiohttp.ClientError:
                continue
            if (
                status == 200
                and job["state"] in states
                and job["counters"]["pages"] >= min_pages
            ):
                return dict(job)
            break
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"job {job_id} did not get to {set(states)}: {job}; {cluster.logs()}"
    )


async def exported_urls(
    session: aiohttp.ClientSession, base_url: str, job_id: str
) -> list[str]:
    async with session.get(f"{base_url}/api/v1/jobs/{job_id}/pages.jsonl") as response:
        body = await response.text()
        assert response.status == 200, body
    return [json.loads(line)["url"] for line in body.splitlines()]


def assert_polite(mesh: MeshSite) -> None:
    """Assert that no host had two requests at once or two starts too close."""
    for host in HOSTS:
        on_host = [entry for entry in mesh.page_requests() if entry.host == host]
        assert max_overlap(on_host) == 1, f"{host} had two requests at once"
        gap = min_start_gap(on_host)
        assert gap is not None and gap >= HOST_DELAY_S - TIMING_SLACK_S, (host, gap)


# -- the tests --------------------------------------------------------------------


async def test_replicas_agree_and_share_one_job(
    cluster: Cluster, mesh: MeshSite
) -> None:
    async with aiohttp.ClientSession() as session:
        job_id = await create_job(session, cluster.replicas[0].url, mesh)
        done = await wait_for_job(session, cluster, job_id)
        assert done["state"] == "completed", done

        answers = {}
        exports = {}
        for base in [r.url for r in cluster.replicas] + [cluster.nginx_url]:
            status, job = await get_json(session, f"{base}/api/v1/jobs/{job_id}")
            assert status == 200, job
            answers[base] = job
            async with session.get(
                f"{base}/api/v1/jobs/{job_id}/pages.jsonl"
            ) as response:
                assert response.status == 200
                exports[base] = await response.read()

    assert len({json.dumps(job, sort_keys=True) for job in answers.values()}) == 1, (
        answers
    )
    assert len(set(exports.values())) == 1, "replicas exported different records"

    urls = [
        json.loads(line)["url"] for line in next(iter(exports.values())).splitlines()
    ]
    assert len(urls) == len(set(urls)), "a page was recorded twice"
    assert set(urls) == mesh.page_urls()

    requests = mesh.page_requests()
    replicas_used = {entry.client for entry in requests}
    assert replicas_used <= {r.source for r in cluster.replicas}
    assert len(replicas_used) > 1, "one replica did every fetch"
    assert len(requests) == len(mesh.page_urls()), "a page was fetched twice"
    assert_polite(mesh)


async def test_job_survives_replica_killed(cluster: Cluster, mesh: MeshSite) -> None:
    async with aiohttp.ClientSession() as session:
        job_id = await create_job(session, cluster.nginx_url, mesh)
        running = await wait_for_job(
            session, cluster, job_id, states=frozenset({"running"}), min_pages=8
        )
        holder_pid = int(running["worker"].rsplit("-", 2)[1])
        holder = next(r for r in cluster.replicas if holder_pid in r.worker_pids())
        holder.kill()

        done = await wait_for_job(session, cluster, job_id)
        survivor = next(r for r in cluster.replicas if r is not holder)
        killed_urls = await exported_urls(session, survivor.url, job_id)

        undisturbed_id = await create_job(session, survivor.url, mesh)
        undisturbed = await wait_for_job(session, cluster, undisturbed_id)
        undisturbed_urls = await exported_urls(session, survivor.url, undisturbed_id)

    assert done["state"] == "completed", done
    assert undisturbed["state"] == "completed", undisturbed
    assert len(killed_urls) == len(set(killed_urls)), "a page was recorded twice"
    assert set(killed_urls) == set(undisturbed_urls) == mesh.page_urls()
    others = {entry.client for entry in mesh.page_requests()} - {holder.source}
    assert others, "no other replica fetched a page"
    assert_polite(mesh)


async def test_job_survives_database_restart(
    cluster: Cluster, database: Database, mesh: MeshSite
) -> None:
    async with aiohttp.ClientSession() as session:
        job_id = await create_job(session, cluster.nginx_url, mesh)
        await wait_for_job(
            session, cluster, job_id, states=frozenset({"running"}), min_pages=8
        )

        database.stop()
        for replica in cluster.replicas:
            await wait_for_status(
                session, f"{replica.url}/readyz", 503, cluster, timeout_s=10
            )
        await asyncio.sleep(LEASE_S)
        database.start()
        for replica in cluster.replicas:
            await wait_for_status(session, f"{replica.url}/readyz", 200, cluster)

        done = await wait_for_job(session, cluster, job_id)
        urls = await exported_urls(session, cluster.nginx_url, job_id)

    assert done["state"] == "completed", done
    assert len(urls) == len(set(urls)), "a page was recorded twice"
    assert set(urls) == mesh.page_urls()
    assert_polite(mesh)

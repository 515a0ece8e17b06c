"""The nginx config in nginx/, run by Debian's nginx in front of real replicas.

The files are the ones a container loads. :func:`render_config` copies them
into a temporary prefix and changes only the lines that name container paths,
the listening address and the upstream's ``server`` line. It fails when one of
those lines is missing, so the rendering cannot drift from the files.

Most tests share one stack: two ``crawler serve`` replicas on loopback ports
and one SQLite file (only the first runs crawl jobs), with nginx in front. The
rate-limit tests send their bursts from their own loopback source addresses,
because nginx counts requests per client address and the other tests' requests
come from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import grp
import gzip
import http.client
import io
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from tests.sites.hostile import ServedApp, serve_app
from tests.sites.nginx import NGINX_BINARY, NginxUnavailableError, require_nginx_binary
from tests.sites.tree import create_tree_app, tree_paths
from tests.web.processes import (
    REPO_ROOT,
    SERVICE_HOST,
    SITE_HOST,
    free_port,
    log_tail,
    running,
    serve_command,
    service_env,
    terminate,
)

NGINX_CONFIG_DIR = REPO_ROOT / "nginx"
SYSTEM_MIME_TYPES = Path("/etc/nginx/mime.types")

# The container's values that render_config() replaces, as written in nginx/.
CONTAINER_USER = "user nginx;"
CONTAINER_PID = "pid /run/nginx.pid;"
CONTAINER_CACHE = "/var/cache/nginx/"
CONTAINER_CACHE_PATHS = 5
CONTAINER_LISTEN = "listen 80 default_server;"
COMPOSE_SERVER = re.compile(
    r"^(?P<indent>[ \t]*)server app:8080 resolve(?P<parameters>[^;]*);$", re.MULTILINE
)
RESOLVE_SUPPORT = (1, 27, 3)
"""The first nginx release whose upstream `server` takes the `resolve` parameter."""

SERVED_BY = "X-Served-By"
REQUEST_ID = "X-Request-Id"
CLIENT_REQUEST_ID = "nginx-test-1"
PROBLEM_TYPE = "application/problem+json"
BODY_LIMIT_BYTES = 1024 * 1024
RATE_LIMIT_BURST = 40
BURST_REQUESTS = 120
"""Requests a rate-limit test sends at once: three times the burst allowance."""
PAGES = 30
"""Pages of the tree site that the shared job crawls."""
START_TIMEOUT_S = 20.0
LOG_TIMEOUT_S = 5.0

# The upstream that responds in two steps, for the streaming tests.
FIRST_RECORD = b'{"record": 1}\n'
LAST_RECORD = b'{"record": 2}\n'
STEP_WAIT_S = 5.0
"""Seconds the stepping upstream waits for the test before its second write."""
FIRST_RECORD_WAIT_S = 2.0
"""Seconds the test waits for the first record before it lets the upstream go on."""


# -- rendering the config -------------------------------------------------------


def replace_exactly(text: str, old: str, new: str, *, count: int, source: str) -> str:
    """Replace ``old``, which must occur exactly ``count`` times in ``text``."""
    found = text.count(old)
    if found != count:
        raise AssertionError(
            f"nginx/{source} contains {old!r} {found} times, expected {count}; "
            "update render_config() together with the file"
        )
    return text.replace(old, new)


def worker_user_line() -> str:
    """Return the `user` line for a test nginx started by the current user.

    The image's `nginx` user does not exist on Debian. As root, nginx would
    otherwise run its workers as `nobody`, which cannot enter pytest's
    temporary folders (mode 0700). Unprivileged, nginx ignores `user`.
    """
    if os.geteuid() != 0:
        return "# user: not switched, the master runs unprivileged"
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return f"user {user} {group};"


def render_upstream(text: str, ports: Sequence[int] | None) -> str:
    """Replace the Compose `server` line with one loopback server per port.

    Each line keeps the Compose line's parameters except `resolve`. With
    ``ports`` None the file stays as Docker Compose uses it.
    """
    matches = COMPOSE_SERVER.findall(text)
    if len(matches) != 1:
        raise AssertionError(
            f"nginx/upstream.conf has {len(matches)} lines like "
            "'server app:8080 resolve ...;', expected 1; update render_upstream()"
        )
    if ports is None:
        return text

    def loopback_servers(match: re.Match[str]) -> str:
        indent, parameters = match["indent"], match["parameters"]
        return "\n".join(
            f"{indent}server {SERVICE_HOST}:{port}{parameters};" for port in ports
        )

    return COMPOSE_SERVER.sub(loopback_servers, text)


def render_config(
    prefix: Path, *, port: int, upstream_ports: Sequence[int] | None
) -> Path:
    """Copy nginx/ into ``prefix`` for a test nginx; return the main file's path.

    nginx listens on SERVICE_HOST:``port`` and proxies to SERVICE_HOST at
    ``upstream_ports`` (the Compose upstream when None). The pid file and the
    temporary folders move into ``prefix``. Relative includes resolve against
    the main file's folder, so the copies need no other change.
    """
    if not SYSTEM_MIME_TYPES.is_file():
        raise NginxUnavailableError(
            f"{SYSTEM_MIME_TYPES} not found: install the Debian package nginx-common"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "cache").mkdir(exist_ok=True)

    main = (NGINX_CONFIG_DIR / "nginx.conf").read_text(encoding="utf-8")
    main = replace_exactly(
        main, CONTAINER_USER, worker_user_line(), count=1, source="nginx.conf"
    )
    main = replace_exactly(
        main, CONTAINER_PID, f"pid {prefix}/nginx.pid;", count=1, source="nginx.conf"
    )
    main = replace_exactly(
        main,
        CONTAINER_CACHE,
        f"{prefix}/cache/",
        count=CONTAINER_CACHE_PATHS,
        source="nginx.conf",
    )

    site = (NGINX_CONFIG_DIR / "crawler.conf").read_text(encoding="utf-8")
    site = replace_exactly(
        site,
        CONTAINER_LISTEN,
        f"listen {SERVICE_HOST}:{port} default_server;",
        count=1,
        source="crawler.conf",
    )

    upstream = (NGINX_CONFIG_DIR / "upstream.conf").read_text(encoding="utf-8")
    upstream = render_upstream(upstream, upstream_ports)

    (prefix / "nginx.conf").write_text(main, encoding="utf-8")
    (prefix / "crawler.conf").write_text(site, encoding="utf-8")
    (prefix / "upstream.conf").write_text(upstream, encoding="utf-8")
    shutil.copyfile(SYSTEM_MIME_TYPES, prefix / "mime.types")
    return prefix / "nginx.conf"


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    """Run ``nginx -t`` on ``config`` with its folder as the prefix."""
    command = [str(NGINX_BINARY), "-t", "-p", f"{config.parent}/", "-c", str(config)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=30, check=False
    )


def nginx_version() -> tuple[int, ...]:
    """Return the version of /usr/sbin/nginx, for example (1, 22, 1)."""
    result = subprocess.run(
        [str(NGINX_BINARY), "-v"], capture_output=True, text=True, check=True
    )
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr)
    if match is None:
        raise AssertionError(f"nginx -v printed no version: {result.stderr!r}")
    return tuple(int(part) for part in match.groups())


# -- running nginx and the replicas -------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _nginx_installed() -> None:
    """Fail, rather than skip, without nginx: CI must run these tests."""
    try:
        require_nginx_binary()
    except NginxUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)


def wait_until_listening(
    process: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float
) -> None:
    """Return once SERVICE_HOST:``port`` accepts connections.

    Fails at once if ``process`` exits, and after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise AssertionError(
                f"the process exited with status {process.returncode} before "
                f"listening on port {port}; log:\n{log_tail(log)}"
            )
        try:
            with socket.create_connection((SERVICE_HOST, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"nothing listened on {SERVICE_HOST}:{port} within {timeout_s:g} s; "
                f"log:\n{log_tail(log)}"
            )
        time.sleep(0.05)


def wait_until_healthy(
    process: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float
) -> None:
    """Return once GET /healthz on SERVICE_HOST:``port`` returns 200.

    http.client connects to the given address only; it reads no proxy
    settings from the environment.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        wait_until_listening(process, port, log, max(0.0, deadline - time.monotonic()))
        connection = http.client.HTTPConnection(SERVICE_HOST, port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{SERVICE_HOST}:{port}/healthz did not return 200 within "
                f"{timeout_s:g} s; log:\n{log_tail(log)}"
            )
        time.sleep(0.1)


@contextmanager
def running_nginx(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run nginx on ``config`` in the foreground until the block ends.

    Its standard output (the access log) goes to access.log and its standard
    error (the error log) to error.log, both beside ``config``. nginx is
    stopped by its PID with SIGQUIT, or with SIGKILL to its own process group
    (the master and its workers) if it does not stop within 10 s.
    """
    prefix = config.parent
    command = [str(NGINX_BINARY), "-p", f"{prefix}/", "-c", str(config)]
    command += ["-g", "daemon off;"]
    with (
        (prefix / "access.log").open("ab") as access_log,
        (prefix / "error.log").open("ab") as error_log,
    ):
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=access_log,
            stderr=error_log,
            start_new_session=True,
        )
    try:
        wait_until_listening(process, port, prefix / "error.log", START_TIMEOUT_S)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@dataclass(frozen=True)
class Replica:
    """A ``crawler serve`` process behind nginx."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class Stack:
    """nginx at :attr:`url` in front of :attr:`replicas`; the first runs crawl jobs."""

    url: str
    replicas: tuple[Replica, ...]
    access_log: Path
    error_log: Path

    def logs(self) -> str:
        """Return the end of every log, for failure messages."""
        parts = [f"nginx error log:\n{log_tail(self.error_log)}"]
        parts += [f"replica {r.pid} log:\n{log_tail(r.log)}" for r in self.replicas]
        return "\n".join(parts)


@contextmanager
def running_stack(folder: Path) -> Iterator[Stack]:
    """Start two replicas on one SQLite file and nginx in front of them."""
    database = folder / "crawler.db"
    with ExitStack() as exits:
        replicas = []
        for index, run_worker in enumerate(("true", "false")):
            port = free_port()
            log = folder / f"replica-{index}.log"
            env = service_env(database, CRAWLER_RUN_WORKER=run_worker)
            process = exits.enter_context(running(serve_command(port), env, log))
            exits.callback(terminate, process, 20.0)
            replicas.append(Replica(process, f"http://{SERVICE_HOST}:{port}", log))
        for replica in replicas:
            port = int(replica.url.rsplit(":", 1)[1])
            wait_until_healthy(replica.process, port, replica.log, START_TIMEOUT_S)

        nginx_port = free_port()
        config = render_config(
            folder / "nginx",
            port=nginx_port,
            upstream_ports=[int(r.url.rsplit(":", 1)[1]) for r in replicas],
        )
        exits.enter_context(running_nginx(config, nginx_port))
        yield Stack(
            url=f"http://{SERVICE_HOST}:{nginx_port}",
            replicas=tuple(replicas),
            access_log=config.parent / "access.log",
            error_log=config.parent / "error.log",
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("nginx-stack")) as started:
        yield started


@pytest.fixture(scope="module")
def tree_site() -> Iterator[ServedApp]:
    with serve_app(create_tree_app(PAGES), SITE_HOST) as site:
        yield site


def request_json(
    url: str, method: str = "GET", body: Any = None
) -> tuple[int, dict[str, Any]]:
    """Send one request with http.client and return the status and JSON body."""
    parts = url.split("/", 3)
    host, port = parts[2].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, f"/{parts[3]}", body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def completed_job(stack: Stack, tree_site: ServedApp) -> str:
    """Create a job through nginx, wait until it is completed and return its id."""
    status, job = request_json(
        f"{stack.url}/api/v1/jobs",
        "POST",
        {"seeds": [tree_site.url("/page/0")], "max_pages": PAGES},
    )
    assert status == 201, f"creating the job through nginx failed: {job}"
    deadline = time.monotonic() + 60
    while job["state"] not in ("completed", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise AssertionError(f"the job did not finish: {job}\n{stack.logs()}")
        time.sleep(0.2)
        status, job = request_json(f"{stack.url}/api/v1/jobs/{job['id']}")
    assert job["state"] == "completed", f"{job}\n{stack.logs()}"
    job_id: str = job["id"]
    return job_id


# -- responses and logs -------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The parts of a response that the tests check."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> Answer:
    # aiohttp warns about large bytes bodies, and sends a file object's size
    # as Content-Length all the same.
    payload = None if data is None else io.BytesIO(data)
    async with session.request(method, url, headers=headers, data=payload) as response:
        body = await response.read()
        return Answer(response.status, response.headers, body)


def client_from(source_host: str) -> aiohttp.ClientSession:
    """Return a session whose connections come from loopback ``source_host``."""
    connector = aiohttp.TCPConnector(limit=0, local_addr=(source_host, 0))
    return aiohttp.ClientSession(connector=connector)


async def send_burst(stack: Stack, source_host: str, path: str) -> list[Answer]:
    """Send BURST_REQUESTS GETs of ``path`` at once from ``source_host``."""
    async with client_from(source_host) as session:
        return await asyncio.gather(
            *(
                fetch(session, "GET", f"{stack.url}{path}")
                for _ in range(BURST_REQUESTS)
            )
        )


async def wait_for_log_entry(stack: Stack, request_id: str) -> dict[str, Any]:
    """Return the access log entry with ``request_id``; nginx writes it after
    the response, so this polls for up to LOG_TIMEOUT_S."""
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while True:
        for line in stack.access_log.read_text(encoding="utf-8").splitlines():
            entry: dict[str, Any] = json.loads(line)
            if entry["request_id"] == request_id:
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no access log entry has request_id {request_id!r}; log:\n"
                f"{log_tail(stack.access_log)}"
            )
        await asyncio.sleep(0.05)


# -- the config as a file -------------------------------------------------------------


def test_config_passes_nginx_t(tmp_path: Path) -> None:
    config = render_config(tmp_path, port=free_port(), upstream_ports=[8081, 8082])

    result = check_config(config)

    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_compose_upstream_on_this_nginx(tmp_path: Path) -> None:
    """nginx -t on the files exactly as Docker Compose loads them.

    Before 1.27.3, nginx must reject the `resolve` parameter and nothing
    before it; the rest of upstream.conf is checked by the loopback rendering.
    """
    config = render_config(tmp_path, port=free_port(), upstream_ports=None)

    result = check_config(config)

    if nginx_version() >= RESOLVE_SUPPORT:
        # NOTE: this branch has never run, because Debian 12 and 13 ship
        # nginx 1.22 and 1.26.
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1, result.stderr
        assert 'invalid parameter "resolve"' in result.stderr
        assert "upstream.conf:" in result.stderr


def test_render_keeps_compose_parameters(tmp_path: Path) -> None:
    config = render_config(tmp_path, port=free_port(), upstream_ports=[8081, 8082])

    upstream = (config.parent / "upstream.conf").read_text(encoding="utf-8")
    servers = re.findall(r"^\s*(server .*;)$", upstream, re.MULTILINE)

    assert servers == [
        f"server {SERVICE_HOST}:8081 max_fails=1 fail_timeout=10s;",
        f"server {SERVICE_HOST}:8082 max_fails=1 fail_timeout=10s;",
    ]


# -- the stack: nginx in front of two replicas --------------------------------------


async def test_requests_reach_both_replicas(stack: Stack) -> None:
    served_by: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            answer = await fetch(session, "GET", f"{stack.url}/api/v1/jobs?limit=1")
            assert answer.status == 200, answer.body
            served_by.add(answer.headers[SERVED_BY])
            if len(served_by) == len(stack.replicas):
                break

    assert served_by == {str(replica.pid) for replica in stack.replicas}


async def test_job_identical_on_both_replicas(stack: Stack, completed_job: str) -> None:
    async with aiohttp.ClientSession() as session:
        answers = [
            await fetch(session, "GET", f"{replica.url}/api/v1/jobs/{completed_job}")
            for replica in stack.replicas
        ]

    first, second = answers
    assert first.status == 200, first.body
    assert second.status == 200, second.body
    assert first.json() == second.json()
    assert first.json()["id"] == completed_job


async def test_export_through_nginx(
    stack: Stack, completed_job: str, tree_site: ServedApp
) -> None:
    path = f"/api/v1/jobs/{completed_job}/pages.jsonl"
    async with aiohttp.ClientSession() as session:
        proxied = await fetch(session, "GET", f"{stack.url}{path}")
        direct = await fetch(session, "GET", f"{stack.replicas[1].url}{path}")

    assert proxied.status == 200, proxied.body
    assert proxied.headers["Content-Type"] == "application/jsonl; charset=utf-8"
    assert proxied.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in proxied.headers
    assert proxied.body == direct.body
    urls = {json.loads(line)["final_url"] for line in proxied.body.splitlines()}
    assert urls == {tree_site.url(page) for page in tree_paths(PAGES)}


async def test_export_gzipped_on_request(stack: Stack, completed_job: str) -> None:
    path = f"/api/v1/jobs/{completed_job}/pages.csv"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        proxied = await fetch(
            session, "GET", f"{stack.url}{path}", headers={"Accept-Encoding": "gzip"}
        )
        direct = await fetch(session, "GET", f"{stack.replicas[0].url}{path}")

    assert proxied.status == 200, proxied.body
    assert proxied.headers.get("Content-Encoding") == "gzip"
    assert gzip.decompress(proxied.body) == direct.body


async def test_large_json_gzipped(stack: Stack) -> None:
    path = "/api/v1/openapi.json"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        compressed = await fetch(
            session, "GET", f"{stack.url}{path}", headers={"Accept-Encoding": "gzip"}
        )
        plain = await fetch(
            session,
            "GET",
            f"{stack.url}{path}",
            headers={"Accept-Encoding": "identity"},
        )

    assert compressed.status == 200, compressed.body
    assert compressed.headers.get("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in compressed.headers.get("Vary", "")
    assert len(compressed.body) < len(plain.body) / 3
    assert gzip.decompress(compressed.body) == plain.body
    assert "Content-Encoding" not in plain.headers


async def test_rate_limit_returns_problem(stack: Stack) -> None:
    answers = await send_burst(stack, "127.0.0.5", "/api/v1/jobs?limit=1")

    passed = [answer for answer in answers if answer.status == 200]
    rejected = [answer for answer in answers if answer.status == 429]
    assert len(passed) + len(rejected) == BURST_REQUESTS, {a.status for a in answers}
    assert len(passed) >= RATE_LIMIT_BURST
    assert rejected, "no request was rate-limited"
    assert {a.headers["Content-Type"] for a in rejected} == {PROBLEM_TYPE}
    assert {a.headers.get("Retry-After") for a in rejected} == {"1"}
    assert not [a for a in rejected if SERVED_BY in a.headers], "a replica answered"
    problem = rejected[0].json()
    assert problem["type"] == "/problems/rate-limited"
    assert problem["status"] == 429
    assert problem["request_id"] == rejected[0].headers[REQUEST_ID]


async def test_healthz_never_limited(stack: Stack) -> None:
    source = "127.0.0.6"
    api, health = await asyncio.gather(
        send_burst(stack, source, "/api/v1/jobs?limit=1"),
        send_burst(stack, source, "/healthz"),
    )
    async with aiohttp.ClientSession() as session:
        other_client = await fetch(session, "GET", f"{stack.url}/api/v1/jobs?limit=1")

    assert 429 in {answer.status for answer in api}, "the API burst was not limited"
    assert {answer.status for answer in health} == {200}
    assert other_client.status == 200, "the limit should count per client address"


async def test_body_over_limit_gets_413(stack: Stack) -> None:
    def body_of(size: int) -> bytes:
        prefix, suffix = b'{"seeds": [], "padding": "', b'"}'
        return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix

    headers = {"Content-Type": "application/json"}
    url = f"{stack.url}/api/v1/jobs"
    async with aiohttp.ClientSession() as session:
        at_limit = await fetch(
            session, "POST", url, headers=headers, data=body_of(BODY_LIMIT_BYTES)
        )
        over_limit = await fetch(
            session, "POST", url, headers=headers, data=body_of(BODY_LIMIT_BYTES + 1)
        )

    assert at_limit.status != 413, at_limit.body
    assert SERVED_BY in at_limit.headers, "the replica should read a 1 MiB body"
    assert over_limit.status == 413, over_limit.body
    assert SERVED_BY not in over_limit.headers, "nginx should reject it alone"
    assert over_limit.headers["Content-Type"] == PROBLEM_TYPE
    assert over_limit.json()["type"] == "/problems/body-too-large"


async def test_same_origin_post_through_nginx(stack: Stack) -> None:
    """The app's same-origin check receives the Host header with its port."""
    body = json.dumps(
        {"urls": ["http://127.0.0.2/a"], "options": {"seeds": ["http://127.0.0.2/"]}}
    ).encode()
    headers = {"Content-Type": "application/json", "Origin": stack.url}
    async with aiohttp.ClientSession() as session:
        answer = await fetch(
            session,
            "POST",
            f"{stack.url}/api/v1/scope-check",
            headers=headers,
            data=body,
        )

    assert answer.status == 200, answer.body


async def test_access_log_names_request_and_replica(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        client_id_answer = await fetch(
            session,
            "GET",
            f"{stack.url}/healthz",
            headers={REQUEST_ID: CLIENT_REQUEST_ID},
        )
        generated_id_answer = await fetch(
            session, "GET", f"{stack.url}/healthz", headers={REQUEST_ID: 'bad "id"'}
        )

    assert client_id_answer.headers[REQUEST_ID] == CLIENT_REQUEST_ID
    assert re.fullmatch(r"[0-9a-f]{32}", generated_id_answer.headers[REQUEST_ID])
    entry = await wait_for_log_entry(stack, CLIENT_REQUEST_ID)
    assert entry["served_by"] == client_id_answer.headers[SERVED_BY]
    assert entry["upstream_addr"] in {r.url.split("//")[1] for r in stack.replicas}
    assert entry["status"] == 200
    generated_id_entry = await wait_for_log_entry(
        stack, generated_id_answer.headers[REQUEST_ID]
    )
    assert generated_id_entry["served_by"] == generated_id_answer.headers[SERVED_BY]


async def test_failover_when_replica_down(tmp_path: Path) -> None:
    scope_check = json.dumps(
        {"urls": ["http://127.0.0.2/a"], "options": {"seeds": ["http://127.0.0.2/"]}}
    ).encode()
    headers = {"Content-Type": "application/json"}
    with running_stack(tmp_path) as stack:
        survivor, stopped = stack.replicas
        exit_status = terminate(stopped.process, 20.0)
        async with aiohttp.ClientSession() as session:
            reads = [
                await fetch(session, "GET", f"{stack.url}/api/v1/jobs?limit=1")
                for _ in range(10)
            ]
            posts = [
                await fetch(
                    session,
                    "POST",
                    f"{stack.url}/api/v1/scope-check",
                    headers=headers,
                    data=scope_check,
                )
                for _ in range(5)
            ]
            terminate(survivor.process, 20.0)
            none_left = await fetch(session, "GET", f"{stack.url}/api/v1/jobs")

    assert exit_status == 0, log_tail(stopped.log)
    assert {answer.status for answer in reads} == {200}
    assert {answer.headers[SERVED_BY] for answer in reads} == {str(survivor.pid)}
    assert {answer.status for answer in posts} == {200}
    assert none_left.status == 502, none_left.body
    assert none_left.headers["Content-Type"] == PROBLEM_TYPE
    assert none_left.json()["type"] == "/problems/bad-gateway"


# -- streaming: an upstream that responds in two steps -------------------------------


def create_stepping_app(release: threading.Event) -> web.Application:
    """Build an app that writes FIRST_RECORD, waits for ``release`` (at most
    STEP_WAIT_S), then writes LAST_RECORD, on every path."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "application/jsonl; charset=utf-8"}
        )
        await response.prepare(request)
        await response.write(FIRST_RECORD)
        await asyncio.to_thread(release.wait, STEP_WAIT_S)
        await response.write(LAST_RECORD)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{path:.*}", respond)
    return app


@dataclass(frozen=True)
class SteppingProxy:
    url: str
    release: threading.Event


@pytest.fixture
def stepping_proxy(tmp_path: Path) -> Iterator[SteppingProxy]:
    """nginx with the project's config in front of the stepping app only."""
    release = threading.Event()
    try:
        with serve_app(create_stepping_app(release), SERVICE_HOST) as upstream:
            port = free_port()
            config = render_config(
                tmp_path / "nginx", port=port, upstream_ports=[upstream.port]
            )
            with running_nginx(config, port):
                yield SteppingProxy(f"http://{SERVICE_HOST}:{port}", release)
    finally:
        release.set()


@pytest.mark.parametrize(
    ("path", "streamed"),
    [
        ("/api/v1/jobs/j1/pages.jsonl", True),
        ("/api/v1/jobs/j1/pages.csv", True),
        ("/api/v1/jobs/j1", True),
        # A buffered location sends a gzipped response only when it ends,
        # which shows that this test can tell the two apart.
        ("/api/v1/jobs/j1/pages", False),
    ],
)
async def test_stream_passes_first_record(
    stepping_proxy: SteppingProxy, path: str, streamed: bool
) -> None:
    """The first record must reach the client while the upstream still waits.

    The upstream goes on when the test has the first record, or after
    FIRST_RECORD_WAIT_S, so a buffered response arrives whole after that.
    """
    release = stepping_proxy.release
    decompressor = zlib.decompressobj(wbits=31)
    received = b""
    timer = asyncio.get_running_loop().call_later(FIRST_RECORD_WAIT_S, release.set)
    try:
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.get(
                f"{stepping_proxy.url}{path}", headers={"Accept-Encoding": "gzip"}
            ) as response,
        ):
            encoding = response.headers.get("Content-Encoding")
            while FIRST_RECORD not in received:
                chunk = await response.content.readany()
                if not chunk:
                    break
                received += decompressor.decompress(chunk)
            first_record_early = not release.is_set()
            release.set()
            rest = await response.content.read()
    finally:
        timer.cancel()
    received += decompressor.decompress(rest) + decompressor.flush()

    assert encoding == "gzip"
    assert first_record_early is streamed
    assert received == FIRST_RECORD + LAST_RECORD

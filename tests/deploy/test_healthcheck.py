"""scripts/healthcheck.py, the image's HEALTHCHECK, against servers on loopback."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.files import HEALTHCHECK_SCRIPT
from tests.web.processes import (
    SERVICE_HOST,
    free_port,
    running,
    serve_command,
    service_env,
    wait_until_ready,
)


def run_probe(bind: str | None) -> subprocess.CompletedProcess[str]:
    """Run the probe as Docker does, with GUNICORN_BIND set to ``bind``."""
    env = {"PATH": "/usr/bin:/bin"}
    if bind is not None:
        env["GUNICORN_BIND"] = bind
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


class _FixedStatusHandler(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self) -> None:
        body = b'{"status": "starting"}'
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[int]:
    """Serve 503 for every GET on a loopback port; yield the port."""
    server = http.server.HTTPServer((SERVICE_HOST, 0), _FixedStatusHandler)
    thread = threading.Thread(target=server.serve_forever, name="status-503")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


async def test_probe_passes_on_running_service(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = service_env(tmp_path / "crawler.db")

    with running(serve_command(port), env, log) as process:
        await wait_until_ready(f"http://{SERVICE_HOST}:{port}", process, log)
        result = run_probe(f"0.0.0.0:{port}")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"healthy: GET /healthz on port {port} returned 200\n"


def test_probe_fails_on_error_status(failing_server: int) -> None:
    result = run_probe(f"0.0.0.0:{failing_server}")

    assert result.returncode == 1
    assert "/healthz returned 503" in result.stderr
    assert '"starting"' in result.stderr


def test_probe_fails_when_nothing_listens() -> None:
    result = run_probe(f"0.0.0.0:{free_port()}")

    assert result.returncode == 1
    assert "ConnectionRefusedError" in result.stderr


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("unix:/run/gunicorn.sock", "not a TCP address"),
        ("fd://3", "not a TCP address"),
        ("8080", "must look like 0.0.0.0:8080"),
        ("0.0.0.0:", "must look like 0.0.0.0:8080"),
        ("0.0.0.0:http", "must look like 0.0.0.0:8080"),
        ("0.0.0.0:70000", "must look like 0.0.0.0:8080"),
    ],
)
def test_probe_rejects_bind(bind: str, message: str) -> None:
    result = run_probe(bind)

    assert result.returncode == 1
    assert message in result.stderr


def test_probe_default_bind_matches_gunicorn() -> None:
    gunicorn_conf = (HEALTHCHECK_SCRIPT.parents[1] / "gunicorn.conf.py").read_text()
    probe = HEALTHCHECK_SCRIPT.read_text()

    assert 'os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")' in gunicorn_conf
    assert 'DEFAULT_BIND = "127.0.0.1:8080"' in probe

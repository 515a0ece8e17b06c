"""Debian's nginx as a child process that serves a folder on loopback for one test run.

A real web server checks the crawler against responses it did not write itself:
nginx's own status codes, directory redirects, keep-alive and MIME types. Its
access log, written as one JSON object per request, is the record of what the
crawler actually requested.

The server runs in the foreground (``daemon off``) with every path it writes (pid
file, logs, temp folders) inside a private prefix folder, so it needs no system
configuration and leaves nothing behind. It is stopped by its PID.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

NGINX_BINARY = Path("/usr/sbin/nginx")
NGINX_PACKAGE = "nginx-light"

_LOG_FORMAT = (
    '{"time":$msec,"request":"$request","method":"$request_method",'
    '"uri":"$request_uri","status":$status,"host":"$http_host",'
    '"user_agent":"$http_user_agent"}'
)

_MIME_TYPES = {
    "text/html": "html htm",
    "text/css": "css",
    "text/plain": "txt",
    "text/xml": "xml",
    "application/javascript": "js",
    "application/json": "json",
    "application/pdf": "pdf",
    "application/zip": "zip",
    "image/png": "png",
    "image/jpeg": "jpg jpeg",
    "image/gif": "gif",
    "image/svg+xml": "svg svgz",
    "image/x-icon": "ico",
    "font/woff": "woff",
    "font/woff2": "woff2",
}


class NginxUnavailableError(RuntimeError):
    """nginx, or a folder it should serve, is not installed on this machine."""


@dataclass(frozen=True)
class AccessLogEntry:
    """One line of the access log: a request that nginx received and handled."""

    time: float
    """Unix time in seconds when nginx wrote the entry (after the response)."""
    request: str
    """The request line, for example ``GET /index.html HTTP/1.1``."""
    method: str
    uri: str
    """The request target as sent, still percent-encoded, with its query."""
    status: int
    host: str
    """The Host header, empty when the client sent none."""
    user_agent: str

    @property
    def path(self) -> str:
        """The percent-decoded path of :attr:`uri`, without the query."""
        return unquote(urlsplit(self.uri).path)


@dataclass(frozen=True)
class NginxSite:
    """A running nginx that serves :attr:`root` at :attr:`base_url`."""

    base_url: str
    """``http://HOST:PORT/``, with a trailing slash."""
    host: str
    port: int
    root: Path
    access_log_path: Path
    error_log_path: Path
    pid: int

    def access_log_offset(self) -> int:
        """Return the access log's size in bytes, to read only later entries."""
        return self.access_log_path.stat().st_size

    def read_access_log(self, since: int = 0) -> list[AccessLogEntry]:
        """Parse the access log entries written after byte offset ``since``, in order.

        The fixture is shared by the whole test session, so a test passes the
        :meth:`access_log_offset` it took before crawling to see only its own
        requests.
        """
        with self.access_log_path.open("rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8")
        return [
            AccessLogEntry(**json.loads(line)) for line in text.splitlines() if line
        ]


def require_nginx_binary() -> None:
    """Raise NginxUnavailableError, naming the Debian package, when nginx is missing."""
    if not os.access(NGINX_BINARY, os.X_OK):
        raise NginxUnavailableError(
            f"{NGINX_BINARY} not found: install the Debian package {NGINX_PACKAGE} "
            f"(apt-get install {NGINX_PACKAGE})"
        )


def require_nginx(root: Path, *, root_package: str | None = None) -> None:
    """Raise NginxUnavailableError unless nginx and ``root``/index.html exist.

    The message names the Debian package to install: nginx's, or ``root_package``
    for the folder.
    """
    require_nginx_binary()
    if not (root / "index.html").is_file():
        hint = ""
        if root_package:
            hint = f": install the Debian package {root_package}"
            hint += f" (apt-get install {root_package})"
        raise NginxUnavailableError(f"{root}/index.html not found{hint}")


def render_config(prefix: Path, root: Path, host: str, port: int) -> str:
    """Return an nginx.conf serving ``root`` on ``host:port``, writing in ``prefix``."""
    user_line = ""
    if os.geteuid() == 0:
        # As root, nginx would switch its worker to "nobody", which cannot read
        # folders that only root can enter (pytest's tmp folders are mode 0700).
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        user_line = f"user {user} {group};\n"
    types = "\n".join(
        f"        {mime} {extensions};" for mime, extensions in _MIME_TYPES.items()
    )
    temp = prefix / "temp"
    return f"""\
{user_line}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;

events {{
    worker_connections 512;
}}

http {{
    types {{
{types}
    }}
    default_type application/octet-stream;

    log_format test_json escape=json '{_LOG_FORMAT}';
    access_log {prefix}/access.log test_json;

    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;

    sendfile on;
    keepalive_timeout 30s;
    server_tokens off;

    server {{
        listen {host}:{port};
        server_name _;
        root {root};
        index index.html;
    }}
}}
"""


@contextmanager
def run_nginx(
    root: Path,
    prefix: Path,
    *,
    host: str = "127.0.0.1",
    start_timeout_s: float = 10.0,
    stop_timeout_s: float = 10.0,
) -> Iterator[NginxSite]:
    """Start nginx serving ``root`` on ``host`` and a free port, and stop it on exit.

    ``prefix`` must be an empty or missing folder for nginx's own files. Raises
    NginxUnavailableError when nginx is missing, and RuntimeError with nginx's
    error log when it does not start.
    """
    if not host.startswith("127."):
        raise ValueError(f"test sites listen on loopback only, got host {host!r}")
    require_nginx_binary()

    (prefix / "temp").mkdir(parents=True, exist_ok=True)
    process, port = _start_on_free_port(
        root.resolve(), prefix.resolve(), host, start_timeout_s
    )
    try:
        yield NginxSite(
            base_url=f"http://{host}:{port}/",
            host=host,
            port=port,
            root=root,
            access_log_path=prefix / "access.log",
            error_log_path=prefix / "error.log",
            pid=process.pid,
        )
    finally:
        _stop(process, stop_timeout_s)


def _start_on_free_port(
    root: Path, prefix: Path, host: str, timeout_s: float
) -> tuple[subprocess.Popen[bytes], int]:
    """Start nginx, and try another port when the chosen one was taken meanwhile."""
    last_error = ""
    for _ in range(5):
        port = _free_port(host)
        config_path = prefix / "nginx.conf"
        config_path.write_text(
            render_config(prefix, root, host, port), encoding="utf-8"
        )
        command = [str(NGINX_BINARY), "-p", f"{prefix}/", "-c", str(config_path)]
        command += ["-e", str(prefix / "error.log"), "-g", "daemon off;"]
        with open(prefix / "stderr.log", "ab") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        if _wait_until_listening(process, host, port, timeout_s):
            return process, port

        _stop(process, 2.0)
        last_error = _read_error_log(prefix)
        if "Address already in use" not in last_error:
            break
    raise RuntimeError(
        f"nginx did not start on {host}; its error log reads:\n{last_error}"
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _wait_until_listening(
    process: subprocess.Popen[bytes], host: str, port: int, timeout_s: float
) -> bool:
    """Return True once ``host:port`` accepts connections, False if nginx exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Stop nginx with SIGQUIT, and kill its process group after ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # The group id is the master's PID (start_new_session), so this reaches
            # only the master and the worker that this helper started.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout_s)


def _read_error_log(prefix: Path) -> str:
    try:
        return (prefix / "error.log").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no error log was written)"

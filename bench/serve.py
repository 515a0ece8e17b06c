"""Serve a folder of static files with Debian's nginx on a loopback port.

The benchmark needs a server that never limits the crawlers it measures. nginx
serves static files from C with sendfile, and in the benchmark runs it used
under 1 s of CPU per crawl of the 5,000-page site (the "nginx CPU s" column of
bench/run.py's table). It runs here as an ordinary foreground child process:
``daemon off`` in the rendered ``bench/nginx.conf.template``, a ``-p`` prefix
folder under /tmp for its pid file, logs and temp folders, and no system
configuration changed. It is stopped by its own PID when the ``serve`` context
exits.

Run on its own to browse a site by hand, for a bounded time::

    python bench/serve.py /tmp/bench-site --seconds 300
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NGINX = Path("/usr/sbin/nginx")
TEMPLATE = Path(__file__).with_name("nginx.conf.template")
LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Server:
    """A running nginx: its master PID, base URL and prefix folder."""

    pid: int
    base_url: str
    prefix: Path


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    # NOTE: another process may take the port before nginx binds it. nginx
    # then exits with "Address already in use" and serve() raises that error.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def render_config(prefix: Path, root: Path, host: str, port: int, workers: int) -> str:
    """Fill the template's @WORD@ placeholders and check none is left."""
    values = {
        "@PREFIX@": str(prefix),
        "@ROOT@": str(root),
        "@HOST@": host,
        "@PORT@": str(port),
        "@WORKERS@": str(workers),
    }
    text = TEMPLATE.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise ValueError(f"{TEMPLATE} has placeholders render_config lacks: {leftover}")
    return text


def check_loopback(host: str) -> None:
    """Raise ValueError unless ``host`` is an IPv4 loopback address."""
    if not host.startswith("127."):
        raise ValueError(f"host {host!r} is not a 127.x.x.x loopback address")


def wait_until_listening(
    process: subprocess.Popen[bytes], host: str, port: int, prefix: Path
) -> None:
    """Poll the port until nginx accepts connections, or raise if it exited."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (prefix / "error.log").read_text(errors="replace")
            raise RuntimeError(
                f"nginx exited with status {process.returncode} before listening "
                f"on {host}:{port}; its error log says:\n{log}"
            )
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=0.5).close()
            return
        time.sleep(0.05)
    raise TimeoutError(
        f"nginx did not listen on {host}:{port} within "
        f"{START_TIMEOUT_SECONDS:.0f} s; see {prefix}/error.log"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop nginx by its master PID: SIGTERM, then SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def serve(root: Path, host: str = LOOPBACK, workers: int = 1) -> Iterator[Server]:
    """Run nginx serving ``root`` on a free port of ``host`` until the block ends."""
    check_loopback(host)
    if not NGINX.exists():
        raise FileNotFoundError(f"{NGINX} not found; install the nginx-light package")
    root = root.resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root}/index.html not found; nothing to crawl")

    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as prefix_name:
        prefix = Path(prefix_name)
        port = free_port(host)
        config = prefix / "nginx.conf"
        config.write_text(render_config(prefix, root, host, port, workers))
        command = [str(NGINX), "-p", str(prefix), "-c", str(config)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        try:
            wait_until_listening(process, host, port, prefix)
            yield Server(process.pid, f"http://{host}:{port}/", prefix)
        finally:
            stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a folder with nginx.")
    parser.add_argument("root", type=Path, help="folder to serve")
    parser.add_argument(
        "--host",
        default=LOOPBACK,
        help=f"loopback address to bind (default {LOOPBACK})",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=300.0,
        help="stop after this many seconds (default 300)",
    )
    args = parser.parse_args(argv)
    try:
        with serve(args.root, args.host) as server:
            print(
                f"serving {args.root} at {server.base_url} (nginx PID {server.pid}) "
                f"for {args.seconds:.0f} s; press Ctrl-C to stop sooner",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(args.seconds)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

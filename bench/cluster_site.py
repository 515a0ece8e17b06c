"""Serve one generated site on several loopback hosts, slowly, and log every request.

bench/cluster.py crawls this site with several worker processes. Every host
(one loopback address each, all on one port) serves the same pages from
bench/gen_site.py, kept in memory, and responds to each request after a fixed
latency, as a remote server would. ``/robots.txt`` is a 404, so every path is
allowed. A path that is not a page gets a 404 too, and the benchmark counts it.

The site keeps the numbers the benchmark checks:

* one log entry per request: host, path, the client's address (each worker
  binds its own with ``CRAWLER_SOURCE_ADDRESS``), status, and the wall-clock
  start and end of the handler;
* the most requests each host was handling at one moment, counted as they
  arrive. A request counts from the handler's start to its return, so a
  client that keeps to its per-host limit never looks over it.

On SIGTERM or SIGINT, or after ``--max-seconds``, it writes the log as JSON to
``--log`` and exits. It prints ``ready PORT`` on standard output once every
host listens::

    python bench/cluster_site.py /tmp/bench-cluster-site --hosts 127.0.4.1 \\
        127.0.4.2 --latency-ms 30 --log /tmp/site-log.json --max-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiohttp import web
from gen_site import read_manifest
from serve import free_port

ROBOTS_PATH = "/robots.txt"


@dataclass(frozen=True, slots=True)
class SiteRequest:
    """One request that a host handled, with wall-clock times in epoch seconds."""

    host: str
    path: str
    client: str
    status: int
    started: float
    finished: float


@dataclass
class SiteLog:
    """Every request the site handled, and the peak concurrency per host."""

    requests: list[SiteRequest] = field(default_factory=list)
    in_flight: Counter[str] = field(default_factory=Counter)
    peak_in_flight: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, object]:
        return {
            "peak_in_flight": dict(self.peak_in_flight),
            "requests": [asdict(entry) for entry in self.requests],
        }


def load_pages(root: Path) -> dict[str, bytes]:
    """Read every page that the manifest lists, by site path without query."""
    manifest = read_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"{root}/manifest.json not found; run gen_site.py")
    pages: dict[str, bytes] = {}
    for path in manifest["expected_paths"]:
        plain = path.split("?", 1)[0]
        pages[plain] = (root / plain.lstrip("/")).read_bytes()
    return pages


def create_app(host: str, pages: dict[str, bytes], latency_s: float, log: SiteLog):
    """Build the application of one host, logging into the shared ``log``."""

    async def handle(request: web.Request) -> web.Response:
        started = time.time()
        log.in_flight[host] += 1
        log.peak_in_flight[host] = max(log.peak_in_flight[host], log.in_flight[host])
        status = 404
        try:
            await asyncio.sleep(latency_s)
            body = pages.get(request.path)
            if body is None:
                return web.Response(status=404, text="not found\n")
            status = 200
            return web.Response(body=body, content_type="text/html", charset="utf-8")
        finally:
            log.in_flight[host] -= 1
            peer = (
                request.transport.get_extra_info("peername")
                if request.transport
                else None
            )
            log.requests.append(
                SiteRequest(
                    host=host,
                    path=request.path_qs,
                    client=str(peer[0]) if peer else "",
                    status=status,
                    started=started,
                    finished=time.time(),
                )
            )

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    return app


def check_loopback(hosts: list[str]) -> None:
    """Raise ValueError unless every host is an IPv4 loopback address."""
    for host in hosts:
        if not host.startswith("127."):
            raise ValueError(f"host {host!r} is not a 127.x.x.x loopback address")


async def serve(args: argparse.Namespace) -> SiteLog:
    """Serve every host until a signal arrives or ``args.max_seconds`` pass."""
    pages = load_pages(args.root)
    log = SiteLog()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    port = args.port or free_port(args.hosts[0])
    runners = []
    try:
        for host in args.hosts:
            app = create_app(host, pages, args.latency_ms / 1000, log)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, port).start()
        print(f"ready {port}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.max_seconds)
    finally:
        for runner in runners:
            await runner.cleanup()
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder made by bench/gen_site.py")
    parser.add_argument(
        "--hosts", nargs="+", required=True, help="loopback addresses to serve on"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port on every host (default: a free one)"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=30.0,
        help="milliseconds each request waits before its response (default 30)",
    )
    parser.add_argument(
        "--log", type=Path, required=True, help="JSON file the log is written to"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=600.0,
        help="stop after this many seconds if no signal came (default 600)",
    )
    args = parser.parse_args(argv)
    try:
        check_loopback(args.hosts)
        log = asyncio.run(serve(args))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.log.write_text(json.dumps(log.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

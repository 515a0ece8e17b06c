"""Tests for the ``crawler`` command, run as ``python -m crawler`` subprocesses.

The crawled sites are aiohttp servers on 127.0.0.1 that run in the test's event
loop while the subprocess crawls them.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

REPO_ROOT = Path(__file__).resolve().parents[1]
SEED = "http://seed.invalid/"

SMALL_SITE = {
    "/": ("Home", ["/a", "/b"]),
    "/a": ("Page A", ["/c", "/"]),
    "/b": ("Page B", ["/c"]),
    "/c": ("Page C, the last", []),
}
TITLES = {title for title, _ in SMALL_SITE.values()}


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


def clean_env(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """Return the environment without CRAWLER_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    env.update(extra)
    return env


async def run_crawler(
    *args: str, env: Mapping[str, str] = {}, timeout_s: float = 30.0
) -> Completed:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        *args,
        cwd=REPO_ROOT,
        env=clean_env(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())


def page_html(title: str, links: list[str]) -> str:
    anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
    return f"<!doctype html><title>{title}</title><body>{anchors}</body>"


async def serve_small_site(aiohttp_server: AiohttpServer) -> tuple[str, list[str]]:
    requested: list[str] = []

    async def page(request: web.Request) -> web.Response:
        requested.append(request.path)
        title, links = SMALL_SITE[request.path]
        return web.Response(text=page_html(title, links), content_type="text/html")

    app = web.Application()
    for path in SMALL_SITE:
        app.router.add_get(path, page)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/")), requested


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# Help and usage errors

# (args, environment, flag the message must name) for each invalid command line.
USAGE_ERRORS: dict[str, tuple[list[str], dict[str, str], str]] = {
    "max-pages-zero": (["--max-pages", "0", SEED], {}, "--max-pages"),
    "max-pages-text": (["--max-pages", "ten", SEED], {}, "--max-pages"),
    "scope": (["--scope", "nope", SEED], {}, "--scope"),
    "select": (["--select", "bad", SEED], {}, "--select"),
    "select-all": (["--select-all", "bad", SEED], {}, "--select-all"),
    "select-duplicate": (
        ["--select", "a=p", "--select", "a=div", SEED],
        {},
        "--select",
    ),
    "include": (["--include", "(", SEED], {}, "--include"),
    "exclude": (["--exclude", "[", SEED], {}, "--exclude"),
    "allow-network": (["--allow-network", "nope", SEED], {}, "--allow-network"),
    "allowlist": (["--scope", "allowlist", SEED], {}, "--allowed-domain"),
    "allowed-domain": (
        ["--allowed-domain", "http://x.invalid/", SEED],
        {},
        "--allowed-domain",
    ),
    "sitemap": (
        ["--sitemap", "ftp://files.invalid/sitemap.xml", SEED],
        {},
        "--sitemap",
    ),
    "user-agent": (["--user-agent", "", SEED], {}, "--user-agent"),
    "ftp-seed": (["ftp://files.invalid/"], {}, "URL"),
    "no-seeds": ([], {}, "URL"),
    "parse-mode-env": ([SEED], {"CRAWLER_PARSE_MODE": "fast"}, "CRAWLER_PARSE_MODE"),
    "log-level-env": ([SEED], {"CRAWLER_LOG_LEVEL": "loud"}, "CRAWLER_LOG_LEVEL"),
}


@pytest.fixture(scope="module")
def usage_results() -> dict[str, Completed]:
    """Run the USAGE_ERRORS command lines in parallel, since each imports for ~0.5 s."""
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "crawler", "crawl", *args],
            cwd=REPO_ROOT,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, env, _) in USAGE_ERRORS.items()
    }
    results: dict[str, Completed] = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=60)
            results[name] = Completed(process.returncode, stdout, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_cli_usage_error(usage_results: dict[str, Completed], case: str) -> None:
    result = usage_results[case]
    flag = USAGE_ERRORS[case][2]

    assert result.returncode == 2
    assert f"{flag}:" in result.stderr or f"argument {flag}:" in result.stderr
    assert result.stdout == ""


def test_cli_usage_error_message(usage_results: dict[str, Completed]) -> None:
    stderr = usage_results["max-pages-zero"].stderr

    assert stderr.startswith("crawler crawl: error: --max-pages: ")
    assert "got 0" in stderr


def test_cli_bad_env_message(usage_results: dict[str, Completed]) -> None:
    assert "'fast'" in usage_results["parse-mode-env"].stderr


async def test_cli_help() -> None:
    result = await run_crawler("crawl", "--help")

    assert result.returncode == 0
    assert "--max-pages" in result.stdout
    assert "--allow-network" in result.stdout


async def test_cli_no_command() -> None:
    result = await run_crawler()

    assert result.returncode == 2
    assert "COMMAND" in result.stderr


async def test_cli_unwritable_output(tmp_path: Path) -> None:
    output = tmp_path / "missing-dir" / "out.jsonl"

    result = await run_crawler("crawl", "-o", str(output), SEED)

    assert result.returncode == 1
    assert "cannot write" in result.stderr
    assert str(output) in result.stderr


# Crawls of a local site


async def test_cli_crawl_json_lines(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    seed, requested = await serve_small_site(aiohttp_server)
    output = tmp_path / "out.jsonl"

    result = await run_crawler(
        "crawl", "--allow-network", "127.0.0.0/8", "-o", str(output), seed
    )
    records = read_json_lines(output)
    site = seed.rstrip("/")

    assert result.returncode == 0, result.stderr
    assert len(records) == len(SMALL_SITE)
    assert {r["final_url"] for r in records} == {site + path for path in SMALL_SITE}
    assert {r["title"] for r in records} == TITLES
    assert all(r["status"] == 200 for r in records)
    assert all(r["error"] is None for r in records)
    assert sorted(requested) == sorted(SMALL_SITE)
    assert "completed" in result.stderr


async def test_cli_crawl_csv(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    seed, _ = await serve_small_site(aiohttp_server)
    output = tmp_path / "out.csv"

    result = await run_crawler(
        "crawl",
        "--allow-network",
        "127.0.0.0/8",
        "--select",
        "heading=title",
        "-o",
        str(output),
        seed,
    )
    rows = list(csv.DictReader(io.StringIO(output.read_text(encoding="utf-8"))))

    assert result.returncode == 0, result.stderr
    assert output.read_text(encoding="utf-8").startswith("url,final_url,status,")
    assert len(rows) == len(SMALL_SITE)
    assert {row["title"] for row in rows} == TITLES
    assert {row["field.heading"] for row in rows} == TITLES
    assert {row["status"] for row in rows} == {"200"}


async def test_cli_crawl_stdout(aiohttp_server: AiohttpServer) -> None:
    seed, _ = await serve_small_site(aiohttp_server)

    result = await run_crawler(
        "crawl", "--allow-network", "127.0.0.0/8", "--max-pages", "1", seed
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]

    assert result.returncode == 0, result.stderr
    assert len(records) == 1
    assert records[0]["title"] == "Home"


async def test_cli_allow_network_from_env(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    seed, _ = await serve_small_site(aiohttp_server)
    output = tmp_path / "out.jsonl"

    result = await run_crawler(
        "crawl",
        "-o",
        str(output),
        seed,
        env={"CRAWLER_ALLOW_NETWORKS": "127.0.0.0/8"},
    )

    assert result.returncode == 0, result.stderr
    assert len(read_json_lines(output)) == len(SMALL_SITE)


async def test_cli_blocked_address_without_robots(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    seed, requested = await serve_small_site(aiohttp_server)
    output = tmp_path / "out.jsonl"

    result = await run_crawler("crawl", "--no-obey-robots", "-o", str(output), seed)
    records = read_json_lines(output)

    assert result.returncode == 0, result.stderr
    assert len(records) == 1
    assert records[0]["error"]["kind"] == "blocked_address"
    assert requested == []


async def test_cli_blocked_address_with_robots(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    seed, requested = await serve_small_site(aiohttp_server)
    output = tmp_path / "out.jsonl"

    result = await run_crawler("crawl", "-o", str(output), seed)
    records = read_json_lines(output)

    # The guard blocks the robots.txt request first, and the record names the guard.
    assert result.returncode == 0, result.stderr
    assert len(records) == 1
    assert records[0]["error"]["kind"] == "blocked_address"
    assert "blocked by the address guard" in records[0]["error"]["message"]
    assert requested == []


# Ctrl-C


async def serve_slow_site(aiohttp_server: AiohttpServer) -> str:
    """Serve an endless tree of pages that each take 0.5 s and link to 10 more."""

    async def page(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        number = int(request.match_info.get("n", "0"))
        links = [f"/p/{number * 10 + k}" for k in range(1, 11)]
        return web.Response(
            text=page_html(f"Page {number}", links), content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/p/{n}", page)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/"))


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_for_lines(path: Path, count: int, polls: int) -> None:
    """Poll ``path`` every 0.05 s, up to ``polls`` times, for ``count`` lines."""
    for _ in range(polls):
        if await asyncio.to_thread(count_lines, path) >= count:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{path} has fewer than {count} lines after {polls} polls")


async def test_cli_sigint_keeps_complete_records(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    seed = await serve_slow_site(aiohttp_server)
    output = tmp_path / "out.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crawler",
        "crawl",
        "--allow-network",
        "127.0.0.0/8",
        "--concurrency",
        "4",
        "--per-host-concurrency",
        "4",
        "-o",
        str(output),
        seed,
        cwd=REPO_ROOT,
        env=clean_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for_lines(output, 2, polls=400)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    text = output.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines()]
    urls = [record["url"] for record in records]

    assert process.returncode == 130
    assert "SIGINT received" in stderr.decode()
    assert text.endswith("\n")
    assert len(records) >= 2
    assert len(urls) == len(set(urls))


async def test_cli_output_failure_stops_crawl(aiohttp_server: AiohttpServer) -> None:
    seed, requested = await serve_small_site(aiohttp_server)

    result = await run_crawler(
        "crawl", "--allow-network", "127.0.0.0/8", "-o", "/dev/full", seed
    )

    assert result.returncode == 1
    assert "writing the output failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(requested) < len(SMALL_SITE)


async def test_cli_broken_pipe_exits_quietly(aiohttp_server: AiohttpServer) -> None:
    seed, _requested = await serve_small_site(aiohttp_server)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "crawler",
            "crawl",
            "--allow-network",
            "127.0.0.0/8",
            seed,
            cwd=REPO_ROOT,
            env=clean_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    async with asyncio.timeout(30):
        _stdout, stderr = await process.communicate()

    assert process.returncode == 1
    assert b"Broken pipe" in stderr
    assert b"Traceback" not in stderr

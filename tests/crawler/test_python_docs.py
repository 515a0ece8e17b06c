"""End-to-end crawl of Debian's Python 3.11 HTML docs, served by nginx on loopback.

The docs are over 500 real pages with relative links, fragments and links to
other hosts. The expected result does not come from the crawler: the test walks
the same files on disk with the standard library's HTML parser and compares. The
crawl runs through the ``crawler`` command in a subprocess, as a user would run
it, and nginx's access log shows every request the crawler made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.sites.docs_walk import SiteWalk, walk_site
from tests.sites.nginx import NginxSite

CRAWL_TIMEOUT_S = 300


def _site_path(url: str) -> str:
    return unquote(urlsplit(url).path)


def _read_records(output: Path) -> list[dict[str, Any]]:
    lines = output.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def test_walk_resolves_links(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "sub dir").mkdir(parents=True)
    (site / "index.html").write_text(
        '<a href="sub%20dir/page.html?x=1#top">page</a>'
        '<a href="https://other.invalid/away.html">other host</a>'
        '<a href="../../outside.html">above the root</a>'
        '<a href=" notes.txt ">text file</a>'
        '<a href="gone.html">missing</a>',
        encoding="utf-8",
    )
    (site / "sub dir" / "page.html").write_text(
        '<base href="/sub%20dir/deeper/"><a href="../based.html">based</a>',
        encoding="utf-8",
    )
    (site / "sub dir" / "based.html").write_text("no links", encoding="utf-8")
    (site / "notes.txt").write_text("text", encoding="utf-8")
    (tmp_path / "outside.html").write_text("outside", encoding="utf-8")

    walk = walk_site(site)

    assert walk.pages == {"/index.html", "/sub dir/page.html", "/sub dir/based.html"}
    assert walk.broken_links == {"/gone.html", "/outside.html"}
    assert walk.linked_files == {"/notes.txt"}


def test_walk_finds_docs_pages(docs_walk: SiteWalk) -> None:
    assert "/index.html" in docs_walk.pages
    assert "/library/os.html" in docs_walk.pages
    assert "/tutorial/index.html" in docs_walk.pages
    assert len(docs_walk.pages) > 400


def test_crawl_python_docs(
    python_docs_site: NginxSite, docs_walk: SiteWalk, tmp_path: Path
) -> None:
    walk = docs_walk
    output = tmp_path / "docs.jsonl"
    log_offset = python_docs_site.access_log_offset()
    site_host = f"{python_docs_site.host}:{python_docs_site.port}"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "crawler",
            "crawl",
            f"{python_docs_site.base_url}index.html",
            "--max-pages",
            "5000",
            "--max-depth",
            "100",
            "--concurrency",
            "16",
            "--allow-network",
            "127.0.0.0/8",
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=CRAWL_TIMEOUT_S,
        check=False,
    )
    records = _read_records(output)
    access_log = python_docs_site.read_access_log(since=log_offset)

    assert result.returncode == 0, result.stderr[-4000:]

    final_urls = Counter(record["final_url"] for record in records)
    assert sorted(url for url, count in final_urls.items() if count > 1) == []
    assert {urlsplit(url).netloc for url in final_urls} == {site_host}

    records_by_path = {_site_path(record["final_url"]): record for record in records}
    pages = {
        path
        for path, record in records_by_path.items()
        if record["status"] == 200
        and record["error"] is None
        and (record["content_type"] or "").startswith("text/html")
    }
    assert sorted(walk.pages - pages) == []
    assert sorted(pages - walk.pages) == []
    assert len(pages) == len(walk.pages)

    # The crawler learns a linked file's type only by fetching it, so linked files
    # that are not HTML may have records too, but nothing that no page links to.
    other_paths = set(records_by_path) - pages
    assert sorted(other_paths - walk.broken_links - walk.linked_files) == []
    for path in walk.broken_links:
        assert records_by_path[path]["status"] == 404, path

    requested = Counter(entry.path for entry in access_log)
    outside_site = sorted(
        path
        for path in set(requested) - {"/robots.txt"} - walk.broken_links
        if not (python_docs_site.root / path.lstrip("/")).is_file()
    )
    assert outside_site == []
    assert {path for path in requested if path.endswith(".html")} == (
        walk.pages | walk.broken_links
    )
    assert sorted(path for path, count in requested.items() if count > 1) == []
    assert {entry.method for entry in access_log} == {"GET"}
    assert {entry.host for entry in access_log} == {site_host}

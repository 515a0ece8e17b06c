"""Types and record factories shared by the web tests."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from crawler.records import Links, PageError, PageRecord

Client = TestClient[web.Request, web.Application]

SEED = "http://127.0.0.1:9/"
"""A seed for jobs that no test crawls: port 9 (discard) on loopback."""


def make_record(
    path: str,
    *,
    status: int | None = 200,
    depth: int = 1,
    title: str | None = None,
    error: PageError | None = None,
    fields: dict[str, str | list[str] | None] | None = None,
) -> PageRecord:
    url = f"{SEED}{path}"
    return PageRecord(
        url=url,
        final_url=url,
        key=url,
        depth=depth,
        referrer=SEED,
        fetched_at="2026-01-01T00:00:00.000Z",
        status=status,
        elapsed_ms=12,
        content_type="text/html" if status is not None else None,
        title=title,
        links=Links(count=2, in_scope=(f"{SEED}a", f"{SEED}b")),
        fields=fields or {},
        error=error,
    )

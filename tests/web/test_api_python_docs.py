"""The whole service path on a real site: API, store, worker, export.

A job created through the API crawls Debian's Python docs served by nginx; the
app's own worker runs it. The exported records must hold every page of the
independent on-disk walk exactly once, as the CLI crawl does.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aiohttp import web

from crawler.guard import parse_networks
from crawler.settings import Settings
from tests.sites.docs_walk import SiteWalk
from tests.sites.nginx import NginxSite
from tests.web.helpers import Client
from web import create_app


async def test_api_crawls_python_docs(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    python_docs_site: NginxSite,
    docs_walk: SiteWalk,
    tmp_path: Path,
) -> None:
    settings = Settings(
        store_url=f"sqlite:///{tmp_path / 'crawler.db'}",
        allow_networks=parse_networks("127.0.0.0/8", option="allow_networks"),
        run_worker=True,
    )
    client = await aiohttp_client(create_app(settings))
    body = {
        "seeds": [f"{python_docs_site.base_url}index.html"],
        "max_pages": 5000,
        "max_depth": 100,
    }

    created = await client.post("/api/v1/jobs", json=body)
    assert created.status == 201
    job_id = (await created.json())["id"]

    async with asyncio.timeout(240):
        while True:
            job = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
            if job["state"] in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.5)
    export = await client.get(f"/api/v1/jobs/{job_id}/pages.jsonl")
    records = [json.loads(line) for line in (await export.text()).splitlines()]

    assert job["state"] == "completed"
    final_urls = Counter(record["final_url"] for record in records)
    assert [url for url, count in final_urls.items() if count > 1] == []
    html_pages = {
        unquote(urlsplit(record["final_url"]).path)
        for record in records
        if record["status"] == 200
        and (record["content_type"] or "").startswith("text/html")
    }
    assert sorted(html_pages ^ docs_walk.pages) == []
    assert job["counters"]["pages"] == len(records)

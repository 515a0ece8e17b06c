"""create_app's startup and cleanup: its own store, and the background worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from crawler.guard import parse_networks
from crawler.settings import Settings
from crawler.store.sqlite import SqliteStore
from tests.web.helpers import SEED, Client
from tests.web.schema_check import documented_json
from web import create_app

JOBS = "/api/v1/jobs"
MakeClient = Callable[[web.Application], Awaitable[Client]]
MakeServer = Callable[..., Awaitable[TestServer]]


async def test_app_opens_and_closes_store(
    aiohttp_client: MakeClient, tmp_path: Path
) -> None:
    path = tmp_path / "own.db"
    settings = Settings(store_url=f"sqlite:///{path}", run_worker=False)
    client = await aiohttp_client(create_app(settings))
    response = await client.post(JOBS, json={"seeds": [SEED]})
    created = await documented_json(response, JOBS)
    await client.close()

    store = await SqliteStore.open(path)
    try:
        job = await store.get_job(created["id"])
    finally:
        await store.close()
    assert job is not None


async def test_given_store_stays_open(
    aiohttp_client: MakeClient, settings: Settings, store: SqliteStore
) -> None:
    client = await aiohttp_client(create_app(settings, store=store))
    await client.close()
    await store.ping()


def _tiny_site() -> web.Application:
    async def home(request: web.Request) -> web.Response:
        return web.Response(
            text='<html><title>Home</title><a href="/a">A</a></html>',
            content_type="text/html",
        )

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><title>A</title></html>", content_type="text/html"
        )

    site = web.Application()
    site.router.add_get("/", home)
    site.router.add_get("/a", page)
    return site


async def _wait_for_final_state(client: Client, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        job: dict[str, Any] = await (await client.get(f"{JOBS}/{job_id}")).json()
        if job["state"] in ("completed", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish within 20 s: {job}")


async def test_worker_crawls_job(
    aiohttp_client: MakeClient, aiohttp_server: MakeServer, tmp_path: Path
) -> None:
    server = await aiohttp_server(_tiny_site(), host="127.0.0.1")
    settings = Settings(
        store_url=f"sqlite:///{tmp_path / 'crawl.db'}",
        run_worker=True,
        allow_networks=parse_networks("127.0.0.0/8", option="allow_networks"),
        shutdown_grace_s=1.0,
    )
    client = await aiohttp_client(create_app(settings))
    seed = str(server.make_url("/"))
    response = await client.post(JOBS, json={"seeds": [seed], "obey_robots": False})
    created = await response.json()

    job = await _wait_for_final_state(client, created["id"])
    assert job["state"] == "completed"
    assert job["counters"]["fetched"] == 2
    pages = await (await client.get(f"{JOBS}/{created['id']}/pages")).json()
    assert sorted(page["title"] for page in pages["items"]) == ["A", "Home"]

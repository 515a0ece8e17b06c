"""Errors as problem documents, request ids and the health checks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from crawler.settings import Settings
from crawler.store.sqlite import SqliteStore
from tests.web.helpers import SEED, Client
from tests.web.schema_check import documented_json, documented_problem
from web import create_app

JOBS = "/api/v1/jobs"
MakeClient = Callable[[web.Application], Awaitable[Client]]


async def test_malformed_json_says_where(client: Client) -> None:
    response = await client.post(
        JOBS, data='{"seeds": [}', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert response.content_type == "application/problem+json"
    problem = await documented_json(response, JOBS)
    assert problem["type"] == "/problems/malformed-json"
    assert "line 1 column 12" in problem["detail"]


async def test_nan_is_malformed_json(client: Client) -> None:
    response = await client.post(
        JOBS,
        data='{"seeds": ["http://a/"], "per_host_delay_s": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400


async def test_deeply_nested_json(client: Client) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = await client.post(
        JOBS, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    await documented_json(response, JOBS)


async def test_invalid_utf8(client: Client) -> None:
    response = await client.post(
        JOBS, data=b'{"seeds": ["\xff"]}', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    problem = await documented_json(response, JOBS)
    assert "UTF-8" in problem["detail"]


async def test_array_body_is_invalid(client: Client) -> None:
    response = await client.post(JOBS, json=[SEED])
    assert response.status == 422
    problem = await documented_json(response, JOBS)
    assert "array" in problem["detail"]


async def test_wrong_content_type(client: Client) -> None:
    response = await client.post(JOBS, data={"seeds": SEED})
    assert response.status == 415
    problem = await documented_json(response, JOBS)
    assert "application/x-www-form-urlencoded" in problem["detail"]


async def test_body_too_large(
    aiohttp_client: MakeClient, settings: Settings, store: SqliteStore
) -> None:
    small = Settings(
        store_url=settings.store_url, run_worker=False, max_request_bytes=1024
    )
    client = await aiohttp_client(create_app(small, store=store))
    body = {"seeds": [SEED], "user_agent": "x" * 2048}
    response = await client.post(JOBS, json=body)
    assert response.status == 413
    problem = await documented_json(response, JOBS)
    assert "1024 bytes" in problem["detail"]


async def test_unknown_api_route(client: Client) -> None:
    response = await client.get("/api/v1/nothing")
    assert response.status == 404
    assert response.content_type == "application/problem+json"
    problem = await documented_problem(response)
    assert problem["type"] == "/problems/not-found"


async def test_method_not_allowed(client: Client) -> None:
    response = await client.put(JOBS)
    assert response.status == 405
    assert response.headers["Allow"] == "GET,HEAD,POST"
    problem = await documented_problem(response)
    assert problem["type"] == "/problems/method-not-allowed"


async def test_request_id_kept(client: Client) -> None:
    response = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"


async def test_request_id_replaced_when_unsafe(client: Client) -> None:
    response = await client.get("/healthz", headers={"X-Request-Id": "a b<script>"})
    request_id = response.headers["X-Request-Id"]
    assert request_id != "a b<script>"
    assert len(request_id) == 32


async def test_problem_carries_request_id(client: Client) -> None:
    response = await client.get(f"{JOBS}/missing", headers={"X-Request-Id": "r-1"})
    problem = await response.json()
    assert problem["request_id"] == "r-1"
    assert response.headers["X-Request-Id"] == "r-1"


async def test_no_content_has_request_id(client: Client) -> None:
    created = await (await client.post(JOBS, json={"seeds": [SEED]})).json()
    response = await client.delete(f"{JOBS}/{created['id']}")
    assert "X-Request-Id" in response.headers


async def test_unexpected_error_hides_traceback(
    app: web.Application, aiohttp_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/api/v1/fail", fail)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR, logger="web.middlewares"):
        response = await client.get("/api/v1/fail", headers={"X-Request-Id": "r-500"})
    assert response.status == 500
    text = await response.text()
    assert "secret internals" not in text
    assert "Traceback" not in text
    problem = await documented_problem(response)
    assert problem["request_id"] == "r-500"
    assert "r-500" in problem["detail"]
    assert "r-500" in caplog.text
    assert "secret internals" in caplog.text


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await documented_json(response, "/healthz") == {"status": "ok"}


async def test_readyz_with_store(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    await documented_json(response, "/readyz")


async def test_readyz_without_store(client: Client, store: SqliteStore) -> None:
    await store.close()
    response = await client.get("/readyz")
    assert response.status == 503
    problem = await documented_json(response, "/readyz")
    assert problem["type"] == "/problems/store-unavailable"


async def test_healthz_without_store(client: Client, store: SqliteStore) -> None:
    await store.close()
    response = await client.get("/healthz")
    assert response.status == 200


async def test_store_failure_is_503(client: Client, store: SqliteStore) -> None:
    await store.close()
    response = await client.get(JOBS)
    assert response.status == 503
    await documented_json(response, JOBS)


async def test_cross_site_api_post_rejected(client: Client) -> None:
    created = await (await client.post(JOBS, json={"seeds": [SEED]})).json()
    response = await client.post(
        f"{JOBS}/{created['id']}/cancel", headers={"Origin": "https://evil.example"}
    )
    assert response.status == 403
    problem = await documented_json(response, "/api/v1/jobs/{job_id}/cancel")
    assert problem["type"] == "/problems/cross-origin-request"


async def test_null_origin_delete_rejected(client: Client) -> None:
    created = await (await client.post(JOBS, json={"seeds": [SEED]})).json()
    response = await client.delete(
        f"{JOBS}/{created['id']}", headers={"Origin": "null"}
    )
    assert response.status == 403
    await documented_json(response, "/api/v1/jobs/{job_id}")


async def test_same_origin_api_post_allowed(client: Client) -> None:
    origin = f"http://{client.server.host}:{client.server.port}"
    response = await client.post(
        JOBS, json={"seeds": [SEED]}, headers={"Origin": origin}
    )
    assert response.status == 201


async def test_cross_site_get_allowed(client: Client) -> None:
    response = await client.get(JOBS, headers={"Origin": "https://evil.example"})
    assert response.status == 200

"""POST /api/v1/scope-check against given options and against a job's options."""

from __future__ import annotations

from typing import Any

from crawler.store.sqlite import SqliteStore
from tests.web.helpers import Client
from tests.web.schema_check import documented_json

SCOPE_CHECK = "/api/v1/scope-check"
OPTIONS = {"seeds": ["https://docs.example.org/"], "exclude": ["/private/"]}


async def check(client: Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post(SCOPE_CHECK, json=body)
    assert response.status == 200
    results = await documented_json(response, SCOPE_CHECK)
    return results["results"]  # type: ignore[no-any-return]


async def test_same_host_allowed(client: Client) -> None:
    [result] = await check(
        client, {"options": OPTIONS, "urls": ["HTTPS://Docs.Example.org/a#top"]}
    )
    assert result["allowed"] is True
    assert result["normalized"] == "https://docs.example.org/a"
    assert result["url"] == "HTTPS://Docs.Example.org/a#top"
    assert result["rule"] == ""


async def test_other_host_out_of_scope(client: Client) -> None:
    [result] = await check(
        client, {"options": OPTIONS, "urls": ["https://example.org/"]}
    )
    assert result["allowed"] is False
    assert result["reason"] == "out_of_scope"
    assert result["rule"] == "same_host"
    assert "example.org:443" in result["detail"]


async def test_exclude_pattern_named(client: Client) -> None:
    [result] = await check(
        client,
        {"options": OPTIONS, "urls": ["https://docs.example.org/private/x"]},
    )
    assert result["rule"] == "exclude"
    assert "/private/" in result["detail"]


async def test_trap_rule(client: Client) -> None:
    [result] = await check(
        client,
        {"options": OPTIONS, "urls": ["https://docs.example.org/a/a/a/a/a"]},
    )
    assert result["reason"] == "trap"
    assert result["rule"] == "path_repeats"


async def test_invalid_url(client: Client) -> None:
    [result] = await check(client, {"options": OPTIONS, "urls": ["ftp://x/"]})
    assert result["allowed"] is False
    assert result["rule"] == "invalid_url"
    assert result["normalized"] is None
    assert result["detail"] != ""


async def test_results_keep_order(client: Client) -> None:
    urls = ["https://docs.example.org/1", "nope", "https://docs.example.org/2"]
    results = await check(client, {"options": OPTIONS, "urls": urls})
    assert [result["url"] for result in results] == urls


async def test_uses_job_options(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({**OPTIONS, "scope": "domain"})
    [result] = await check(
        client, {"job_id": job.id, "urls": ["https://www.example.org/"]}
    )
    assert result["allowed"] is True


async def test_unknown_job(client: Client) -> None:
    response = await client.post(SCOPE_CHECK, json={"job_id": "x", "urls": ["a"]})
    assert response.status == 404
    await documented_json(response, SCOPE_CHECK)


async def test_invalid_options_name_field(client: Client) -> None:
    body = {"options": {**OPTIONS, "include": ["("]}, "urls": ["https://a/"]}
    response = await client.post(SCOPE_CHECK, json=body)
    assert response.status == 422
    problem = await documented_json(response, SCOPE_CHECK)
    assert problem["field"] == "include"


async def test_rejects_bad_bodies(client: Client) -> None:
    url = "https://docs.example.org/"
    for body, field in [
        ({"urls": [url]}, "options"),
        ({"options": OPTIONS, "job_id": "x", "urls": [url]}, "options"),
        ({"options": OPTIONS}, "urls"),
        ({"options": OPTIONS, "urls": "https://a/"}, "urls"),
        ({"options": OPTIONS, "urls": [1]}, "urls"),
        ({"options": OPTIONS, "urls": []}, "urls"),
        ({"options": OPTIONS, "urls": [url] * 1001}, "urls"),
        ({"options": [], "urls": [url]}, "options"),
        ({"options": OPTIONS, "urls": [url], "extra": 1}, "extra"),
    ]:
        response = await client.post(SCOPE_CHECK, json=body)
        assert response.status == 422, body
        problem = await documented_json(response, SCOPE_CHECK)
        assert problem["field"] == field, body


async def test_accepts_max_urls(client: Client) -> None:
    results = await check(
        client, {"options": OPTIONS, "urls": ["https://docs.example.org/"] * 1000}
    )
    assert len(results) == 1000

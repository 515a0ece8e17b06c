"""Page record listings, the errors listing and the streamed exports."""

from __future__ import annotations

import csv
import io
import json

import pytest

from crawler.output import CSV_COLUMNS
from crawler.records import PageError
from crawler.store.base import JobState
from crawler.store.sqlite import SqliteStore
from tests.web.helpers import SEED, Client, make_record
from tests.web.schema_check import documented_json
from web.api.exports import CHUNK_RECORDS

PAGES = "/api/v1/jobs/{job_id}/pages"
ERRORS = "/api/v1/jobs/{job_id}/errors"


@pytest.fixture
async def job_id(store: SqliteStore) -> str:
    """A job with five records: three 2xx, a 404 and a timeout at depth 2."""
    options = {"seeds": [SEED], "selectors": [{"name": "price", "css": "b"}]}
    job, _ = await store.create_job(options)
    records = [
        make_record("", depth=0, title="Home", fields={"price": "3"}),
        make_record("a", title='Quote " and, comma', fields={"price": ["1", "2"]}),
        make_record("b", title="Ünïcode"),
        make_record("gone", status=404, error=PageError("http_status", "HTTP 404")),
        make_record(
            "slow", status=None, depth=2, error=PageError("timeout", "timed out")
        ),
    ]
    for record in records:
        await store.save_page(job.id, record)
    return job.id


async def test_list_pages(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/pages")
    listing = await documented_json(response, PAGES)
    assert [page["url"] for page in listing["items"]] == [
        SEED,
        f"{SEED}a",
        f"{SEED}b",
        f"{SEED}gone",
        f"{SEED}slow",
    ]
    assert listing["next_cursor"] is None


async def test_filter_by_status_class(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/pages?status=4xx")
    listing = await documented_json(response, PAGES)
    assert [page["status"] for page in listing["items"]] == [404]


async def test_filter_by_error_kind(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/pages?error_kind=timeout")
    listing = await documented_json(response, PAGES)
    assert [page["url"] for page in listing["items"]] == [f"{SEED}slow"]


async def test_filter_by_depth(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/pages?depth=0")
    listing = await documented_json(response, PAGES)
    assert [page["url"] for page in listing["items"]] == [SEED]


async def test_pages_cursor_continues(client: Client, job_id: str) -> None:
    first = await (await client.get(f"/api/v1/jobs/{job_id}/pages?limit=3")).json()
    response = await client.get(
        f"/api/v1/jobs/{job_id}/pages",
        params={"limit": 3, "cursor": first["next_cursor"]},
    )
    rest = await documented_json(response, PAGES)
    assert len(first["items"]) == 3
    assert [page["url"] for page in rest["items"]] == [f"{SEED}gone", f"{SEED}slow"]


async def test_pages_reject_bad_filters(client: Client, job_id: str) -> None:
    for query, field in [
        ("status=200", "status"),
        ("status=6xx", "status"),
        ("error_kind=boom", "error_kind"),
        ("depth=-1", "depth"),
        ("limit=1001", "limit"),
    ]:
        response = await client.get(f"/api/v1/jobs/{job_id}/pages?{query}")
        assert response.status == 400, query
        problem = await documented_json(response, PAGES)
        assert problem["field"] == field, query


async def test_cursor_of_other_job_rejected(
    client: Client, store: SqliteStore, job_id: str
) -> None:
    first = await (await client.get(f"/api/v1/jobs/{job_id}/pages?limit=1")).json()
    other, _ = await store.create_job({"seeds": [SEED]})
    response = await client.get(
        f"/api/v1/jobs/{other.id}/pages", params={"cursor": first["next_cursor"]}
    )
    assert response.status == 400
    problem = await documented_json(response, PAGES)
    assert problem["field"] == "cursor"


async def test_pages_of_unknown_job(client: Client) -> None:
    response = await client.get("/api/v1/jobs/missing/pages")
    assert response.status == 404
    await documented_json(response, PAGES)


async def test_errors_lists_only_errors(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/errors")
    listing = await documented_json(response, ERRORS)
    kinds = [page["error"]["kind"] for page in listing["items"]]
    assert kinds == ["http_status", "timeout"]


async def test_errors_filter_by_kind(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/errors?error_kind=timeout")
    listing = await documented_json(response, ERRORS)
    assert [page["url"] for page in listing["items"]] == [f"{SEED}slow"]


async def test_json_lines_export(client: Client, job_id: str) -> None:
    listed = await (await client.get(f"/api/v1/jobs/{job_id}/pages")).json()
    response = await client.get(f"/api/v1/jobs/{job_id}/pages.jsonl")
    assert response.status == 200
    assert response.content_type == "application/jsonl"
    assert "X-Request-Id" in response.headers
    lines = (await response.text()).splitlines()
    assert [json.loads(line) for line in lines] == listed["items"]


async def test_csv_export(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/pages.csv")
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == [*CSV_COLUMNS, "field.price"]
    assert len(rows) == 6
    by_url = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert by_url[f"{SEED}a"]["title"] == 'Quote " and, comma'
    assert by_url[f"{SEED}a"]["field.price"] == '["1", "2"]'
    assert by_url[f"{SEED}slow"]["error_kind"] == "timeout"
    assert by_url[SEED]["links_in_scope"] == json.dumps([f"{SEED}a", f"{SEED}b"])


async def test_export_applies_filters(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/pages.jsonl?status=2xx")
    lines = (await response.text()).splitlines()
    assert len(lines) == 3


async def test_export_of_unknown_job(client: Client) -> None:
    response = await client.get("/api/v1/jobs/missing/pages.csv")
    assert response.status == 404
    await documented_json(response, "/api/v1/jobs/{job_id}/pages.csv")


async def test_export_bad_filter_is_problem(client: Client, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}/pages.jsonl?status=x")
    assert response.status == 400
    await documented_json(response, "/api/v1/jobs/{job_id}/pages.jsonl")


async def test_export_of_running_job_spans_chunks(
    client: Client, store: SqliteStore
) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    await store.transition(job.id, JobState.RUNNING, allowed_from={JobState.QUEUED})
    count = CHUNK_RECORDS + 7
    for index in range(count):
        await store.save_page(job.id, make_record(f"p{index}"))

    response = await client.get(f"/api/v1/jobs/{job.id}/pages.csv")
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert len(rows) == count + 1
    assert rows[1][0] == f"{SEED}p0"
    assert rows[-1][0] == f"{SEED}p{count - 1}"

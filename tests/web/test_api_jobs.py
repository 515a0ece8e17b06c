"""The jobs API: creation, idempotency, listing, state changes and deletion."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from crawler.frontier import CrawlRequest
from crawler.records import PageError
from crawler.store.base import Job, JobState
from crawler.store.sqlite import SqliteStore
from tests.web.helpers import SEED, Client, make_record
from tests.web.schema_check import documented_json
from web.job_summary import pages_per_second

JOBS = "/api/v1/jobs"
JOB = "/api/v1/jobs/{job_id}"


async def create(client: Client, **options: Any) -> dict[str, Any]:
    response = await client.post(JOBS, json={"seeds": [SEED], **options})
    assert response.status == 201
    return await documented_json(response, JOBS)  # type: ignore[no-any-return]


async def test_create_returns_job(client: Client) -> None:
    response = await client.post(JOBS, json={"seeds": [SEED], "max_pages": 5})
    assert response.status == 201
    job = await documented_json(response, JOBS)
    assert job["state"] == "queued"
    assert job["options"]["max_pages"] == 5
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"


async def test_create_fills_defaults(client: Client) -> None:
    job = await create(client)
    assert job["options"]["max_depth"] == 20
    assert job["options"]["scope"] == "host"
    assert job["counters"]["fetched"] == 0


async def test_idempotent_repeat_returns_same_job(client: Client) -> None:
    headers = {"Idempotency-Key": "retry-1"}
    body = {"seeds": [SEED]}
    first = await client.post(JOBS, json=body, headers=headers)
    second = await client.post(JOBS, json=body, headers=headers)
    assert first.status == 201
    assert second.status == 200
    first_job = await documented_json(first, JOBS)
    second_job = await documented_json(second, JOBS)
    assert second_job["id"] == first_job["id"]
    assert second.headers["Location"] == first.headers["Location"]


async def test_idempotent_repeat_explicit_defaults(client: Client) -> None:
    headers = {"Idempotency-Key": "retry-2"}
    await client.post(JOBS, json={"seeds": [SEED]}, headers=headers)
    repeat = await client.post(
        JOBS, json={"seeds": [SEED], "max_pages": 10_000}, headers=headers
    )
    assert repeat.status == 200


async def test_idempotency_key_with_other_body(client: Client) -> None:
    headers = {"Idempotency-Key": "retry-3"}
    first = await client.post(JOBS, json={"seeds": [SEED]}, headers=headers)
    first_job = await first.json()
    second = await client.post(
        JOBS, json={"seeds": [SEED], "max_pages": 3}, headers=headers
    )
    assert second.status == 409
    problem = await documented_json(second, JOBS)
    assert problem["type"] == "/problems/idempotency-conflict"
    assert problem["job_id"] == first_job["id"]


async def test_invalid_idempotency_key(client: Client) -> None:
    response = await client.post(
        JOBS, json={"seeds": [SEED]}, headers={"Idempotency-Key": "x" * 201}
    )
    assert response.status == 400
    problem = await documented_json(response, JOBS)
    assert problem["field"] == "Idempotency-Key"


async def test_invalid_option_names_field(client: Client) -> None:
    response = await client.post(JOBS, json={"seeds": [SEED], "max_pages": 0})
    assert response.status == 422
    problem = await documented_json(response, JOBS)
    assert problem["type"] == "/problems/invalid-option"
    assert problem["field"] == "max_pages"
    assert "from 1 to" in problem["detail"]


async def test_unknown_option_rejected(client: Client) -> None:
    response = await client.post(JOBS, json={"seeds": [SEED], "max_page": 3})
    assert response.status == 422
    problem = await documented_json(response, JOBS)
    assert problem["field"] == "max_page"


async def test_missing_seeds_rejected(client: Client) -> None:
    response = await client.post(JOBS, json={"max_pages": 3})
    problem = await documented_json(response, JOBS)
    assert problem["field"] == "seeds"


async def test_unknown_job_is_404(client: Client) -> None:
    response = await client.get("/api/v1/jobs/nope")
    assert response.status == 404
    problem = await documented_json(response, JOB)
    assert problem["type"] == "/problems/not-found"
    assert "nope" in problem["detail"]


async def test_get_job(client: Client) -> None:
    created = await create(client)
    response = await client.get(f"{JOBS}/{created['id']}")
    job = await documented_json(response, JOB)
    assert job == created


async def test_list_newest_first(client: Client) -> None:
    first = await create(client)
    second = await create(client)
    response = await client.get(JOBS)
    listing = await documented_json(response, JOBS)
    assert [job["id"] for job in listing["items"]] == [second["id"], first["id"]]
    assert listing["next_cursor"] is None


async def test_list_pages_with_cursor(client: Client) -> None:
    ids = [(await create(client))["id"] for _ in range(3)]
    first = await documented_json(await client.get(JOBS, params={"limit": 2}), JOBS)
    rest = await documented_json(
        await client.get(JOBS, params={"limit": 2, "cursor": first["next_cursor"]}),
        JOBS,
    )
    listed = [job["id"] for job in first["items"] + rest["items"]]
    assert listed == list(reversed(ids))
    assert rest["next_cursor"] is None


async def test_list_filters_by_state(client: Client, store: SqliteStore) -> None:
    queued = await create(client)
    paused = await create(client)
    await client.post(f"{JOBS}/{paused['id']}/pause")
    response = await client.get(JOBS, params={"state": "paused"})
    listing = await documented_json(response, JOBS)
    assert [job["id"] for job in listing["items"]] == [paused["id"]]
    both = await (await client.get(JOBS, params={"state": "paused,queued"})).json()
    assert {job["id"] for job in both["items"]} == {queued["id"], paused["id"]}


async def test_list_rejects_bad_parameters(client: Client) -> None:
    for params, field in [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"state": "sleeping"}, "state"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ]:
        response = await client.get(JOBS, params=params)
        assert response.status == 400, params
        problem = await documented_json(response, JOBS)
        assert problem["field"] == field, params


async def test_cancel_queued_job(client: Client) -> None:
    job = await create(client)
    response = await client.post(f"{JOBS}/{job['id']}/cancel")
    assert response.status == 200
    cancelled = await documented_json(response, "/api/v1/jobs/{job_id}/cancel")
    assert cancelled["state"] == "cancelled"
    assert cancelled["finished_at"] is not None


async def test_cancel_twice_is_conflict(client: Client) -> None:
    job = await create(client)
    await client.post(f"{JOBS}/{job['id']}/cancel")
    response = await client.post(f"{JOBS}/{job['id']}/cancel")
    assert response.status == 409
    problem = await documented_json(response, "/api/v1/jobs/{job_id}/cancel")
    assert problem["type"] == "/problems/invalid-state"
    assert problem["state"] == "cancelled"
    assert "cancelled" in problem["detail"]


async def test_pause_and_resume(client: Client) -> None:
    job = await create(client)
    paused = await client.post(f"{JOBS}/{job['id']}/pause")
    assert (await paused.json())["state"] == "paused"
    resumed = await client.post(f"{JOBS}/{job['id']}/resume")
    body = await documented_json(resumed, "/api/v1/jobs/{job_id}/resume")
    assert body["state"] == "queued"


async def test_resume_queued_is_conflict(client: Client) -> None:
    job = await create(client)
    response = await client.post(f"{JOBS}/{job['id']}/resume")
    assert response.status == 409
    problem = await documented_json(response, "/api/v1/jobs/{job_id}/resume")
    assert problem["state"] == "queued"


async def test_pause_running_job(client: Client, store: SqliteStore) -> None:
    job = await create(client)
    await store.transition(job["id"], JobState.RUNNING, allowed_from={JobState.QUEUED})
    response = await client.post(f"{JOBS}/{job['id']}/pause")
    body = await documented_json(response, "/api/v1/jobs/{job_id}/pause")
    assert body["state"] == "paused"


async def test_action_on_unknown_job(client: Client) -> None:
    response = await client.post(f"{JOBS}/missing/cancel")
    assert response.status == 404
    await documented_json(response, "/api/v1/jobs/{job_id}/cancel")


async def test_delete_job(client: Client) -> None:
    job = await create(client)
    response = await client.delete(f"{JOBS}/{job['id']}")
    assert response.status == 204
    assert (await client.get(f"{JOBS}/{job['id']}")).status == 404


async def test_delete_running_job(client: Client, store: SqliteStore) -> None:
    job = await create(client)
    await store.transition(job["id"], JobState.RUNNING, allowed_from={JobState.QUEUED})
    response = await client.delete(f"{JOBS}/{job['id']}")
    assert response.status == 204


async def test_delete_unknown_job(client: Client) -> None:
    response = await client.delete(f"{JOBS}/missing")
    assert response.status == 404
    await documented_json(response, JOB)


async def test_counters_reflect_store(client: Client, store: SqliteStore) -> None:
    job = await create(client)
    job_id = job["id"]
    await store.add_requests(
        job_id,
        [
            CrawlRequest(url=f"{SEED}q{i}", key=f"q{i}", host="127.0.0.1:9", depth=1)
            for i in range(3)
        ],
    )
    await store.save_page(job_id, make_record("ok"))
    await store.save_page(
        job_id, make_record("gone", status=404, error=PageError("http_status", "404"))
    )
    await store.save_page(
        job_id,
        make_record("slow", status=None, error=PageError("timeout", "timed out")),
    )
    await store.add_skipped(job_id, {"out_of_scope": 4})

    response = await client.get(f"{JOBS}/{job_id}")
    counters = (await documented_json(response, JOB))["counters"]
    assert counters["queued"] == 3
    assert counters["fetched"] == 2
    assert counters["failed"] == 2
    assert counters["pages"] == 3
    assert counters["errors"] == {"http_status": 1, "timeout": 1}
    assert counters["skipped"] == {"out_of_scope": 4}


def _job(started_at: str | None, finished_at: str | None = None) -> Job:
    return Job(
        id="j",
        state=JobState.RUNNING,
        options={},
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
        started_at=started_at,
        finished_at=finished_at,
    )


def test_rate_over_finished_run() -> None:
    job = _job("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:10.000Z")
    assert pages_per_second(job, 50, datetime.now(UTC)) == 5.0


def test_rate_of_running_job_uses_now() -> None:
    job = _job("2026-01-01T00:00:00.000Z")
    now = datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC)
    assert pages_per_second(job, 10, now) == 2.5


def test_rate_before_start_is_zero() -> None:
    assert pages_per_second(_job(None), 10, datetime.now(UTC)) == 0.0


async def test_list_rejects_cursor_beyond_sqlite_range(client: Client) -> None:
    raw = json.dumps(["jobs", 2**63]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    response = await client.get(JOBS, params={"cursor": cursor})
    problem = await response.json()

    assert response.status == 400
    assert problem["field"] == "cursor"


async def test_form_rejects_unparsable_multipart(client: Client) -> None:
    response = await client.post(
        "/jobs",
        data=b"not multipart at all",
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
    )

    assert response.status == 400

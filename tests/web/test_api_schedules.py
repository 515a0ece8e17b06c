"""The schedules API: validation, reads, updates, enable and disable, delete
and run now. Every response is checked against the OpenAPI document."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from typing import Any

import pytest

from crawler.scheduler import Scheduler, scheduled_job_key
from crawler.store.schedules import ScheduleSpec
from crawler.store.sqlite import SqliteStore
from tests.web.helpers import SEED, Client
from tests.web.schema_check import documented_json

SCHEDULES = "/api/v1/schedules"
SCHEDULE = "/api/v1/schedules/{schedule_id}"
RUN = "/api/v1/schedules/{schedule_id}/run"
ENABLE = "/api/v1/schedules/{schedule_id}/enable"
DISABLE = "/api/v1/schedules/{schedule_id}/disable"
BODY: dict[str, Any] = {
    "name": "nightly docs",
    "cron": "30 2 * * *",
    "timezone": "Europe/Berlin",
    "job": {"seeds": [SEED], "max_pages": 5},
}


async def create(client: Client, **changes: Any) -> dict[str, Any]:
    response = await client.post(SCHEDULES, json={**BODY, **changes})
    assert response.status == 201, await response.text()
    return await documented_json(response, SCHEDULES)  # type: ignore[no-any-return]


async def problem_for(
    client: Client, body: Any, *, path: str = SCHEDULES, method: str = "POST"
) -> dict[str, Any]:
    response = await client.request(
        method, path.replace("{schedule_id}", "x"), json=body
    )
    assert response.status == 422, await response.text()
    return await documented_json(response, path)  # type: ignore[no-any-return]


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- create and read -----------------------------------------------------------


async def test_create_returns_schedule(client: Client) -> None:
    response = await client.post(SCHEDULES, json=BODY)

    schedule = await documented_json(response, SCHEDULES)
    assert response.status == 201
    assert response.headers["Location"] == f"{SCHEDULES}/{schedule['id']}"
    assert schedule["name"] == "nightly docs"
    assert schedule["description"] == "At 02:30 every day"
    assert schedule["enabled"] is True
    assert schedule["overlap"] == "skip"
    assert schedule["missed"] == "run_once"
    assert schedule["job"]["max_pages"] == 5
    assert schedule["job"]["max_depth"] == 20
    assert schedule["runs"] == []
    assert schedule["last_run"] is None


async def test_next_runs_in_local_time(client: Client) -> None:
    schedule = await create(client)

    times = [parse(text) for text in schedule["next_runs"]]

    assert len(times) == 5
    assert schedule["next_run_at"] == schedule["next_runs"][0]
    assert all((t.hour, t.minute) == (2, 30) for t in times)
    assert all(t.utcoffset() is not None for t in times)
    assert times[0].timestamp() > time.time()
    gaps = {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(times)}
    # A day, or 23 or 25 hours across a daylight-saving change.
    assert gaps <= {82_800, 86_400, 90_000}


async def test_get_schedule(client: Client) -> None:
    created = await create(client)

    response = await client.get(f"{SCHEDULES}/{created['id']}")

    assert await documented_json(response, SCHEDULE) == created


async def test_list_schedules_paginated(client: Client) -> None:
    ids = [(await create(client, name=f"s{n}"))["id"] for n in range(3)]

    first = await documented_json(
        await client.get(SCHEDULES, params={"limit": "2"}), SCHEDULES
    )
    rest = await documented_json(
        await client.get(
            SCHEDULES, params={"limit": "2", "cursor": first["next_cursor"]}
        ),
        SCHEDULES,
    )

    listed = [item["id"] for item in first["items"] + rest["items"]]
    assert listed == list(reversed(ids))
    assert rest["next_cursor"] is None
    assert "runs" not in first["items"][0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"cursor": "nonsense"}, "cursor"),
    ],
)
async def test_list_rejects_bad_parameters(
    client: Client, params: dict[str, str], field: str
) -> None:
    response = await client.get(SCHEDULES, params=params)

    problem = await documented_json(response, SCHEDULES)
    assert response.status == 400
    assert problem["field"] == field


# -- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "Bad minute"),
        ({"cron": "* * *"}, "cron", "has 3 fields, not 5"),
        ({"cron": "@reboot"}, "cron", "not supported"),
        ({"cron": 5}, "cron", "cron must be a string"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "not an IANA time zone"),
        ({"timezone": ["UTC"]}, "timezone", "must be an IANA time zone name"),
        ({"name": ""}, "name", "must not be blank"),
        ({"name": None}, "name", "name must be a string"),
        ({"enabled": "false"}, "enabled", "true or false"),
        ({"overlap": "queue"}, "overlap", "'skip' or 'allow'"),
        ({"missed": "all"}, "missed", "'run_once' or 'skip'"),
        ({"missed": 1}, "missed", "'run_once' or 'skip'"),
        ({"job": "http://a.test/"}, "job", "job must be an object"),
        ({"every": "day"}, "every", "unknown field 'every'"),
    ],
)
async def test_invalid_field_named(
    client: Client, changes: dict[str, Any], field: str, words: str
) -> None:
    problem = await problem_for(client, {**BODY, **changes})

    assert problem["type"] == "/problems/invalid-schedule"
    assert problem["field"] == field
    assert words in problem["detail"]


@pytest.mark.parametrize("field", ["name", "cron", "job"])
async def test_missing_field_named(client: Client, field: str) -> None:
    body = {name: value for name, value in BODY.items() if name != field}

    problem = await problem_for(client, body)

    assert problem["field"] == field
    assert "for example" in problem["detail"]


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"seeds": [SEED], "max_pages": 0}, "job.max_pages"),
        ({"seeds": ["ftp://a.test/"]}, "job.seeds"),
        ({"seeds": [SEED], "max_page": 3}, "job.max_page"),
        ({"max_pages": 3}, "job.seeds"),
        ({"seeds": [SEED], "concurrency": "4"}, "job.concurrency"),
    ],
)
async def test_invalid_job_same_as_jobs_api(
    client: Client, job: dict[str, Any], field: str
) -> None:
    jobs_response = await client.post("/api/v1/jobs", json=job)
    jobs_problem = await jobs_response.json()

    problem = await problem_for(client, {**BODY, "job": job})

    assert problem["type"] == jobs_problem["type"] == "/problems/invalid-option"
    assert problem["field"] == field
    assert problem["detail"] == jobs_problem["detail"]


async def test_body_must_be_object(client: Client) -> None:
    response = await client.post(SCHEDULES, json=["not", "an", "object"])

    problem = await documented_json(response, SCHEDULES)
    assert response.status == 422
    assert problem["type"] == "/problems/invalid-body"


async def test_malformed_json(client: Client) -> None:
    response = await client.post(
        SCHEDULES, data=b"{", headers={"Content-Type": "application/json"}
    )

    problem = await documented_json(response, SCHEDULES)
    assert response.status == 400
    assert problem["type"] == "/problems/malformed-json"


async def test_create_from_other_origin(client: Client) -> None:
    response = await client.post(
        SCHEDULES, json=BODY, headers={"Origin": "http://evil.example"}
    )

    assert response.status == 403


async def test_update_validated(client: Client) -> None:
    created = await create(client)
    path = SCHEDULE.replace("{schedule_id}", created["id"])

    response = await client.patch(path, json={"overlap": "sometimes"})
    problem = await documented_json(response, SCHEDULE)
    unknown = await client.patch(path, json={"id": "other"})

    assert response.status == 422
    assert problem["field"] == "overlap"
    assert unknown.status == 422
    assert (await unknown.json())["field"] == "id"


# -- not found -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", SCHEDULE),
        ("PATCH", SCHEDULE),
        ("DELETE", SCHEDULE),
        ("POST", ENABLE),
        ("POST", DISABLE),
        ("POST", RUN),
    ],
)
async def test_unknown_schedule_404(client: Client, method: str, path: str) -> None:
    response = await client.request(
        method, path.replace("{schedule_id}", "nope"), json={"name": "x"}
    )

    problem = await documented_json(response, path)
    assert response.status == 404
    assert problem["field"] == "schedule_id"
    assert "'nope'" in problem["detail"]


# -- update, enable, disable, delete -------------------------------------------


async def test_update_cron_moves_next_run(client: Client) -> None:
    created = await create(client)

    response = await client.patch(
        f"{SCHEDULES}/{created['id']}", json={"cron": "15 4 * * *"}
    )

    updated = await documented_json(response, SCHEDULE)
    first = parse(updated["next_run_at"])
    assert (first.hour, first.minute) == (4, 15)
    assert updated["next_run_at"] != created["next_run_at"]
    assert updated["cron"] == "15 4 * * *"
    assert updated["name"] == created["name"]


async def test_update_timezone_moves_next_run(client: Client) -> None:
    created = await create(client)

    response = await client.patch(
        f"{SCHEDULES}/{created['id']}", json={"timezone": "Asia/Tokyo"}
    )

    updated = await documented_json(response, SCHEDULE)
    first = parse(updated["next_run_at"])
    assert (first.hour, first.minute) == (2, 30)
    assert first.utcoffset() == parse("2025-01-01T00:00:00+09:00").utcoffset()


async def test_update_name_keeps_next_run(client: Client, store: SqliteStore) -> None:
    created = await create(client)
    # A due time that no scheduler has fired yet must survive a rename.
    await store.advance_schedule(
        created["id"],
        due_at=int(parse(created["next_run_at"]).timestamp()),
        next_run_at=1_000,
    )

    response = await client.patch(f"{SCHEDULES}/{created['id']}", json={"name": "new"})

    updated = await documented_json(response, SCHEDULE)
    assert updated["name"] == "new"
    assert parse(updated["next_run_at"]).timestamp() == 1_000


async def test_update_job_replaces_template(client: Client) -> None:
    created = await create(client)

    response = await client.patch(
        f"{SCHEDULES}/{created['id']}", json={"job": {"seeds": [f"{SEED}b"]}}
    )

    updated = await documented_json(response, SCHEDULE)
    assert updated["job"]["seeds"] == [f"{SEED}b"]
    assert updated["job"]["max_pages"] == 10_000


async def test_disable_stops_firing(client: Client, store: SqliteStore) -> None:
    created = await create(client, cron="* * * * *")
    due = int(parse(created["next_run_at"]).timestamp())

    response = await client.post(f"{SCHEDULES}/{created['id']}/disable")
    disabled = await documented_json(response, DISABLE)
    runs = await Scheduler(store).tick(due + 1)

    assert disabled["enabled"] is False
    assert disabled["next_run_at"] is None
    assert disabled["next_runs"] == []
    assert runs == []
    assert (await store.list_jobs()).items == []


async def test_enable_recomputes_next_run(client: Client) -> None:
    created = await create(client, enabled=False)

    response = await client.post(f"{SCHEDULES}/{created['id']}/enable")
    again = await client.post(f"{SCHEDULES}/{created['id']}/enable")

    enabled = await documented_json(response, ENABLE)
    assert created["next_run_at"] is None
    assert enabled["enabled"] is True
    assert parse(enabled["next_run_at"]).timestamp() > time.time()
    assert (await again.json())["next_run_at"] == enabled["next_run_at"]


async def test_patch_enabled_false(client: Client) -> None:
    created = await create(client)

    response = await client.patch(
        f"{SCHEDULES}/{created['id']}", json={"enabled": False}
    )

    updated = await documented_json(response, SCHEDULE)
    assert updated["next_run_at"] is None


async def test_delete_schedule_keeps_jobs(client: Client) -> None:
    created = await create(client)
    run = await client.post(f"{SCHEDULES}/{created['id']}/run")
    job = await run.json()

    response = await client.delete(f"{SCHEDULES}/{created['id']}")

    assert response.status == 204
    assert (await client.get(f"{SCHEDULES}/{created['id']}")).status == 404
    kept = await client.get(f"/api/v1/jobs/{job['id']}")
    assert (await kept.json())["schedule_id"] == created["id"]


# -- runs ----------------------------------------------------------------------


async def test_run_now_starts_job(client: Client) -> None:
    created = await create(client, enabled=False)

    response = await client.post(f"{SCHEDULES}/{created['id']}/run")

    job = await documented_json(response, RUN)
    assert response.status == 201
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["schedule_id"] == created["id"]
    assert job["state"] == "queued"
    assert job["options"] == created["job"]
    shown = await (await client.get(f"{SCHEDULES}/{created['id']}")).json()
    assert shown["last_run"]["job_id"] == job["id"]
    assert shown["last_run"]["trigger"] == "manual"
    assert shown["last_run"]["job_state"] == "queued"
    assert shown["next_run_at"] is None


async def test_run_now_idempotency_key(client: Client) -> None:
    created = await create(client)
    headers = {"Idempotency-Key": "run-1"}
    path = f"{SCHEDULES}/{created['id']}/run"

    first = await client.post(path, headers=headers)
    second = await client.post(path, headers=headers)

    first_job = await documented_json(first, RUN)
    second_job = await documented_json(second, RUN)
    assert first.status == 201
    assert second.status == 200
    assert second_job["id"] == first_job["id"]


async def test_run_now_bad_idempotency_key(client: Client) -> None:
    created = await create(client)

    response = await client.post(
        f"{SCHEDULES}/{created['id']}/run", headers={"Idempotency-Key": "é"}
    )

    problem = await documented_json(response, RUN)
    assert response.status == 400
    assert problem["field"] == "Idempotency-Key"


async def test_get_shows_fired_runs(client: Client, store: SqliteStore) -> None:
    created = await create(client, cron="@hourly", overlap="skip")
    due = int(parse(created["next_run_at"]).timestamp())
    scheduler = Scheduler(store)
    await scheduler.tick(due + 1)
    await scheduler.tick(due + 3601)

    response = await client.get(f"{SCHEDULES}/{created['id']}")

    shown = await documented_json(response, SCHEDULE)
    runs = shown["runs"]
    assert [run["outcome"] for run in runs] == ["skipped_overlap", "started"]
    assert runs[1]["job_state"] == "queued"
    assert runs[0]["job_id"] is None
    assert parse(runs[1]["due_at"]).timestamp() == due
    assert shown["last_run"] == runs[0]
    assert parse(shown["next_run_at"]).timestamp() == due + 7200
    job = await store.get_job(runs[1]["job_id"])
    assert job is not None
    assert job.idempotency_key == scheduled_job_key(created["id"], due)


async def test_jobs_api_reserves_schedule_keys(client: Client) -> None:
    response = await client.post(
        "/api/v1/jobs",
        json={"seeds": [SEED]},
        headers={"Idempotency-Key": "schedule:abc:123"},
    )

    problem = await documented_json(response, "/api/v1/jobs")
    assert response.status == 400
    assert problem["field"] == "Idempotency-Key"
    assert "reserved" in problem["detail"]


async def test_invalid_stored_cron_shown(client: Client, store: SqliteStore) -> None:
    # The store takes any text, as a schedule stored by an older version could be.
    schedule = await store.create_schedule(
        ScheduleSpec(name="old", cron="61 * * * *", timezone="UTC", job={}),
        next_run_at=1_000,
    )

    response = await client.get(f"{SCHEDULES}/{schedule.id}")
    page = await client.get(f"/schedules/{schedule.id}")

    shown = await documented_json(response, SCHEDULE)
    assert shown["description"].startswith("Never runs: cron '61 * * * *'")
    assert shown["next_runs"] == []
    assert page.status == 200


async def test_create_rejects_idempotency_key(client: Client) -> None:
    response = await client.post(
        "/api/v1/schedules",
        json=BODY,
        headers={"Idempotency-Key": "sched-1"},
    )

    problem = await documented_json(response, SCHEDULES)
    assert response.status == 400
    assert problem["field"] == "Idempotency-Key"
    listed = await (await client.get(SCHEDULES)).json()
    assert listed["items"] == []


@pytest.mark.parametrize("body", ['{"max_pages": 1}', "{bad"])
async def test_run_rejects_a_body(client: Client, body: str) -> None:
    created = await create(client)

    response = await client.post(
        f"/api/v1/schedules/{created['id']}/run",
        data=body,
        headers={"Content-Type": "application/json"},
    )

    problem = await documented_json(response, RUN)
    assert response.status == 422
    assert "takes no body" in problem["detail"]


async def test_lone_surrogate_is_a_problem(client: Client) -> None:
    response = await client.post(
        "/api/v1/schedules",
        data='{"name": "a\\ud800b", "cron": "0 0 * * *", '
        '"job": {"seeds": ["http://127.0.0.1:9/"]}}',
        headers={"Content-Type": "application/json"},
    )

    problem = await documented_json(response, SCHEDULES)
    assert response.status == 400
    assert problem["field"] == "name"
    assert "\\ud800" in problem["detail"]

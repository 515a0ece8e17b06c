"""The schedule status pages: the list, the create and edit forms, the buttons."""

from __future__ import annotations

import json
import re

from crawler.store.schedules import Missed, Overlap, ScheduleSpec
from crawler.store.sqlite import SqliteStore
from tests.web.helpers import SEED, Client

HOSTILE_NAME = '<script>alert("x")</script>'
SPEC = ScheduleSpec(
    name="docs nightly",
    cron="30 2 * * *",
    timezone="Europe/Berlin",
    job={"seeds": [SEED], "max_pages": 7},
)


def form(**fields: str) -> dict[str, str]:
    return {
        "name": "docs nightly",
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "enabled": "on",
        "overlap": "skip",
        "missed": "run_once",
        "seeds": SEED,
        "max_pages": "50",
        "max_depth": "2",
        "concurrency": "4",
        "scope": "host",
        "allowed_domains": "",
        "other_options": "",
        **fields,
    }


def element_text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match is not None, element_id
    return match.group(1).strip()


async def test_nav_links_schedules(client: Client) -> None:
    html = await (await client.get("/")).text()

    assert '<a href="/schedules">Schedules</a>' in html


async def test_empty_list(client: Client) -> None:
    response = await client.get("/schedules")

    html = await response.text()
    assert response.status == 200
    assert 'id="no-schedules"' in html
    assert 'id="schedule-form"' in html
    assert '<option value="Europe/Berlin">' in html


async def test_create_from_form(client: Client, store: SqliteStore) -> None:
    response = await client.post("/schedules", data=form(), allow_redirects=False)

    assert response.status == 303
    schedule_id = response.headers["Location"].rpartition("/")[2]
    schedule = await store.get_schedule(schedule_id)
    assert schedule is not None
    assert schedule.name == "docs nightly"
    assert schedule.timezone == "Europe/Berlin"
    assert schedule.enabled is True
    assert schedule.job["max_pages"] == 50
    assert schedule.job["seeds"] == [SEED]
    assert schedule.next_run_at is not None


async def test_unticked_box_disables(client: Client, store: SqliteStore) -> None:
    fields = form(overlap="allow", missed="skip")
    del fields["enabled"]

    response = await client.post("/schedules", data=fields, allow_redirects=False)

    schedule = await store.get_schedule(response.headers["Location"].rpartition("/")[2])
    assert schedule is not None
    assert schedule.enabled is False
    assert schedule.next_run_at is None
    assert schedule.overlap is Overlap.ALLOW
    assert schedule.missed is Missed.SKIP


async def test_other_options_json(client: Client, store: SqliteStore) -> None:
    extra = {"include": ["/docs/"], "per_host_delay_s": 1}

    response = await client.post(
        "/schedules",
        data=form(other_options=json.dumps(extra)),
        allow_redirects=False,
    )

    schedule = await store.get_schedule(response.headers["Location"].rpartition("/")[2])
    assert schedule is not None
    assert schedule.job["include"] == ["/docs/"]
    assert schedule.job["per_host_delay_s"] == 1


async def test_form_errors_next_to_field(client: Client, store: SqliteStore) -> None:
    cases = {
        "cron": form(cron="61 * * * *"),
        "timezone": form(timezone="Mars/Base"),
        "name": form(name=" "),
        "max_pages": form(max_pages="0"),
        "concurrency": form(concurrency="many"),
        "seeds": form(seeds="ftp://a.test/"),
        "other_options": form(other_options="{not json"),
    }
    for field, fields in cases.items():
        response = await client.post("/schedules", data=fields)

        html = await response.text()
        assert response.status == 422, field
        assert element_text(html, f"error-{field}"), field
    assert (await store.list_schedules()).items == []


async def test_other_options_errors(client: Client) -> None:
    cases = [
        ('["a"]', "must be a JSON object"),
        ('{"max_pages": 3}', "Set max_pages in its own field"),
        ('{"max_page": 3}', "unknown option"),
        ('{"per_host_delay_s": -1}', "per_host_delay_s"),
    ]
    for text, words in cases:
        response = await client.post("/schedules", data=form(other_options=text))

        html = await response.text()
        assert response.status == 422, text
        assert words in element_text(html, "error-other_options"), text


async def test_form_error_keeps_values(client: Client) -> None:
    response = await client.post(
        "/schedules", data=form(cron="bad", name="keep me", timezone="Asia/Tokyo")
    )

    html = await response.text()
    assert 'value="keep me"' in html
    assert 'value="Asia/Tokyo"' in html
    assert 'value="bad"' in html


async def test_list_shows_next_and_last_run(client: Client, store: SqliteStore) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=1_900_000_000)
    await client.post(f"/schedules/{schedule.id}/run")

    html = await (await client.get("/schedules")).text()

    assert f'href="/schedules/{schedule.id}"' in html
    assert 'datetime="2030-03-17T18:46:40+01:00"' in html
    jobs = await store.list_jobs()
    assert f'href="/jobs/{jobs.items[0].id}"' in html
    assert "At 02:30 every day" in html


async def test_schedule_page(client: Client, store: SqliteStore) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=1_900_000_000)

    response = await client.get(f"/schedules/{schedule.id}")

    html = await response.text()
    assert response.status == 200
    assert element_text(html, "schedule-cron") == "30 2 * * *"
    assert len(re.findall(r"<li><time", html)) == 5
    assert 'id="no-runs"' in html
    assert 'id="action-disable"' in html
    assert 'value="docs nightly"' in html
    assert 'name="max_pages" type="number" min="1" value="7"' in html


async def test_edit_form_keeps_api_options(client: Client, store: SqliteStore) -> None:
    job = {"seeds": [SEED], "selectors": [{"name": "h1", "css": "h1"}]}
    schedule = await store.create_schedule(
        ScheduleSpec(name="x", cron="@daily", timezone="UTC", job=job),
        next_run_at=None,
    )
    page = await (await client.get(f"/schedules/{schedule.id}")).text()
    shown = re.search(r'id="other_options"[^>]*>([^<]*)<', page)
    assert shown is not None
    other = shown.group(1).replace("&#34;", '"')

    response = await client.post(
        f"/schedules/{schedule.id}",
        data=form(name="renamed", other_options=other),
        allow_redirects=False,
    )

    updated = await store.get_schedule(schedule.id)
    assert response.status == 303
    assert updated is not None
    assert updated.name == "renamed"
    assert updated.job["selectors"] == [
        {"name": "h1", "css": "h1", "attr": None, "all": False}
    ]


async def test_edit_changes_next_run(client: Client, store: SqliteStore) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=1_900_000_000)

    await client.post(f"/schedules/{schedule.id}", data=form(cron="0 5 * * *"))

    updated = await store.get_schedule(schedule.id)
    assert updated is not None
    assert updated.cron == "0 5 * * *"
    assert updated.next_run_at != 1_900_000_000


async def test_edit_error_rerenders(client: Client, store: SqliteStore) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=1_900_000_000)

    response = await client.post(f"/schedules/{schedule.id}", data=form(missed="x"))

    html = await response.text()
    assert response.status == 422
    assert "'run_once' or 'skip'" in element_text(html, "error-missed").replace(
        "&#39;", "'"
    )


async def test_buttons(client: Client, store: SqliteStore) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=1_900_000_000)
    page = f"/schedules/{schedule.id}"

    disable = await client.post(f"{page}/disable", allow_redirects=False)
    disabled = await store.get_schedule(schedule.id)
    enable = await client.post(f"{page}/enable", allow_redirects=False)
    enabled = await store.get_schedule(schedule.id)
    run = await client.post(f"{page}/run", allow_redirects=False)
    delete = await client.post(f"{page}/delete", allow_redirects=False)

    assert disable.status == enable.status == run.status == delete.status == 303
    assert disable.headers["Location"] == page
    assert disabled is not None and disabled.next_run_at is None
    assert enabled is not None and enabled.next_run_at is not None
    jobs = await store.list_jobs()
    assert run.headers["Location"] == f"/jobs/{jobs.items[0].id}"
    assert delete.headers["Location"] == "/schedules"
    assert await store.get_schedule(schedule.id) is None


async def test_hostile_name_escaped(client: Client, store: SqliteStore) -> None:
    schedule = await store.create_schedule(
        ScheduleSpec(name=HOSTILE_NAME, cron="@daily", timezone="UTC", job={}),
        next_run_at=None,
    )

    for path in ("/schedules", f"/schedules/{schedule.id}"):
        html = await (await client.get(path)).text()
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html, path


async def test_form_from_other_origin(client: Client, store: SqliteStore) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=None)

    for path in (
        "/schedules",
        f"/schedules/{schedule.id}",
        f"/schedules/{schedule.id}/run",
    ):
        response = await client.post(
            path, data=form(), headers={"Origin": "http://evil.example"}
        )
        assert response.status == 403, path
        assert response.content_type == "text/html"
    assert (await store.list_jobs()).items == []


async def test_form_from_same_origin(client: Client) -> None:
    origin = f"http://{client.server.host}:{client.server.port}"

    response = await client.post(
        "/schedules", data=form(), headers={"Origin": origin}, allow_redirects=False
    )

    assert response.status == 303


async def test_unknown_schedule_page(client: Client) -> None:
    for method, path in (
        ("GET", "/schedules/missing"),
        ("POST", "/schedules/missing"),
        ("POST", "/schedules/missing/run"),
        ("POST", "/schedules/missing/delete"),
    ):
        response = await client.request(method, path, data=form())
        assert response.status == 404, path
        assert response.content_type == "text/html"
        assert "missing" in element_text(await response.text(), "error-detail")


async def test_no_inline_scripts(client: Client, store: SqliteStore) -> None:
    schedule = await store.create_schedule(SPEC, next_run_at=None)

    for path in ("/schedules", f"/schedules/{schedule.id}"):
        html = await (await client.get(path)).text()
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert re.findall(r"\son[a-z]+=", html) == [], path

"""The server-rendered status pages: listing, the start form, a job's page."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from crawler.records import PageError
from crawler.store.base import JobState
from crawler.store.sqlite import SqliteStore
from tests.web.helpers import SEED, Client, make_record

MakeClient = Callable[[web.Application], Awaitable[Client]]
HOSTILE_TITLE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
STABLE_IDS = (
    "job-state",
    "counter-fetched",
    "counter-failed",
    "counter-queued",
    "pages-per-second",
    "throughput-chart",
)


def _form(**fields: str) -> dict[str, str]:
    return {
        "seeds": SEED,
        "max_pages": "50",
        "max_depth": "2",
        "concurrency": "4",
        "scope": "host",
        "allowed_domains": "",
        **fields,
    }


def _element_text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match is not None, element_id
    return match.group(1).strip()


async def test_index_lists_jobs(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    response = await client.get("/")
    assert response.status == 200
    html = await response.text()
    assert f'href="/jobs/{job.id}"' in html
    assert 'id="start-form"' in html


async def test_index_without_jobs(client: Client) -> None:
    html = await (await client.get("/")).text()
    assert 'id="no-jobs"' in html


async def test_form_success_redirects(client: Client, store: SqliteStore) -> None:
    response = await client.post("/jobs", data=_form(), allow_redirects=False)
    assert response.status == 303
    location = response.headers["Location"]
    assert re.fullmatch(r"/jobs/[A-Za-z0-9_-]+", location)
    job = await store.get_job(location.rpartition("/")[2])
    assert job is not None
    assert job.options["max_pages"] == 50
    assert job.options["seeds"] == [SEED]


async def test_form_takes_several_seeds(client: Client, store: SqliteStore) -> None:
    seeds = f"{SEED}a\r\n\r\n  {SEED}b  \r\n"
    response = await client.post(
        "/jobs", data=_form(seeds=seeds), allow_redirects=False
    )
    job = await store.get_job(response.headers["Location"].rpartition("/")[2])
    assert job is not None
    assert job.options["seeds"] == [f"{SEED}a", f"{SEED}b"]


async def test_form_error_rerenders(client: Client, store: SqliteStore) -> None:
    response = await client.post("/jobs", data=_form(max_pages="0"))
    assert response.status == 422
    html = await response.text()
    message = _element_text(html, "error-max_pages")
    assert "max_pages must be an integer from 1" in message
    assert 'value="0"' in html
    assert (await store.list_jobs()).items == []


async def test_form_rejects_non_number(client: Client) -> None:
    response = await client.post("/jobs", data=_form(concurrency="many"))
    html = await response.text()
    assert "&#39;many&#39;" in _element_text(html, "error-concurrency")


async def test_form_rejects_bad_seed(client: Client) -> None:
    response = await client.post("/jobs", data=_form(seeds="ftp://example.org/"))
    html = await response.text()
    assert "not a crawlable URL" in _element_text(html, "error-seeds")
    assert "ftp://example.org/</textarea>" in html


async def test_form_allowlist_needs_domains(client: Client) -> None:
    response = await client.post("/jobs", data=_form(scope="allowlist"))
    html = await response.text()
    assert "allowed_domains" in _element_text(html, "error-allowed_domains")


async def test_form_from_other_origin(client: Client) -> None:
    response = await client.post(
        "/jobs", data=_form(), headers={"Origin": "http://evil.example"}
    )
    assert response.status == 403
    assert response.content_type == "text/html"


async def test_form_from_same_origin(client: Client) -> None:
    origin = f"http://{client.server.host}:{client.server.port}"
    response = await client.post(
        "/jobs", data=_form(), headers={"Origin": origin}, allow_redirects=False
    )
    assert response.status == 303


async def test_job_page_has_stable_ids(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    html = await (await client.get(f"/jobs/{job.id}")).text()
    for element_id in STABLE_IDS:
        assert f'id="{element_id}"' in html, element_id
    assert _element_text(html, "job-state") == "queued"


async def test_job_page_counters(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    await store.save_page(job.id, make_record("a"))
    await store.save_page(
        job.id,
        make_record("b", status=None, error=PageError("timeout", "timed out")),
    )
    html = await (await client.get(f"/jobs/{job.id}")).text()
    assert _element_text(html, "counter-fetched") == "1"
    assert _element_text(html, "counter-failed") == "1"
    assert 'id="errors-by-kind"' in html


async def test_hostile_title_escaped(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    await store.save_page(job.id, make_record("evil", title=HOSTILE_TITLE))
    html = await (await client.get(f"/jobs/{job.id}")).text()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


async def test_latest_pages_newest_first(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    for index in range(25):
        await store.save_page(job.id, make_record(f"p{index}", title=f"T{index}"))
    html = await (await client.get(f"/jobs/{job.id}")).text()
    titles = re.findall(r"<td>(T\d+)</td>", html)
    assert titles == [f"T{index}" for index in range(24, 4, -1)]


async def test_running_page_refreshes_without_js(
    client: Client, store: SqliteStore
) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    html = await (await client.get(f"/jobs/{job.id}")).text()
    assert '<meta http-equiv="refresh"' in html


async def test_final_page_does_not_refresh(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    await store.transition(job.id, JobState.CANCELLED, allowed_from={JobState.QUEUED})
    html = await (await client.get(f"/jobs/{job.id}")).text()
    assert 'http-equiv="refresh"' not in html
    assert 'id="action-cancel"' not in html


async def test_pause_button_redirects(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    response = await client.post(f"/jobs/{job.id}/pause", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"/jobs/{job.id}"
    paused = await store.get_job(job.id)
    assert paused is not None
    assert paused.state is JobState.PAUSED


async def test_paused_page_offers_resume(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    await client.post(f"/jobs/{job.id}/pause")
    html = await (await client.get(f"/jobs/{job.id}")).text()
    assert 'id="action-resume"' in html
    assert 'id="action-pause"' not in html


async def test_invalid_button_is_409_page(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    response = await client.post(f"/jobs/{job.id}/resume")
    assert response.status == 409
    assert response.content_type == "text/html"
    assert "queued" in _element_text(await response.text(), "error-detail")


async def test_delete_button(client: Client, store: SqliteStore) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    response = await client.post(f"/jobs/{job.id}/delete", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    assert await store.get_job(job.id) is None


async def test_unknown_job_page(client: Client) -> None:
    response = await client.get("/jobs/missing", headers={"X-Request-Id": "r-404"})
    assert response.status == 404
    assert response.content_type == "text/html"
    html = await response.text()
    assert "missing" in _element_text(html, "error-detail")
    assert _element_text(html, "request-id") == "r-404"


async def test_unknown_page_route(client: Client) -> None:
    response = await client.get("/no/such/page")
    assert response.status == 404
    assert response.content_type == "text/html"


async def test_html_security_headers(client: Client) -> None:
    response = await client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_no_inline_scripts_or_handlers(
    client: Client, store: SqliteStore
) -> None:
    job, _ = await store.create_job({"seeds": [SEED]})
    for path in ("/", f"/jobs/{job.id}", "/api/docs"):
        html = await (await client.get(path)).text()
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path
        assert re.findall(r"\son[a-z]+=", html) == [], path


async def test_static_script_served(client: Client) -> None:
    response = await client.get("/static/job.js")
    assert response.status == 200
    assert "throughput-chart" in await response.text()


async def test_page_error_hides_traceback(
    app: web.Application, aiohttp_client: MakeClient
) -> None:
    async def fail(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/fail", fail)
    client = await aiohttp_client(app)
    response = await client.get("/fail", headers={"X-Request-Id": "r-html"})
    assert response.status == 500
    assert response.content_type == "text/html"
    html = await response.text()
    assert "secret internals" not in html
    assert _element_text(html, "request-id") == "r-html"

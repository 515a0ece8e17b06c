"""The status pages: server-rendered HTML that works without JavaScript.

Forms post to these routes and get a 303 redirect back (post/redirect/get),
so reloading a page never repeats an action. Every value shown is escaped by
Jinja2's autoescaping, titles of crawled pages included.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crawler.errors import InvalidOptionError
from crawler.options import SCOPES, CrawlOptions
from crawler.store.base import FINAL_STATES, Job, Store
from web.api.jobs import load_job
from web.api.params import parse_cursor
from web.forms import read_form
from web.job_actions import JOB_ACTIONS, apply_job_action, job_not_found
from web.job_summary import DEFAULT_OPTIONS, JobSummary, summarize_job
from web.keys import REQUEST_ID, STORE
from web.paths import job_page_path

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

JOBS_PER_PAGE = 50
LATEST_PAGES = 20
INTEGER_FIELDS = ("max_pages", "max_depth", "concurrency")
FORM_FIELDS = ("seeds", *INTEGER_FIELDS, "scope", "allowed_domains")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def options_from_form(form: Mapping[str, str]) -> CrawlOptions:
    """Build options from the start form; empty number fields take the defaults.

    Raises InvalidOptionError naming the form field, as the API does.
    """
    data: dict[str, Any] = {"seeds": _lines(form.get("seeds", ""))}
    for name in INTEGER_FIELDS:
        raw = form.get(name, "").strip()
        if not raw:
            continue
        try:
            data[name] = int(raw)
        except ValueError:
            raise InvalidOptionError(
                name, f"{name} must be a whole number, got {raw!r}"
            ) from None
    scope = form.get("scope", "").strip()
    if scope:
        data["scope"] = scope
    domains = _lines(form.get("allowed_domains", ""))
    if domains:
        data["allowed_domains"] = domains
    return CrawlOptions.from_mapping(data)


def _default_form() -> dict[str, str]:
    values = {name: str(DEFAULT_OPTIONS[name]) for name in INTEGER_FIELDS}
    return {
        **values,
        "seeds": "",
        "scope": DEFAULT_OPTIONS["scope"],
        "allowed_domains": "",
    }


async def _index_context(request: web.Request) -> dict[str, Any]:
    store = request.app[STORE]
    page = await store.list_jobs(
        limit=JOBS_PER_PAGE, cursor=parse_cursor(request.query)
    )
    summaries = [await summarize_job(store, job) for job in page.items]
    return {
        "summaries": summaries,
        "next_cursor": page.next_cursor,
        "form": _default_form(),
        "errors": {},
        "general_error": None,
        "scopes": SCOPES,
    }


@routes.get("/", name="index")
@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    return await _index_context(request)


@routes.post("/jobs", name="create_job_form")
async def create_job_form(request: web.Request) -> web.StreamResponse:
    """Start a crawl from the form, or show the form again with the error."""
    form = await read_form(request)

    try:
        options = options_from_form(form)
    except InvalidOptionError as exc:
        context = await _index_context(request)
        context["form"] = {**_default_form(), **form}
        if exc.option in FORM_FIELDS:
            context["errors"] = {exc.option: exc.message}
        else:
            context["general_error"] = exc.message
        return aiohttp_jinja2.render_template(
            "index.html", request, context, status=422
        )

    job, _ = await request.app[STORE].create_job(options.to_mapping())
    logger.info(
        "job %s created from the form (request_id=%s)", job.id, request[REQUEST_ID]
    )
    raise web.HTTPSeeOther(job_page_path(job.id))


async def _latest_pages(store: Store, job_id: str) -> list[dict[str, Any]]:
    """Return the newest records, newest first.

    NOTE: the store lists records oldest first only, so this reads every
    record of the job. A store query for the newest records would avoid that.
    """
    latest: deque[dict[str, Any]] = deque(maxlen=LATEST_PAGES)
    async for record in store.iter_pages(job_id):
        latest.append(record)
    return list(reversed(latest))


def _available_actions(job: Job) -> list[str]:
    return [
        action.name
        for action in JOB_ACTIONS.values()
        if job.state in action.allowed_from
    ]


@routes.get("/jobs/{job_id}", name="job_page")
@aiohttp_jinja2.template("job.html")
async def job_page(request: web.Request) -> dict[str, Any]:
    store = request.app[STORE]
    job = await load_job(store, request.match_info["job_id"])
    summary: JobSummary = await summarize_job(store, job)
    return {
        "summary": summary,
        "job": job,
        "is_final": job.state in FINAL_STATES,
        "actions": _available_actions(job),
        "latest_pages": await _latest_pages(store, job.id),
    }


def _action_form_route(action_name: str) -> web.RouteDef:
    action = JOB_ACTIONS[action_name]

    async def handle(request: web.Request) -> web.StreamResponse:
        job = await apply_job_action(
            request.app[STORE],
            request.match_info["job_id"],
            action,
            request_id=request[REQUEST_ID],
        )
        raise web.HTTPSeeOther(job_page_path(job.id))

    handle.__name__ = f"{action_name}_job_form"
    return web.post(
        f"/jobs/{{job_id}}/{action_name}", handle, name=f"{action_name}_job_form"
    )


action_form_routes = [_action_form_route(name) for name in JOB_ACTIONS]


@routes.post("/jobs/{job_id}/delete", name="delete_job_form")
async def delete_job_form(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["job_id"]
    if not await request.app[STORE].delete_job(job_id):
        raise job_not_found(job_id)
    logger.info(
        "job %s deleted from its page (request_id=%s)", job_id, request[REQUEST_ID]
    )
    raise web.HTTPSeeOther("/")

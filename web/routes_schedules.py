"""The schedule status pages: the list with its form, and one schedule's page.

Like the job pages, they work without JavaScript. Forms post here and get a
303 redirect back (post/redirect/get). An invalid form comes back with the
error next to its field and status 422. Every value shown is escaped by
Jinja2's autoescaping, and the same-origin middleware rejects forms posted
from other sites.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from crawler.errors import InvalidOptionError, InvalidScheduleError
from crawler.options import SCOPES
from crawler.schedule import parse_schedule_spec, zone_names
from crawler.scheduler import start_manual_run
from crawler.store.schedules import Missed, Overlap
from web.api.params import parse_cursor
from web.forms import read_form
from web.keys import REQUEST_ID, STORE
from web.paths import job_page_path, schedule_page_path
from web.schedule_actions import (
    create_schedule,
    delete_schedule,
    load_schedule,
    update_schedule,
)
from web.schedule_form import (
    default_form,
    form_field_of,
    form_from_schedule,
    schedule_body_from_form,
)
from web.schedule_view import view_schedule

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

SCHEDULES_PER_PAGE = 50


def _form_choices() -> dict[str, Any]:
    return {
        "scopes": SCOPES,
        "overlaps": [choice.value for choice in Overlap],
        "misseds": [choice.value for choice in Missed],
        "zone_names": zone_names(),
    }


def _form_errors(exc: InvalidScheduleError | InvalidOptionError) -> dict[str, str]:
    field = exc.field if isinstance(exc, InvalidScheduleError) else exc.option
    return {form_field_of(field): exc.message}


async def _list_context(request: web.Request) -> dict[str, Any]:
    store = request.app[STORE]
    page = await store.list_schedules(
        limit=SCHEDULES_PER_PAGE, cursor=parse_cursor(request.query)
    )
    views = [await view_schedule(store, schedule, runs=1) for schedule in page.items]
    return {
        "views": views,
        "next_cursor": page.next_cursor,
        "form": default_form(),
        "errors": {},
        **_form_choices(),
    }


@routes.get("/schedules", name="schedules_page")
@aiohttp_jinja2.template("schedules.html")
async def schedules_page(request: web.Request) -> dict[str, Any]:
    return await _list_context(request)


@routes.post("/schedules", name="create_schedule_form")
async def create_schedule_form(request: web.Request) -> web.StreamResponse:
    """Create a schedule from the form, or show the form again with the error."""
    form = await read_form(request)
    try:
        spec = parse_schedule_spec(schedule_body_from_form(form))
    except (InvalidScheduleError, InvalidOptionError) as exc:
        context = await _list_context(request)
        context["form"] = {**default_form(), **form, "enabled": form.get("enabled", "")}
        context["errors"] = _form_errors(exc)
        return aiohttp_jinja2.render_template(
            "schedules.html", request, context, status=422
        )

    schedule = await create_schedule(
        request.app[STORE], spec, request_id=request[REQUEST_ID]
    )
    raise web.HTTPSeeOther(schedule_page_path(schedule.id))


async def _detail_context(request: web.Request, schedule_id: str) -> dict[str, Any]:
    store = request.app[STORE]
    schedule = await load_schedule(store, schedule_id)
    return {
        "view": await view_schedule(store, schedule),
        "form": form_from_schedule(schedule),
        "errors": {},
        **_form_choices(),
    }


@routes.get("/schedules/{schedule_id}", name="schedule_page")
@aiohttp_jinja2.template("schedule.html")
async def schedule_page(request: web.Request) -> dict[str, Any]:
    return await _detail_context(request, request.match_info["schedule_id"])


@routes.post("/schedules/{schedule_id}", name="update_schedule_form")
async def update_schedule_form(request: web.Request) -> web.StreamResponse:
    """Replace the schedule with the form's values, or show the form's error."""
    store = request.app[STORE]
    schedule = await load_schedule(store, request.match_info["schedule_id"])
    form = await read_form(request)
    try:
        spec = parse_schedule_spec(schedule_body_from_form(form))
    except (InvalidScheduleError, InvalidOptionError) as exc:
        context = await _detail_context(request, schedule.id)
        context["form"] = {**default_form(), **form, "enabled": form.get("enabled", "")}
        context["errors"] = _form_errors(exc)
        return aiohttp_jinja2.render_template(
            "schedule.html", request, context, status=422
        )

    await update_schedule(store, schedule, spec, request_id=request[REQUEST_ID])
    raise web.HTTPSeeOther(schedule_page_path(schedule.id))


def _enabled_form_route(enabled: bool) -> web.RouteDef:
    action = "enable" if enabled else "disable"

    async def handle(request: web.Request) -> web.StreamResponse:
        store = request.app[STORE]
        schedule = await load_schedule(store, request.match_info["schedule_id"])
        if schedule.enabled != enabled:
            spec = dataclasses.replace(schedule.spec, enabled=enabled)
            await update_schedule(store, schedule, spec, request_id=request[REQUEST_ID])
        raise web.HTTPSeeOther(schedule_page_path(schedule.id))

    handle.__name__ = f"{action}_schedule_form"
    return web.post(
        f"/schedules/{{schedule_id}}/{action}", handle, name=f"{action}_schedule_form"
    )


enabled_form_routes = [_enabled_form_route(True), _enabled_form_route(False)]


@routes.post("/schedules/{schedule_id}/run", name="run_schedule_form")
async def run_schedule_form(request: web.Request) -> web.StreamResponse:
    """Start a job from the schedule now and show the job's page."""
    store = request.app[STORE]
    schedule = await load_schedule(store, request.match_info["schedule_id"])
    job, _ = await start_manual_run(store, schedule, now=time.time())
    raise web.HTTPSeeOther(job_page_path(job.id))


@routes.post("/schedules/{schedule_id}/delete", name="delete_schedule_form")
async def delete_schedule_form(request: web.Request) -> web.StreamResponse:
    await delete_schedule(
        request.app[STORE],
        request.match_info["schedule_id"],
        request_id=request[REQUEST_ID],
    )
    raise web.HTTPSeeOther("/schedules")

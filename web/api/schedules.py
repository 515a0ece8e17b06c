"""The schedules resource: create, list, read, update, enable, disable, delete
and run now."""

from __future__ import annotations

import dataclasses
import logging
import time

from aiohttp import web

from crawler.schedule import parse_schedule_spec
from crawler.scheduler import start_manual_run
from crawler.store.base import Store
from crawler.store.schedules import Schedule
from web.api.body import read_json_object
from web.api.params import parse_cursor, parse_idempotency_key, parse_limit
from web.job_summary import job_to_json, summarize_job
from web.keys import REQUEST_ID, STORE
from web.paths import API_PREFIX, job_api_path, schedule_api_path
from web.problems import InvalidBodyError, InvalidParameterError
from web.schedule_actions import (
    create_schedule,
    delete_schedule,
    load_schedule,
    update_schedule,
)
from web.schedule_view import schedule_to_json, view_schedule

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_SCHEDULES_LIMIT = 100
DEFAULT_SCHEDULES_LIMIT = 20


async def _schedule_response(
    store: Store, schedule: Schedule, *, status: int = 200
) -> web.Response:
    view = await view_schedule(store, schedule)
    return web.json_response(schedule_to_json(view, with_runs=True), status=status)


@routes.post(f"{API_PREFIX}/schedules", name="api_create_schedule")
async def create(request: web.Request) -> web.Response:
    """Validate the schedule and store it. Its first run is the next due time.

    An ``Idempotency-Key`` is rejected rather than ignored: a retried create
    would otherwise store a second schedule, and every due time would then
    start two jobs.
    """
    store = request.app[STORE]
    if "Idempotency-Key" in request.headers:
        raise InvalidParameterError(
            "Idempotency-Key is not supported when creating a schedule; send the "
            "request without it, and after a timeout list the schedules "
            "(GET /api/v1/schedules) before you retry.",
            field="Idempotency-Key",
        )
    spec = parse_schedule_spec(await read_json_object(request))
    schedule = await create_schedule(store, spec, request_id=request[REQUEST_ID])
    response = await _schedule_response(store, schedule, status=201)
    response.headers["Location"] = schedule_api_path(schedule.id)
    return response


@routes.get(f"{API_PREFIX}/schedules", name="api_list_schedules")
async def list_schedules(request: web.Request) -> web.Response:
    store = request.app[STORE]
    page = await store.list_schedules(
        limit=parse_limit(
            request.query,
            default=DEFAULT_SCHEDULES_LIMIT,
            maximum=MAX_SCHEDULES_LIMIT,
        ),
        cursor=parse_cursor(request.query),
    )
    items = []
    for schedule in page.items:
        view = await view_schedule(store, schedule, runs=1)
        items.append(schedule_to_json(view, with_runs=False))
    return web.json_response({"items": items, "next_cursor": page.next_cursor})


@routes.get(f"{API_PREFIX}/schedules/{{schedule_id}}", name="api_schedule")
async def get_schedule(request: web.Request) -> web.Response:
    store = request.app[STORE]
    schedule = await load_schedule(store, request.match_info["schedule_id"])
    return await _schedule_response(store, schedule)


@routes.patch(f"{API_PREFIX}/schedules/{{schedule_id}}", name="api_update_schedule")
async def update(request: web.Request) -> web.Response:
    """Change the fields in the body.

    A new cron, time zone or enabled value recomputes the next run time from
    now.
    """
    store = request.app[STORE]
    schedule = await load_schedule(store, request.match_info["schedule_id"])
    body = await read_json_object(request)
    spec = parse_schedule_spec(body, current=schedule.spec)
    updated = await update_schedule(
        store, schedule, spec, request_id=request[REQUEST_ID]
    )
    return await _schedule_response(store, updated)


@routes.delete(f"{API_PREFIX}/schedules/{{schedule_id}}", name="api_delete_schedule")
async def delete(request: web.Request) -> web.Response:
    await delete_schedule(
        request.app[STORE],
        request.match_info["schedule_id"],
        request_id=request[REQUEST_ID],
    )
    return web.Response(status=204)


def _enabled_route(enabled: bool) -> web.RouteDef:
    action = "enable" if enabled else "disable"

    async def handle(request: web.Request) -> web.Response:
        store = request.app[STORE]
        schedule = await load_schedule(store, request.match_info["schedule_id"])
        if schedule.enabled != enabled:
            spec = dataclasses.replace(schedule.spec, enabled=enabled)
            schedule = await update_schedule(
                store, schedule, spec, request_id=request[REQUEST_ID]
            )
        return await _schedule_response(store, schedule)

    handle.__name__ = f"{action}_schedule"
    return web.post(
        f"{API_PREFIX}/schedules/{{schedule_id}}/{action}",
        handle,
        name=f"api_{action}_schedule",
    )


enabled_routes = [_enabled_route(True), _enabled_route(False)]


@routes.post(f"{API_PREFIX}/schedules/{{schedule_id}}/run", name="api_run_schedule")
async def run_now(request: web.Request) -> web.Response:
    """Start a job from the schedule's template now, enabled or not.

    With an ``Idempotency-Key``, the first request returns 201 and every
    repeat returns 200 and the same job.
    """
    store = request.app[STORE]
    client_key = parse_idempotency_key(request.headers)
    schedule = await load_schedule(store, request.match_info["schedule_id"])
    if (await request.read()).strip() not in (b"", b"{}"):
        raise InvalidBodyError(
            "POST /schedules/{id}/run takes no body: the job uses the schedule's "
            "template. Change the template with PATCH /api/v1/schedules/{id}, or "
            "start a one-off job with POST /api/v1/jobs.",
        )
    job, created = await start_manual_run(
        store, schedule, now=time.time(), client_key=client_key
    )
    summary = await summarize_job(store, job)
    response = web.json_response(job_to_json(summary), status=201 if created else 200)
    response.headers["Location"] = job_api_path(job.id)
    return response

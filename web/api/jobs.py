"""The jobs resource: create, list, read, cancel, pause, resume and delete."""

from __future__ import annotations

import logging

from aiohttp import web

from crawler.options import CrawlOptions
from crawler.store.base import Job, Store
from web.api.body import read_json_object
from web.api.params import (
    parse_cursor,
    parse_idempotency_key,
    parse_limit,
    parse_states,
)
from web.job_actions import JOB_ACTIONS, apply_job_action, job_not_found
from web.job_summary import job_to_json, summarize_job
from web.keys import REQUEST_ID, STORE
from web.paths import API_PREFIX, job_api_path
from web.problems import IdempotencyConflictError

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_JOBS_LIMIT = 100
DEFAULT_JOBS_LIMIT = 20


async def load_job(store: Store, job_id: str) -> Job:
    """Return the job, or raise the 404 problem."""
    job = await store.get_job(job_id)
    if job is None:
        raise job_not_found(job_id)
    return job


async def _job_response(store: Store, job: Job, *, status: int = 200) -> web.Response:
    summary = await summarize_job(store, job)
    return web.json_response(job_to_json(summary), status=status)


@routes.post(f"{API_PREFIX}/jobs", name="api_create_job")
async def create_job(request: web.Request) -> web.Response:
    """Validate the options and queue a job.

    With an ``Idempotency-Key``, the first request returns 201 and every
    repeat with the same options returns 200 and the same job. The options
    are compared after defaults are filled in, so leaving out an option and
    sending its default count as the same request.
    """
    store = request.app[STORE]
    idempotency_key = parse_idempotency_key(request.headers)
    body = await read_json_object(request)
    options = CrawlOptions.from_mapping(body).to_mapping()

    job, created = await store.create_job(options, idempotency_key=idempotency_key)
    if not created and job.options != options:
        raise IdempotencyConflictError(
            f"Idempotency-Key {idempotency_key!r} was already used for job "
            f"{job.id} with other options; use a new key for a new job.",
            field="Idempotency-Key",
            extra={"job_id": job.id},
        )

    request_id = request[REQUEST_ID]
    if created:
        logger.info("job %s created (request_id=%s)", job.id, request_id)
    else:
        logger.info(
            "job %s returned again for its idempotency key (request_id=%s)",
            job.id,
            request_id,
        )
    response = await _job_response(store, job, status=201 if created else 200)
    response.headers["Location"] = job_api_path(job.id)
    return response


@routes.get(f"{API_PREFIX}/jobs", name="api_list_jobs")
async def list_jobs(request: web.Request) -> web.Response:
    store = request.app[STORE]
    page = await store.list_jobs(
        states=parse_states(request.query),
        limit=parse_limit(
            request.query, default=DEFAULT_JOBS_LIMIT, maximum=MAX_JOBS_LIMIT
        ),
        cursor=parse_cursor(request.query),
    )
    items = []
    for job in page.items:
        items.append(job_to_json(await summarize_job(store, job)))
    return web.json_response({"items": items, "next_cursor": page.next_cursor})


@routes.get(f"{API_PREFIX}/jobs/{{job_id}}", name="api_job")
async def get_job(request: web.Request) -> web.Response:
    store = request.app[STORE]
    job = await load_job(store, request.match_info["job_id"])
    return await _job_response(store, job)


@routes.delete(f"{API_PREFIX}/jobs/{{job_id}}", name="api_delete_job")
async def delete_job(request: web.Request) -> web.Response:
    """Delete the job with its frontier and pages, in any state.

    A running job is deleted too: its worker notices that the job is gone and
    stops, so the client need not cancel and wait first.
    """
    job_id = request.match_info["job_id"]
    if not await request.app[STORE].delete_job(job_id):
        raise job_not_found(job_id)
    logger.info("job %s deleted (request_id=%s)", job_id, request[REQUEST_ID])
    return web.Response(status=204)


def _action_route(action_name: str) -> web.RouteDef:
    action = JOB_ACTIONS[action_name]

    async def handle(request: web.Request) -> web.Response:
        store = request.app[STORE]
        job = await apply_job_action(
            store,
            request.match_info["job_id"],
            action,
            request_id=request[REQUEST_ID],
        )
        return await _job_response(store, job)

    handle.__name__ = f"{action_name}_job"
    return web.post(
        f"{API_PREFIX}/jobs/{{job_id}}/{action_name}",
        handle,
        name=f"api_{action_name}_job",
    )


action_routes = [_action_route(name) for name in JOB_ACTIONS]

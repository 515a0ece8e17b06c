"""Page records of a job: the paginated listings of pages and of errors."""

from __future__ import annotations

from aiohttp import web

from crawler.store.base import PageFilter
from web.api.jobs import load_job
from web.api.params import parse_cursor, parse_limit, parse_page_filter
from web.keys import STORE
from web.paths import API_PREFIX

routes = web.RouteTableDef()

MAX_PAGES_LIMIT = 1000
DEFAULT_PAGES_LIMIT = 100


async def _list_records(request: web.Request, filters: PageFilter) -> web.Response:
    store = request.app[STORE]
    job = await load_job(store, request.match_info["job_id"])
    page = await store.list_pages(
        job.id,
        filters=filters,
        limit=parse_limit(
            request.query, default=DEFAULT_PAGES_LIMIT, maximum=MAX_PAGES_LIMIT
        ),
        cursor=parse_cursor(request.query),
    )
    return web.json_response({"items": page.items, "next_cursor": page.next_cursor})


@routes.get(f"{API_PREFIX}/jobs/{{job_id}}/pages", name="api_job_pages")
async def list_pages(request: web.Request) -> web.Response:
    return await _list_records(request, parse_page_filter(request.query))


@routes.get(f"{API_PREFIX}/jobs/{{job_id}}/errors", name="api_job_errors")
async def list_errors(request: web.Request) -> web.Response:
    """List the records that carry an error: failed fetches and skipped URLs."""
    filters = parse_page_filter(request.query, errors_only=True)
    return await _list_records(request, filters)

"""Scope checks: would a crawl with these options fetch these URLs, and if not, why."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crawler.errors import InvalidUrlError
from crawler.options import CrawlOptions
from crawler.scope import Scope
from crawler.urls import normalize_url
from web.api.body import read_json_object
from web.api.jobs import load_job
from web.keys import STORE
from web.paths import API_PREFIX
from web.problems import InvalidBodyError

routes = web.RouteTableDef()

MAX_URLS = 1000


def check_url(scope: Scope, url: str) -> dict[str, Any]:
    """Return the decision for one URL, as the API's ScopeCheckResult.

    This applies the stateless rules only (``Scope.check``): the
    query-variant limit depends on what a crawl has already admitted.
    """
    try:
        normalized = normalize_url(url)
    except InvalidUrlError as exc:
        return {
            "url": url,
            "normalized": None,
            "allowed": False,
            "reason": "invalid_url",
            "rule": "invalid_url",
            "detail": exc.reason,
        }
    decision = scope.check(normalized)
    return {
        "url": url,
        "normalized": normalized,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "rule": decision.rule,
        "detail": decision.detail,
    }


def _read_urls(body: dict[str, Any]) -> list[str]:
    urls = body.get("urls")
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise InvalidBodyError(
            'urls must be a list of URL strings, for example {"urls": '
            '["https://example.org/a"], "job_id": "..."}',
            field="urls",
        )
    if not 1 <= len(urls) <= MAX_URLS:
        raise InvalidBodyError(
            f"urls must contain from 1 to {MAX_URLS} URLs, got {len(urls)}; "
            "split longer lists into several requests",
            field="urls",
        )
    return urls


async def _read_options(request: web.Request, body: dict[str, Any]) -> CrawlOptions:
    has_options, has_job = "options" in body, "job_id" in body
    if has_options == has_job:
        raise InvalidBodyError(
            "Give exactly one of options (crawl options as for POST /api/v1/jobs) "
            "or job_id (to use that job's options).",
            field="options",
        )

    if has_job:
        job_id = body["job_id"]
        if not isinstance(job_id, str):
            raise InvalidBodyError("job_id must be a string", field="job_id")
        job = await load_job(request.app[STORE], job_id)
        return CrawlOptions.from_mapping(job.options)

    options = body["options"]
    if not isinstance(options, dict):
        raise InvalidBodyError(
            "options must be an object of crawl options, as for POST /api/v1/jobs",
            field="options",
        )
    return CrawlOptions.from_mapping(options)


@routes.post(f"{API_PREFIX}/scope-check", name="api_scope_check")
async def scope_check(request: web.Request) -> web.Response:
    """Check URLs against the scope of given options or of an existing job.

    Invalid options raise InvalidOptionError, which becomes a 422 problem
    whose field names the option.
    """
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"options", "job_id", "urls"})
    if unknown:
        raise InvalidBodyError(
            f"unknown member {unknown[0]!r}; the body takes options or job_id, "
            "and urls",
            field=unknown[0],
        )
    urls = _read_urls(body)
    options = await _read_options(request, body)
    scope = Scope(options, options.seeds)
    return web.json_response({"results": [check_url(scope, url) for url in urls]})

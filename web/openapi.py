"""The OpenAPI 3.1 document of every route the app serves.

The crawl options' schema is derived from :class:`~crawler.options.CrawlOptions`
(names, types and defaults), so a new option appears here without an edit.
Ranges are not repeated in the schema. The service checks them and rejects
an out-of-range value with a 422 problem whose ``field`` names the option.
``tests/web/test_openapi.py`` fails when an app route is missing here, and
validates real responses against these schemas.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import MISSING, fields
from typing import Any

from crawler.options import CrawlOptions, Selector
from crawler.records import ERROR_KINDS
from crawler.store.base import JobState
from web.api.exports import CHUNK_RECORDS
from web.api.jobs import DEFAULT_JOBS_LIMIT, MAX_JOBS_LIMIT
from web.api.pages import DEFAULT_PAGES_LIMIT, MAX_PAGES_LIMIT
from web.api.params import MAX_DEPTH_FILTER
from web.api.scope_check import MAX_URLS
from web.job_actions import JOB_ACTIONS
from web.paths import API_PREFIX

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
HTML = "text/html"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# -- schemas ------------------------------------------------------------------


def _type_schema(hint: Any) -> dict[str, Any]:
    """Return the JSON Schema of a CrawlOptions field's type annotation."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    if hint is Selector:
        return _ref("Selector")
    if origin is typing.Literal:
        return {"type": "string", "enum": list(args)}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        if len(members) == 1 and len(args) == 2:
            return _nullable(_type_schema(members[0]))
    raise TypeError(f"no JSON Schema mapping for option type {hint!r}")


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_default(item) for item in value]
    return value


def _options_schema(*, for_request: bool) -> dict[str, Any]:
    """Return the schema of the crawl options, as sent or as stored (all filled)."""
    hints = typing.get_type_hints(CrawlOptions)
    properties: dict[str, Any] = {}
    for option in fields(CrawlOptions):
        property_schema = _type_schema(hints[option.name])
        if option.default is not MISSING:
            property_schema["default"] = _json_default(option.default)
        properties[option.name] = property_schema

    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if for_request:
        schema["description"] = (
            "Crawl options in snake_case; every option but seeds has a default. "
            "seeds (or sitemaps) is required. Unknown options, wrong types and "
            "values out of range get a 422 problem whose field names the option."
        )
        schema["additionalProperties"] = False
    else:
        schema["description"] = "Every crawl option of the job, defaults filled in."
        schema["required"] = list(properties)
    return schema


_SELECTOR = {
    "type": "object",
    "description": "A named CSS selector whose matches are stored in fields.NAME.",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"},
        "css": {"type": "string"},
        "attr": _nullable({"type": "string"}),
        "all": {"type": "boolean", "default": False},
    },
    "required": ["name", "css"],
    "additionalProperties": False,
}

_COUNTS_BY_NAME = {"type": "object", "additionalProperties": {"type": "integer"}}

_JOB_COUNTERS = {
    "type": "object",
    "properties": {
        "queued": {"type": "integer", "description": "URLs waiting in the frontier."},
        "in_progress": {"type": "integer", "description": "URLs being fetched."},
        "fetched": {
            "type": "integer",
            "description": "Records with an HTTP response, any status.",
        },
        "failed": {
            "type": "integer",
            "description": "Records with an error other than robots or out_of_scope.",
        },
        "pages": {"type": "integer", "description": "All stored records."},
        "errors": {
            **_COUNTS_BY_NAME,
            "description": "Records by error kind, robots and out_of_scope included.",
        },
        "skipped": {
            **_COUNTS_BY_NAME,
            "description": "Links not queued, by reason (out_of_scope, trap, ...).",
        },
    },
    "required": [
        "queued",
        "in_progress",
        "fetched",
        "failed",
        "pages",
        "errors",
        "skipped",
    ],
    "additionalProperties": False,
}

_TIME = {"type": "string", "format": "date-time"}

_JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": [state.value for state in JobState]},
        "options": _ref("CrawlOptions"),
        "counters": _ref("JobCounters"),
        "pages_per_second": {
            "type": "number",
            "description": "Average fetch rate from started_at to finished_at or "
            "now, paused time included.",
        },
        "created_at": _TIME,
        "updated_at": _TIME,
        "started_at": _nullable(_TIME),
        "finished_at": _nullable(_TIME),
        "last_error": _nullable({"type": "string"}),
        "schedule_id": _nullable({"type": "string"}),
        "worker": _nullable(
            {
                "type": "string",
                "description": "The worker (host name, process id and a random "
                "suffix) that holds the job's lease and seeded it; other workers "
                "may help with its fetches. Null when no worker holds it.",
            }
        ),
    },
    "required": [
        "id",
        "state",
        "options",
        "counters",
        "pages_per_second",
        "created_at",
        "updated_at",
        "started_at",
        "finished_at",
        "last_error",
        "schedule_id",
        "worker",
    ],
    "additionalProperties": False,
}

_NEXT_CURSOR = _nullable(
    {
        "type": "string",
        "description": "Pass as cursor to get the next page; null on the last page.",
    }
)

_PAGE_RECORD = {
    "type": "object",
    "description": "One fetched or skipped URL, as in the crawler's JSON Lines output.",
    "properties": {
        "url": {"type": "string"},
        "final_url": {"type": "string"},
        "depth": {"type": "integer", "minimum": 0},
        "referrer": _nullable({"type": "string"}),
        "fetched_at": _TIME,
        "status": _nullable({"type": "integer"}),
        "elapsed_ms": _nullable({"type": "integer"}),
        "content_type": _nullable({"type": "string"}),
        "size_bytes": _nullable({"type": "integer"}),
        "encoding": _nullable({"type": "string"}),
        "title": _nullable({"type": "string"}),
        "description": _nullable({"type": "string"}),
        "canonical": _nullable({"type": "string"}),
        "lang": _nullable({"type": "string"}),
        "robots": {"type": "array", "items": {"type": "string"}},
        "links": {
            "type": "object",
            "properties": {
                "count": {"type": "integer"},
                "in_scope": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["count", "in_scope"],
        },
        "fields": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}},
                    {"type": "null"},
                ]
            },
        },
        "error": _nullable(
            {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": list(ERROR_KINDS)},
                    "message": {"type": "string"},
                },
                "required": ["kind", "message"],
            }
        ),
    },
    "required": [
        "url",
        "final_url",
        "depth",
        "referrer",
        "fetched_at",
        "status",
        "robots",
        "links",
        "fields",
        "error",
    ],
}

_SCOPE_CHECK_REQUEST = {
    "type": "object",
    "description": "URLs to check, with crawl options or the id of a job "
    "whose options to use (exactly one of the two).",
    "properties": {
        "options": _ref("CrawlOptionsInput"),
        "job_id": {"type": "string"},
        "urls": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": MAX_URLS,
        },
    },
    "required": ["urls"],
    "oneOf": [{"required": ["options"]}, {"required": ["job_id"]}],
    "additionalProperties": False,
}

_SCOPE_CHECK_RESULT = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "The URL as sent."},
        "normalized": _nullable(
            {"type": "string", "description": "The fetchable form of the URL."}
        ),
        "allowed": {"type": "boolean"},
        "reason": {
            "type": "string",
            "enum": ["", "out_of_scope", "trap", "invalid_url"],
        },
        "rule": {
            "type": "string",
            "description": "The rule that rejected the URL (same_host, "
            "same_domain, allowed_domains, include, exclude, url_length, "
            "path_repeats, query_params, invalid_url); empty when allowed.",
        },
        "detail": {"type": "string"},
    },
    "required": ["url", "normalized", "allowed", "reason", "rule", "detail"],
    "additionalProperties": False,
}

_PROBLEM = {
    "type": "object",
    "description": "An error as RFC 9457 problem details.",
    "properties": {
        "type": {
            "type": "string",
            "description": "A stable code such as /problems/invalid-option.",
        },
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What failed and what to do."},
        "field": {
            "type": "string",
            "description": "The option, parameter or header at fault.",
        },
        "request_id": {"type": "string"},
        "state": {
            "type": "string",
            "description": "For invalid-state problems: the job's current state.",
        },
        "job_id": {
            "type": "string",
            "description": "For idempotency-conflict problems: the existing job.",
        },
    },
    "required": ["type", "title", "status", "detail", "request_id"],
}

_HEALTH = {
    "type": "object",
    "properties": {"status": {"const": "ok"}},
    "required": ["status"],
    "additionalProperties": False,
}


def _schemas() -> dict[str, Any]:
    return {
        "CrawlOptionsInput": _options_schema(for_request=True),
        "CrawlOptions": _options_schema(for_request=False),
        "Selector": _SELECTOR,
        "JobCounters": _JOB_COUNTERS,
        "Job": _JOB,
        "JobList": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": _ref("Job")},
                "next_cursor": _NEXT_CURSOR,
            },
            "required": ["items", "next_cursor"],
            "additionalProperties": False,
        },
        "PageRecord": _PAGE_RECORD,
        "PageList": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": _ref("PageRecord")},
                "next_cursor": _NEXT_CURSOR,
            },
            "required": ["items", "next_cursor"],
            "additionalProperties": False,
        },
        "ScopeCheckRequest": _SCOPE_CHECK_REQUEST,
        "ScopeCheckResult": _SCOPE_CHECK_RESULT,
        "ScopeCheckResponse": {
            "type": "object",
            "properties": {
                "results": {"type": "array", "items": _ref("ScopeCheckResult")}
            },
            "required": ["results"],
            "additionalProperties": False,
        },
        "Health": _HEALTH,
        "Problem": _PROBLEM,
        "JobForm": {
            "type": "object",
            "description": "The status page's form; empty numbers take the defaults.",
            "properties": {
                "seeds": {"type": "string", "description": "One URL per line."},
                "max_pages": {"type": "string"},
                "max_depth": {"type": "string"},
                "concurrency": {"type": "string"},
                "scope": {"type": "string", "enum": ["host", "domain", "allowlist"]},
                "allowed_domains": {
                    "type": "string",
                    "description": "One domain per line, for scope allowlist.",
                },
            },
            "required": ["seeds"],
        },
    }


# -- parameters and responses -------------------------------------------------

_PARAMETERS: dict[str, Any] = {
    "JobId": {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    },
    "Cursor": {
        "name": "cursor",
        "in": "query",
        "description": "next_cursor of the previous page; leave out for the first.",
        "schema": {"type": "string"},
    },
    "JobsLimit": {
        "name": "limit",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_JOBS_LIMIT,
            "default": DEFAULT_JOBS_LIMIT,
        },
    },
    "PagesLimit": {
        "name": "limit",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGES_LIMIT,
            "default": DEFAULT_PAGES_LIMIT,
        },
    },
    "State": {
        "name": "state",
        "in": "query",
        "description": "Only jobs in these states: repeat the parameter or "
        "separate states with commas (state=queued,running).",
        "schema": {"type": "string"},
    },
    "Status": {
        "name": "status",
        "in": "query",
        "description": "Only records whose HTTP status is in this class.",
        "schema": {"type": "string", "pattern": "^[1-5][xX][xX]$"},
    },
    "ErrorKind": {
        "name": "error_kind",
        "in": "query",
        "schema": {"type": "string", "enum": list(ERROR_KINDS)},
    },
    "Depth": {
        "name": "depth",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_DEPTH_FILTER},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "Makes a retried POST return the job the first one "
        "created: 201 the first time, 200 with the same job on every repeat with "
        "the same options, 409 idempotency-conflict with other options.",
        "schema": {"type": "string", "pattern": "^[\\x20-\\x7e]{1,200}$"},
    },
    "RequestId": {
        "name": "X-Request-Id",
        "in": "header",
        "description": "Kept when it is 1 to 128 characters of [A-Za-z0-9._~:+/=-], "
        "else replaced by a new id; echoed in the response and in problems.",
        "schema": {"type": "string"},
    },
}

_PROBLEM_RESPONSES = {
    "BadRequest": "Malformed JSON, or an invalid query parameter, header or cursor.",
    "Forbidden": "A POST or DELETE came from a page on another site (Origin).",
    "NotFound": "No such job, schedule or route.",
    "Conflict": "The job's state does not allow the action, or the "
    "Idempotency-Key was used with other options.",
    "ContentTooLarge": "The body is larger than CRAWLER_MAX_REQUEST_BYTES.",
    "UnsupportedMediaType": "Content-Type is not application/json.",
    "UnprocessableContent": "Valid JSON with an invalid option, schedule field "
    "or member; field names it.",
    "ServiceUnavailable": "The store did not respond.",
    "Error": "Any other error (405, 500, ...), as a problem.",
}


def _responses() -> dict[str, Any]:
    responses: dict[str, Any] = {
        name: {
            "description": description,
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
            "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
        }
        for name, description in _PROBLEM_RESPONSES.items()
    }
    responses["HtmlError"] = {
        "description": "The HTML error page.",
        "content": {HTML: {"schema": {"type": "string"}}},
    }
    return responses


def _problem(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _json(description: str, schema: dict[str, Any], **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _html(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {HTML: {"schema": {"type": "string"}}},
    }


_SEE_OTHER = {
    "description": "Redirect to the page to show next.",
    "headers": {"Location": {"schema": {"type": "string"}}},
}

_LOCATION = {
    "description": "The job's URL.",
    "schema": {"type": "string", "examples": [f"{API_PREFIX}/jobs/abc123"]},
}


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    description: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    request_body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
    }
    if description:
        operation["description"] = description
    operation["parameters"] = [_param("RequestId"), *(parameters or [])]
    if request_body is not None:
        operation["requestBody"] = request_body
    error = "HtmlError" if tag == "html" else "Error"
    operation["responses"] = {**responses, "default": _problem(error)}
    return operation


def _json_body(schema_name: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(schema_name)}}}


def _job_action_operations() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for action in JOB_ACTIONS.values():
        allowed = ", ".join(sorted(state.value for state in action.allowed_from))
        paths[f"{API_PREFIX}/jobs/{{job_id}}/{action.name}"] = {
            "post": _operation(
                f"{action.name}Job",
                f"{action.name.capitalize()} a job",
                "jobs",
                {
                    "200": _json(f"The job, now {action.target.value}.", _ref("Job")),
                    "403": _problem("Forbidden"),
                    "404": _problem("NotFound"),
                    "409": _problem("Conflict"),
                },
                description=f"Moves a job that is {allowed} to "
                f"{action.target.value}; any other state gets 409 invalid-state "
                "with the current state in the problem's state member.",
                parameters=[_param("JobId")],
            )
        }
        paths[f"/jobs/{{job_id}}/{action.name}"] = {
            "post": _operation(
                f"{action.name}JobForm",
                f"{action.name.capitalize()} a job from its status page",
                "html",
                {
                    "303": _SEE_OTHER,
                    "403": _problem("HtmlError"),
                    "404": _problem("HtmlError"),
                    "409": _problem("HtmlError"),
                },
                parameters=[_param("JobId")],
            )
        }
    return paths


def _api_paths() -> dict[str, Any]:
    page_filters = [_param("Status"), _param("ErrorKind"), _param("Depth")]
    return {
        f"{API_PREFIX}/jobs": {
            "post": _operation(
                "createJob",
                "Queue a crawl job",
                "jobs",
                {
                    "201": _json("The new job.", _ref("Job"), Location=_LOCATION),
                    "200": _json(
                        "The job an earlier request with the same "
                        "Idempotency-Key and options created.",
                        _ref("Job"),
                        Location=_LOCATION,
                    ),
                    "400": _problem("BadRequest"),
                    "403": _problem("Forbidden"),
                    "409": _problem("Conflict"),
                    "413": _problem("ContentTooLarge"),
                    "415": _problem("UnsupportedMediaType"),
                    "422": _problem("UnprocessableContent"),
                },
                parameters=[_param("IdempotencyKey")],
                request_body=_json_body("CrawlOptionsInput"),
            ),
            "get": _operation(
                "listJobs",
                "List jobs, newest first",
                "jobs",
                {
                    "200": _json("A page of jobs.", _ref("JobList")),
                    "400": _problem("BadRequest"),
                },
                parameters=[_param("State"), _param("JobsLimit"), _param("Cursor")],
            ),
        },
        f"{API_PREFIX}/jobs/{{job_id}}": {
            "get": _operation(
                "getJob",
                "Read a job",
                "jobs",
                {"200": _json("The job.", _ref("Job")), "404": _problem("NotFound")},
                parameters=[_param("JobId")],
            ),
            "delete": _operation(
                "deleteJob",
                "Delete a job with its frontier and records",
                "jobs",
                {
                    "204": {"description": "Deleted."},
                    "403": _problem("Forbidden"),
                    "404": _problem("NotFound"),
                },
                description="Works in every state. A running job's worker sees "
                "that the job is gone and stops.",
                parameters=[_param("JobId")],
            ),
        },
        f"{API_PREFIX}/jobs/{{job_id}}/pages": {
            "get": _operation(
                "listPages",
                "List a job's page records in the order stored",
                "records",
                {
                    "200": _json("A page of records.", _ref("PageList")),
                    "400": _problem("BadRequest"),
                    "404": _problem("NotFound"),
                },
                parameters=[
                    _param("JobId"),
                    *page_filters,
                    _param("PagesLimit"),
                    _param("Cursor"),
                ],
            )
        },
        f"{API_PREFIX}/jobs/{{job_id}}/errors": {
            "get": _operation(
                "listErrors",
                "List a job's records that carry an error",
                "records",
                {
                    "200": _json(
                        "A page of failed and skipped URLs.", _ref("PageList")
                    ),
                    "400": _problem("BadRequest"),
                    "404": _problem("NotFound"),
                },
                parameters=[
                    _param("JobId"),
                    *page_filters,
                    _param("PagesLimit"),
                    _param("Cursor"),
                ],
            )
        },
        f"{API_PREFIX}/jobs/{{job_id}}/pages.jsonl": {
            "get": _operation(
                "exportPagesJsonLines",
                "Download every record as JSON Lines",
                "records",
                {
                    "200": {
                        "description": "One PageRecord object per line, streamed "
                        f"{CHUNK_RECORDS} records at a time; works while the job runs.",
                        "content": {
                            "application/jsonl": {"schema": {"type": "string"}}
                        },
                    },
                    "400": _problem("BadRequest"),
                    "404": _problem("NotFound"),
                },
                parameters=[_param("JobId"), *page_filters],
            )
        },
        f"{API_PREFIX}/jobs/{{job_id}}/pages.csv": {
            "get": _operation(
                "exportPagesCsv",
                "Download every record as CSV",
                "records",
                {
                    "200": {
                        "description": "A header row, then one row per record, "
                        "with a field.NAME column per selector.",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    "400": _problem("BadRequest"),
                    "404": _problem("NotFound"),
                },
                parameters=[_param("JobId"), *page_filters],
            )
        },
        **{
            path: item
            for path, item in _job_action_operations().items()
            if path.startswith(API_PREFIX)
        },
        f"{API_PREFIX}/scope-check": {
            "post": _operation(
                "checkScope",
                "Check which URLs a crawl would fetch, and why not",
                "scope",
                {
                    "200": _json(
                        "One result per URL, in the order sent.",
                        _ref("ScopeCheckResponse"),
                    ),
                    "400": _problem("BadRequest"),
                    "403": _problem("Forbidden"),
                    "404": _problem("NotFound"),
                    "413": _problem("ContentTooLarge"),
                    "415": _problem("UnsupportedMediaType"),
                    "422": _problem("UnprocessableContent"),
                },
                description="Applies the stateless scope and trap rules. The "
                "max_query_variants rule depends on a crawl's history and is "
                "not checked.",
                request_body=_json_body("ScopeCheckRequest"),
            )
        },
        f"{API_PREFIX}/openapi.json": {
            "get": _operation(
                "getOpenApiDocument",
                "This document",
                "docs",
                {"200": _json("The OpenAPI 3.1 document.", {"type": "object"})},
            )
        },
        "/healthz": {
            "get": _operation(
                "healthz",
                "Liveness: 200 while the process serves requests",
                "health",
                {"200": _json("Alive.", _ref("Health"))},
            )
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "Readiness: 200 when the store responds to a ping",
                "health",
                {
                    "200": _json("Ready.", _ref("Health")),
                    "503": _problem("ServiceUnavailable"),
                },
            )
        },
    }


def _page_paths() -> dict[str, Any]:
    return {
        "/": {
            "get": _operation(
                "indexPage",
                "Status page: jobs and the form to start a crawl",
                "html",
                {"200": _html("The page.")},
                parameters=[_param("Cursor")],
            )
        },
        "/jobs": {
            "post": _operation(
                "createJobForm",
                "Start a crawl from the status page's form",
                "html",
                {
                    "303": _SEE_OTHER,
                    "403": _problem("HtmlError"),
                    "422": _html("The form again, with the error next to its field."),
                },
                request_body={
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": _ref("JobForm")}
                    },
                },
            )
        },
        "/jobs/{job_id}": {
            "get": _operation(
                "jobPage",
                "A job's status page",
                "html",
                {"200": _html("The page."), "404": _problem("HtmlError")},
                parameters=[_param("JobId")],
            )
        },
        "/jobs/{job_id}/delete": {
            "post": _operation(
                "deleteJobForm",
                "Delete a job from its status page",
                "html",
                {
                    "303": _SEE_OTHER,
                    "403": _problem("HtmlError"),
                    "404": _problem("HtmlError"),
                },
                parameters=[_param("JobId")],
            )
        },
        **{
            path: item
            for path, item in _job_action_operations().items()
            if not path.startswith(API_PREFIX)
        },
        "/api/docs": {
            "get": _operation(
                "apiDocsPage",
                "This document as an HTML page",
                "docs",
                {"200": _html("The page.")},
            )
        },
    }


def _add_request_id_headers(paths: dict[str, Any]) -> None:
    """Document the X-Request-Id header on every inline response."""
    for path_item in paths.values():
        for operation in path_item.values():
            for response in operation["responses"].values():
                if "$ref" not in response:
                    headers = response.setdefault("headers", {})
                    headers["X-Request-Id"] = {"$ref": "#/components/headers/RequestId"}


def build_openapi_document() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the API and the HTML pages."""
    # Imported here, because that module builds on this one's helpers.
    from web.openapi_schedules import (
        schedule_api_paths,
        schedule_page_paths,
        schedule_parameters,
        schedule_schemas,
    )

    # A deep copy, because the operations share response objects such as
    # _SEE_OTHER that the header pass would otherwise change in place.
    paths = copy.deepcopy(
        {
            **_api_paths(),
            **schedule_api_paths(),
            **_page_paths(),
            **schedule_page_paths(),
        }
    )
    _add_request_id_headers(paths)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "crawler-service",
            "version": API_VERSION,
            "description": "Queue crawl jobs, run them on a schedule, follow "
            "their progress and read their page records. Every response "
            "carries X-Request-Id, and every error is an "
            "application/problem+json document (RFC 9457).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "tags": [
            {"name": "jobs", "description": "Crawl jobs and their state."},
            {"name": "records", "description": "Page records of a job."},
            {"name": "scope", "description": "Scope rules."},
            {
                "name": "schedules",
                "description": "Crawl configurations that start jobs on a "
                "cron timetable, each due time once across all processes.",
            },
            {"name": "health", "description": "Checks for load balancers."},
            {"name": "docs", "description": "This documentation."},
            {"name": "html", "description": "The status pages, for people."},
        ],
        "paths": paths,
        "components": {
            "schemas": {**_schemas(), **schedule_schemas()},
            "parameters": {**_PARAMETERS, **schedule_parameters()},
            "responses": _responses(),
            "headers": {
                "RequestId": {
                    "description": "The request's id, also in logs and problems.",
                    "schema": {"type": "string"},
                }
            },
        },
    }

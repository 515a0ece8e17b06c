"""Request ids, the conversion of errors into responses, and response headers.

This is the only module that turns exceptions into responses. Under
``/api/`` and for the health checks an error becomes an
``application/problem+json`` document. Everywhere else it becomes the HTML
error page. An unexpected exception never reaches the client: it gets a 500
problem that names the request id, and the traceback goes to the log under
the same id.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from crawler.errors import InvalidOptionError, InvalidScheduleError, StoreError
from crawler.store.base import InvalidCursorError
from web.keys import REQUEST_ID, SETTINGS
from web.problems import (
    PROBLEM_CONTENT_TYPE,
    BodyTooLargeError,
    CrossOriginRequestError,
    HttpStatusProblem,
    InternalError,
    InvalidOptionProblem,
    InvalidParameterError,
    InvalidScheduleProblem,
    MethodNotAllowedError,
    NotFoundError,
    ProblemError,
    StoreUnavailableError,
    problem_document,
)

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
# The id of the process that served the response, so that the responses of
# several server processes (gunicorn workers) behind one address can be
# distinguished in logs and tests.
SERVED_BY_HEADER = "X-Served-By"

# An incoming request id is kept when it is short visible ASCII without
# spaces or quotes, so it is safe to log and to echo in a header.
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._~:+/=-]{1,128}")

_JSON_PATH_PREFIXES = ("/api/", "/healthz", "/readyz")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Scripts and styles load only from this origin's files, so an injected inline
# <script> or event handler would not run even if escaping failed somewhere.
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)


def new_request_id() -> str:
    return uuid.uuid4().hex


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Keep a sane incoming ``X-Request-Id``, or make one, for logs and responses."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    if _REQUEST_ID_PATTERN.fullmatch(incoming):
        request[REQUEST_ID] = incoming
    else:
        request[REQUEST_ID] = new_request_id()
    return await handler(request)


@web.middleware
async def same_origin_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Reject state-changing requests that a page on another site sent.

    Browsers send ``Origin`` with every POST and DELETE, so a form or script
    on another site that targets this service (cross-site request forgery)
    carries a foreign origin. Clients such as curl send no ``Origin`` and
    pass. The service sends no CORS headers, so no other site may call it.
    """
    if request.method in _SAFE_METHODS:
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin is not None and (
        origin == "null" or urlsplit(origin).netloc != request.host
    ):
        raise CrossOriginRequestError(
            f"{request.method} {request.path} came from a page on {origin}, not "
            "from this site; use this site's own pages or a client without Origin."
        )
    return await handler(request)


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Turn every error status and exception into a problem or the error page.

    Redirects and other HTTP exceptions below 400 pass through unchanged.
    """
    request_id = request.get(REQUEST_ID, "-")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = _problem_from_http_exception(request, exc)
    except ProblemError as exc:
        problem = exc
    except InvalidOptionError as exc:
        problem = InvalidOptionProblem(exc.message, field=exc.option)
    except InvalidScheduleError as exc:
        problem = InvalidScheduleProblem(exc.message, field=exc.field)
    except InvalidCursorError as exc:
        problem = InvalidParameterError(str(exc), field="cursor")
    except ConnectionResetError:
        # The client hung up; nothing can be sent and nothing failed here.
        logger.info(
            "client disconnected during %s %r (request_id=%s)",
            request.method,
            request.path,
            request_id,
        )
        raise
    except StoreError:
        logger.exception(
            "store failed during %s %r (request_id=%s)",
            request.method,
            request.path,
            request_id,
        )
        problem = StoreUnavailableError(
            f"The store failed while handling this request; retry later, and "
            f"quote request id {request_id} if it keeps failing."
        )
    except Exception:
        logger.exception(
            "unhandled error during %s %r (request_id=%s)",
            request.method,
            request.path,
            request_id,
        )
        problem = InternalError(
            f"The server failed to handle this request. Quote request id "
            f"{request_id} when you report it."
        )

    if problem.status < 500:
        logger.info(
            # %r: a path can carry newlines that would forge log lines.
            "%s %r -> %d %s (request_id=%s)",
            request.method,
            request.path,
            problem.status,
            problem.type,
            request_id,
        )
    return _render_problem(request, problem)


def _problem_from_http_exception(
    request: web.Request, exc: web.HTTPException
) -> ProblemError:
    if isinstance(exc, web.HTTPNotFound):
        hint = ""
        if request.path.startswith("/api/"):
            hint = " The API is described at /api/v1/openapi.json."
        return NotFoundError(f"Nothing is found at {request.path}.{hint}")

    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowedError(
            f"{request.method} is not allowed on {request.path}; use {allowed}.",
            headers={"Allow": exc.headers["Allow"]},
        )

    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS].max_request_bytes
        return BodyTooLargeError(
            f"The request body is larger than the limit of {limit} bytes "
            "(CRAWLER_MAX_REQUEST_BYTES); send a smaller body."
        )

    return HttpStatusProblem(exc.status, exc.reason, exc.text or exc.reason)


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith(_JSON_PATH_PREFIXES)


def _render_problem(request: web.Request, problem: ProblemError) -> web.Response:
    request_id = request.get(REQUEST_ID, "-")
    if _wants_json(request):
        response = web.json_response(
            problem_document(problem, request_id),
            status=problem.status,
            content_type=PROBLEM_CONTENT_TYPE,
        )
    else:
        response = aiohttp_jinja2.render_template(
            "error.html",
            request,
            {"problem": problem, "request_id": request_id},
            status=problem.status,
        )
    response.headers.update(problem.headers)
    return response


async def add_response_headers(
    request: web.Request, response: web.StreamResponse
) -> None:
    """Add the request id, process id and security headers to every response.

    It runs as an ``on_response_prepare`` signal rather than in a middleware,
    because a streamed response sends its headers before the handler returns,
    so streamed responses get the headers too.
    """
    request_id = request.get(REQUEST_ID)
    if request_id is None:
        request_id = request[REQUEST_ID] = new_request_id()
    response.headers[REQUEST_ID_HEADER] = request_id
    response.headers[SERVED_BY_HEADER] = str(os.getpid())
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", _CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Referrer-Policy", "same-origin")

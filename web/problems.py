"""Problem details (RFC 9457): the errors handlers raise, and their JSON form.

Handlers raise a :class:`ProblemError` subclass, and only
:mod:`web.middlewares` turns it into a response: ``application/problem+json``
under ``/api/`` and for the health checks, the HTML error page elsewhere.
``type`` is a stable relative URI that clients can switch on, and ``detail``
is a sentence a person can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


class ProblemError(Exception):
    """An error that the client caused or can act on, with its problem fields.

    ``field`` names the option, parameter or header at fault, and ``extra``
    contains extension members such as the job's current ``state``.
    """

    status: int = 500
    type: str = "/problems/internal-error"
    title: str = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


class MalformedJsonError(ProblemError):
    status = 400
    type = "/problems/malformed-json"
    title = "Malformed JSON"


class InvalidParameterError(ProblemError):
    """A query parameter, header or cursor has a value the API does not accept."""

    status = 400
    type = "/problems/invalid-parameter"
    title = "Invalid parameter"


class CrossOriginRequestError(ProblemError):
    """A POST or DELETE came from a page on another site."""

    status = 403
    type = "/problems/cross-origin-request"
    title = "Cross-origin request rejected"


class NotFoundError(ProblemError):
    status = 404
    type = "/problems/not-found"
    title = "Not found"


class MethodNotAllowedError(ProblemError):
    status = 405
    type = "/problems/method-not-allowed"
    title = "Method not allowed"


class InvalidStateError(ProblemError):
    """A job action does not fit the job's current state (named in ``state``)."""

    status = 409
    type = "/problems/invalid-state"
    title = "Invalid job state"


class IdempotencyConflictError(ProblemError):
    status = 409
    type = "/problems/idempotency-conflict"
    title = "Idempotency key reused"


class BodyTooLargeError(ProblemError):
    status = 413
    type = "/problems/body-too-large"
    title = "Request body too large"


class UnsupportedMediaTypeError(ProblemError):
    status = 415
    type = "/problems/unsupported-media-type"
    title = "Unsupported media type"


class InvalidOptionProblem(ProblemError):
    """A crawl option failed validation; ``field`` is the option's name."""

    status = 422
    type = "/problems/invalid-option"
    title = "Invalid crawl option"


class InvalidScheduleProblem(ProblemError):
    """A schedule field failed validation; ``field`` is the field's name."""

    status = 422
    type = "/problems/invalid-schedule"
    title = "Invalid schedule"


class InvalidBodyError(ProblemError):
    """The body is valid JSON but not the shape the operation expects."""

    status = 422
    type = "/problems/invalid-body"
    title = "Invalid request body"


class StoreUnavailableError(ProblemError):
    status = 503
    type = "/problems/store-unavailable"
    title = "Store unavailable"


class InternalError(ProblemError):
    """The fallback for unexpected exceptions. Its detail reveals no internals."""


class HttpStatusProblem(ProblemError):
    """Any other HTTP error status, as RFC 9457's ``about:blank`` type."""

    type = "about:blank"

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title


def problem_document(exc: ProblemError, request_id: str) -> dict[str, Any]:
    """Return the JSON object of a problem, extension members last."""
    document: dict[str, Any] = {
        "type": exc.type,
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
    }
    if exc.field is not None:
        document["field"] = exc.field
    document["request_id"] = request_id
    document.update(exc.extra)
    return document

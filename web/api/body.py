"""Reading JSON request bodies, with errors that name what to fix and where."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from web.problems import (
    InvalidBodyError,
    MalformedJsonError,
    UnsupportedMediaTypeError,
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """Return the body as a JSON object.

    Requiring ``application/json`` also stops cross-site HTML forms, which
    cannot send that type without a CORS preflight. A body larger than the
    app's ``client_max_size`` makes ``request.read()`` raise
    HTTPRequestEntityTooLarge, which the middleware turns into a 413 problem.
    """
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, got {content_type!r}"
        )

    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedJsonError(
            f"The body is not valid UTF-8 at byte {exc.start}; send JSON in UTF-8."
        ) from exc

    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise MalformedJsonError(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}."
        ) from exc
    except ValueError as exc:
        raise MalformedJsonError(f"The body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:
        raise MalformedJsonError(
            "The body is not usable JSON: it is nested too deeply."
        ) from exc

    if not isinstance(data, dict):
        raise InvalidBodyError(
            f"The body must be a JSON object, got a JSON {_json_type(data)}."
        )
    return data


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"

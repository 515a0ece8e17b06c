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
    check_text(data)
    return data


def check_text(data: object, path: str = "") -> None:
    """Raise MalformedJsonError naming the first string in ``data`` that is
    not Unicode text.

    JSON may escape an unpaired UTF-16 surrogate (``"\\ud800"``), which
    Python decodes into a string that no UTF-8 store, log or page can encode.
    """
    pending: list[tuple[str, object]] = [(path, data)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{where}.{key}" if where else str(key)
                _check_string(key, f"a key of {where or 'the body'}")
                pending.append((child, item))
        elif isinstance(value, list):
            pending.extend((f"{where}[{n}]", item) for n, item in enumerate(value))
        elif isinstance(value, str):
            _check_string(value, where)


def _check_string(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        surrogate = value[exc.start]
        raise MalformedJsonError(
            f"{where} contains the unpaired UTF-16 surrogate "
            f"\\u{ord(surrogate):04x}, which is not text; send the value as "
            "valid Unicode.",
            field=where,
        ) from None


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

"""Validation of real responses against the app's OpenAPI document.

OpenAPI 3.1 schemas are JSON Schema Draft 2020-12, so jsonschema's
Draft202012Validator checks them as they are. A schema that refers to
``#/components/schemas/...`` is validated inside a root schema that carries
the document's components, which is where those references point.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import ClientResponse
from jsonschema import Draft202012Validator

from web.openapi import build_openapi_document

DOCUMENT = build_openapi_document()


def _resolve(item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        _, _, section, name = item["$ref"].split("/")
        item = DOCUMENT["components"][section][name]
    return item


def response_schema(
    path: str, method: str, status: int, media_type: str
) -> dict[str, Any]:
    """Return the documented schema of a response; KeyError if undocumented."""
    responses = DOCUMENT["paths"][path][method.lower()]["responses"]
    response = _resolve(responses.get(str(status)) or responses["default"])
    return response["content"][media_type]["schema"]  # type: ignore[no-any-return]


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    root = {**schema, "components": DOCUMENT["components"]}
    validator = Draft202012Validator(
        root, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


async def documented_json(response: ClientResponse, path: str) -> Any:
    """Return the JSON body after checking it against the document's schema.

    ``path`` is the route's template as in the document, such as
    ``/api/v1/jobs/{job_id}``.
    """
    body = json.loads(await response.text())
    schema = response_schema(
        path, response.method, response.status, response.content_type
    )
    errors = schema_errors(schema, body)
    assert errors == [], f"{response.method} {path} {response.status}: {errors}"
    return body


async def documented_problem(response: ClientResponse) -> Any:
    """Return a problem body after checking it against the Problem schema.

    Use it for errors of routes or methods that the document does not list,
    such as 404 for an unknown path or 405.
    """
    assert response.content_type == "application/problem+json"
    body = json.loads(await response.text())
    errors = schema_errors({"$ref": "#/components/schemas/Problem"}, body)
    assert errors == [], f"{response.method} {response.url.path}: {errors}"
    return body

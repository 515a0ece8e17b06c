"""The OpenAPI document as JSON, and as an HTML page rendered on the server.

The page needs no script or stylesheet from elsewhere, because the service
may run where there is no internet access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from web.keys import OPENAPI_DOCUMENT
from web.paths import API_PREFIX

routes = web.RouteTableDef()

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

TypeToken = tuple[str, str | None]
"""Text of a type description, and the anchor of the schema it names, if any."""


@dataclass(frozen=True, slots=True)
class Field:
    """One row of a parameter, property or response table."""

    name: str
    type: list[TypeToken]
    required: bool = False
    description: str = ""
    location: str = ""
    default: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    anchor: str
    summary: str
    description: str
    parameters: list[Field]
    request_body: list[Field]
    responses: list[Field]


@dataclass(frozen=True, slots=True)
class SchemaView:
    name: str
    anchor: str
    description: str
    type: list[TypeToken]
    properties: list[Field]


def _resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` such as ``#/components/parameters/JobId``."""
    while "$ref" in item and item["$ref"].startswith("#/components/"):
        _, _, section, name = item["$ref"].split("/")
        item = document["components"][section][name]
    return item


def describe_type(schema: dict[str, Any]) -> list[TypeToken]:
    """Describe a schema's type in words, linking the named schemas it uses."""
    if "$ref" in schema:
        name = schema["$ref"].rpartition("/")[2]
        return [(name, f"schema-{name}")]
    if "anyOf" in schema:
        tokens: list[TypeToken] = []
        for index, member in enumerate(schema["anyOf"]):
            if index:
                tokens.append((" or ", None))
            tokens.extend(describe_type(member))
        return tokens
    if "const" in schema:
        return [(f"always {schema['const']!r}", None)]
    if "enum" in schema:
        return [("one of " + ", ".join(repr(value) for value in schema["enum"]), None)]
    kind = schema.get("type", "any")
    if kind == "array":
        return [("array of ", None), *describe_type(schema.get("items", {}))]
    if kind == "object" and "additionalProperties" in schema:
        values = schema["additionalProperties"]
        if isinstance(values, dict):
            return [("object of ", None), *describe_type(values)]
    if isinstance(kind, list):
        return [(" or ".join(kind), None)]
    return [(str(kind), None)]


def _schema_of_content(content: dict[str, Any]) -> list[Field]:
    return [
        Field(name=media_type, type=describe_type(media.get("schema", {})))
        for media_type, media in content.items()
    ]


def _operation_view(
    document: dict[str, Any], path: str, method: str, operation: dict[str, Any]
) -> Operation:
    parameters = []
    for reference in operation.get("parameters", []):
        parameter = _resolve(document, reference)
        schema = parameter.get("schema", {})
        default = schema.get("default")
        parameters.append(
            Field(
                name=parameter["name"],
                location=parameter["in"],
                type=describe_type(schema),
                required=bool(parameter.get("required")),
                description=parameter.get("description", ""),
                default="" if default is None else str(default),
            )
        )

    request_body: list[Field] = []
    if "requestBody" in operation:
        request_body = _schema_of_content(operation["requestBody"]["content"])

    responses = []
    for status, reference in operation["responses"].items():
        response = _resolve(document, reference)
        content = _schema_of_content(response.get("content", {}))
        responses.append(
            Field(
                name=status,
                description=response.get("description", ""),
                type=[token for field in content for token in field.type],
                location=", ".join(field.name for field in content),
            )
        )

    return Operation(
        method=method.upper(),
        path=path,
        anchor=operation["operationId"],
        summary=operation.get("summary", ""),
        description=operation.get("description", ""),
        parameters=parameters,
        request_body=request_body,
        responses=responses,
    )


def _schema_view(name: str, schema: dict[str, Any]) -> SchemaView:
    required = set(schema.get("required", []))
    properties = []
    for property_name, property_schema in schema.get("properties", {}).items():
        default = property_schema.get("default")
        properties.append(
            Field(
                name=property_name,
                type=describe_type(property_schema),
                required=property_name in required,
                description=property_schema.get("description", ""),
                default="" if default is None else repr(default),
            )
        )
    return SchemaView(
        name=name,
        anchor=f"schema-{name}",
        description=schema.get("description", ""),
        type=describe_type(schema),
        properties=properties,
    )


def docs_context(document: dict[str, Any]) -> dict[str, Any]:
    """Flatten the document into the operations by tag and the schemas."""
    by_tag: dict[str, list[Operation]] = {tag["name"]: [] for tag in document["tags"]}
    for path, path_item in document["paths"].items():
        for method, operation in path_item.items():
            if method in HTTP_METHODS:
                view = _operation_view(document, path, method, operation)
                by_tag.setdefault(operation["tags"][0], []).append(view)

    return {
        "info": document["info"],
        "openapi_version": document["openapi"],
        "tags": [
            (tag["name"], tag.get("description", ""), by_tag[tag["name"]])
            for tag in document["tags"]
        ],
        "schemas": [
            _schema_view(name, schema)
            for name, schema in document["components"]["schemas"].items()
        ],
    }


@routes.get(f"{API_PREFIX}/openapi.json", name="openapi_document")
async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_DOCUMENT])


@routes.get("/api/docs", name="api_docs")
@aiohttp_jinja2.template("api_docs.html")
async def api_docs(request: web.Request) -> dict[str, Any]:
    return docs_context(request.app[OPENAPI_DOCUMENT])

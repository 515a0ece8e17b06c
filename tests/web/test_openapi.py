"""The OpenAPI document: valid, complete for the app's routes, and served."""

from __future__ import annotations

import re
from dataclasses import fields

from aiohttp import web
from openapi_spec_validator import validate

from crawler.options import CrawlOptions
from tests.web.helpers import Client
from tests.web.schema_check import DOCUMENT, schema_errors

METHODS_NOT_DOCUMENTED = {"HEAD"}
"""aiohttp adds HEAD to every GET route; the GET operation describes both."""


def _app_operations(app: web.Application) -> set[tuple[str, str]]:
    operations = set()
    for route in app.router.routes():
        if isinstance(route.resource, web.StaticResource):
            continue
        if route.method in METHODS_NOT_DOCUMENTED:
            continue
        assert route.resource is not None
        operations.add((route.resource.canonical, route.method.lower()))
    return operations


def _documented_operations() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, path_item in DOCUMENT["paths"].items()
        for method in path_item
    }


def test_document_is_valid_openapi() -> None:
    validate(DOCUMENT)


def test_every_route_documented(app: web.Application) -> None:
    missing = _app_operations(app) - _documented_operations()
    assert missing == set()


def test_every_documented_route_exists(app: web.Application) -> None:
    extra = _documented_operations() - _app_operations(app)
    assert extra == set()


def test_every_option_in_schemas() -> None:
    names = [option.name for option in fields(CrawlOptions)]
    schemas = DOCUMENT["components"]["schemas"]
    assert list(schemas["CrawlOptionsInput"]["properties"]) == names
    assert schemas["CrawlOptions"]["required"] == names


def test_option_defaults_validate() -> None:
    defaults = CrawlOptions(seeds=("https://a.example/",)).to_mapping()
    errors = schema_errors({"$ref": "#/components/schemas/CrawlOptions"}, defaults)
    assert errors == []


def test_input_schema_rejects_unknown_option() -> None:
    body = {"seeds": ["https://a.example/"], "max_page": 3}
    errors = schema_errors({"$ref": "#/components/schemas/CrawlOptionsInput"}, body)
    assert errors != []


async def test_document_served(client: Client) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    assert await response.json() == DOCUMENT


async def test_docs_page_lists_operations(client: Client) -> None:
    response = await client.get("/api/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    for path in DOCUMENT["paths"]:
        assert f"<code>{path}</code>" in html, path


async def test_docs_page_lists_schemas(client: Client) -> None:
    html = await (await client.get("/api/docs")).text()
    for name in DOCUMENT["components"]["schemas"]:
        assert f'id="schema-{name}"' in html, name


async def test_docs_page_needs_no_outside_assets(client: Client) -> None:
    html = await (await client.get("/api/docs")).text()
    assert re.findall(r'(?:src|href)="(?:https?:)?//[^"]*"', html) == []

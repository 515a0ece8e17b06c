"""Typed keys for the state kept on the application and on each request."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crawler.settings import Settings
from crawler.store.base import Store

SETTINGS = web.AppKey("settings", Settings)
STORE: web.AppKey[Store] = web.AppKey("store")
"""The open store; set by create_app, or at startup when the app opens it itself."""
OPENAPI_DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document")
REQUEST_ID = web.RequestKey("request_id", str)

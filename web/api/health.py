"""Liveness and readiness checks for load balancers and orchestrators."""

from __future__ import annotations

import logging

from aiohttp import web

from crawler.errors import StoreError
from web.keys import REQUEST_ID, STORE
from web.problems import StoreUnavailableError

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    """Return 200 while the process serves requests, whatever the store's state."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz", name="readyz")
async def readyz(request: web.Request) -> web.Response:
    """Return 200 when the store responds to a ping, else a 503 problem."""
    try:
        await request.app[STORE].ping()
    except StoreError as exc:
        logger.warning(
            "readiness check failed: %s (request_id=%s)", exc, request[REQUEST_ID]
        )
        raise StoreUnavailableError(
            f"The store did not respond to a ping: {exc}. Check CRAWLER_STORE_URL and "
            "that the database is reachable."
        ) from exc
    return web.json_response({"status": "ok"})

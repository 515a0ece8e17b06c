"""Liveness and readiness checks for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
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


READY_TIMEOUT_S = 2.0
"""Seconds the readiness check waits for the store. A load balancer's probe
times out after a few seconds, and a store that needs longer is not ready."""


@routes.get("/readyz", name="readyz")
async def readyz(request: web.Request) -> web.Response:
    """Return 200 when the store responds to a ping within READY_TIMEOUT_S, else
    a 503 problem."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await request.app[STORE].ping()
    except TimeoutError:
        reason = f"no answer within {READY_TIMEOUT_S:g} s"
    except StoreError as exc:
        reason = str(exc)
    else:
        return web.json_response({"status": "ok"})

    logger.warning(
        "readiness check failed: %s (request_id=%s)", reason, request[REQUEST_ID]
    )
    raise StoreUnavailableError(
        f"The store did not respond to a ping: {reason}. Check CRAWLER_STORE_URL "
        "and that the database is reachable."
    )

"""The JSON API under /api/v1, and the health checks at the root."""

from __future__ import annotations

from aiohttp import web

from web.api import exports, health, jobs, pages, schedules, scope_check


def add_api_routes(app: web.Application) -> None:
    app.router.add_routes(health.routes)
    app.router.add_routes(jobs.routes)
    app.router.add_routes(jobs.action_routes)
    app.router.add_routes(pages.routes)
    app.router.add_routes(exports.routes)
    app.router.add_routes(scope_check.routes)
    app.router.add_routes(schedules.routes)
    app.router.add_routes(schedules.enabled_routes)


__all__ = ["add_api_routes"]

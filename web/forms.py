"""Reading the status pages' HTML forms."""

from __future__ import annotations

from aiohttp import web


async def read_form(request: web.Request) -> dict[str, str]:
    """Return the form's text fields, or raise a 400 for a body that does not parse."""
    try:
        posted = await request.post()
    except ValueError as exc:
        # aiohttp raises ValueError for a multipart body that does not parse.
        raise web.HTTPBadRequest(
            text=f"The form body could not be read: {exc}"
        ) from exc
    return {name: value for name, value in posted.items() if isinstance(value, str)}

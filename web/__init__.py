"""The crawl service's web layer: JSON API, status pages and API docs (aiohttp).

``web`` imports ``crawler`` and never the reverse, so the crawler runs without
aiohttp's server side.
"""

from web.app import create_app

__all__ = ["create_app"]

"""Opening the configured store: the one place that maps CRAWLER_STORE_URL to code."""

from __future__ import annotations

from pathlib import Path

from crawler.errors import InvalidOptionError
from crawler.settings import Settings
from crawler.store.base import Store


async def open_store(settings: Settings) -> Store:
    """Open the store that ``settings.store_url`` names, creating its schema."""
    url = settings.store_url
    if url.startswith("sqlite:///"):
        from crawler.store.sqlite import SqliteStore

        path = Path(url.removeprefix("sqlite:///"))
        if not path.name:
            raise InvalidOptionError(
                "CRAWLER_STORE_URL",
                f"CRAWLER_STORE_URL {url!r} names no file; use e.g. sqlite:///crawler.db",
            )
        return await SqliteStore.open(path)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from crawler.store.mongo import MongoStore

        return await MongoStore.open(url)
    raise InvalidOptionError(
        "CRAWLER_STORE_URL",
        f"CRAWLER_STORE_URL {url!r}: use a sqlite:/// or mongodb:// URL",
    )

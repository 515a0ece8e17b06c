"""ParsePool: which executor each mode uses, and that results match inline parsing."""

from __future__ import annotations

import threading

import pytest

from crawler.options import Selector
from crawler.parse import extract_page
from crawler.parse_pool import ParsePool

PAGE = (
    b"<html lang='en'><head><title>Pool</title></head><body>"
    b"<a href='/a'>a</a><h1>Heading</h1></body></html>"
)
SELECTORS = (Selector(name="heading", css="h1"),)


@pytest.mark.parametrize("mode", ["auto", "thread", "process", "inline"])
@pytest.mark.parametrize("selectors", [(), SELECTORS])
async def test_parse_pool_matches_inline(
    mode: str, selectors: tuple[Selector, ...]
) -> None:
    pool = ParsePool(mode)  # type: ignore[arg-type]
    try:
        parsed = await pool.extract("http://example.org/", PAGE, "text/html", selectors)
    finally:
        pool.close()

    assert parsed == extract_page("http://example.org/", PAGE, "text/html", selectors)


async def test_auto_mode_uses_threads_without_selectors() -> None:
    pool = ParsePool("auto")
    try:
        await pool.extract("http://example.org/", PAGE, "text/html")

        assert pool._threads is not None
        assert pool._processes is None
    finally:
        pool.close()


async def test_auto_mode_uses_processes_with_selectors() -> None:
    pool = ParsePool("auto")
    try:
        await pool.extract("http://example.org/", PAGE, "text/html", SELECTORS)

        assert pool._processes is not None
        assert pool._threads is None
    finally:
        pool.close()


async def test_inline_mode_parses_on_the_loop_thread() -> None:
    pool = ParsePool("inline")
    before = threading.active_count()

    await pool.extract("http://example.org/", PAGE, "text/html")

    assert threading.active_count() == before
    assert pool._threads is None

"""The status pages in a real browser: Debian's Chromium, driven by Playwright.

``crawler serve`` runs as a subprocess on 127.0.0.1 and crawls a slow tree
site on 127.0.0.2. The browser starts a crawl from the form, watches the
counters rise without a reload and checks the final figures against the API.
A second browser without JavaScript checks that the job page is rendered on
the server.

Chromium starts with a new profile in tmp_path and with the flags in
CHROMIUM_ARGS, which turn off its own background connections (updates, sync,
sign-in) and its DNS lookups, so the only traffic is to the service the test
started.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import BrowserContext, BrowserType, Page, async_playwright

from tests.sites.hostile import ServedApp, serve_app
from tests.sites.tree import create_tree_app
from tests.web.processes import (
    REPO_ROOT,
    SERVICE_HOST,
    SITE_HOST,
    free_port,
    get_job,
    log_tail,
    running,
    serve_command,
    service_env,
    terminate,
    wait_for_final_state,
    wait_until_ready,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_PACKAGE = "chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # With only the flags above, Debian's Chromium 156 still sent DNS queries
    # for Google's sign-in and update hosts (seen with strace). This rule makes
    # every host name fail to resolve inside the browser, so none is sent.
    f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {SERVICE_HOST}",
]
ARTIFACTS_VARIABLE = "CRAWLER_TEST_ARTIFACTS"
PAGES = 60
CRAWL_TIMEOUT_S = 40.0

# Element ids on the job page and the API counters they show.
COUNTER_IDS = {
    "counter-fetched": "fetched",
    "counter-failed": "failed",
    "counter-queued": "queued",
    "counter-in-progress": "in_progress",
    "counter-pages": "pages",
}


@pytest.fixture
def chromium() -> Path:
    """Return Debian's Chromium, failing (never skipping) when it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install the Debian package {CHROMIUM_PACKAGE} "
            f"(apt-get install {CHROMIUM_PACKAGE}); the browser tests never "
            "download a browser.",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
def tree_site() -> Iterator[ServedApp]:
    with serve_app(create_tree_app(PAGES, delay_s=0.1), SITE_HOST) as site:
        yield site


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """Run ``crawler serve``; yield its base URL and its log file."""
    port = free_port()
    log = tmp_path / "service.log"
    env = service_env(tmp_path / "crawler.db")
    with running(serve_command(port), env, log) as process:
        base_url = f"http://{SERVICE_HOST}:{port}"
        await wait_until_ready(base_url, process, log)
        yield base_url, log
        terminate(process, timeout_s=30)


async def open_browser(
    browser_type: BrowserType, chromium: Path, profile: Path, *, javascript: bool
) -> BrowserContext:
    """Launch Chromium with a new profile folder and return its context."""
    return await browser_type.launch_persistent_context(
        profile,
        executable_path=chromium,
        args=CHROMIUM_ARGS,
        headless=True,
        java_script_enabled=javascript,
        viewport={"width": 1280, "height": 900},
    )


async def element_text(page: Page, element_id: str) -> str:
    text = await page.text_content(f"#{element_id}")
    assert text is not None, f"#{element_id} is missing from {page.url}"
    return text.strip()


async def watch_until_final(page: Page, log: Path) -> list[int]:
    """Read #counter-fetched every 0.1 s until #job-state reads completed.

    Returns the distinct readings in the order seen.
    """
    readings: list[int] = []
    deadline = time.monotonic() + CRAWL_TIMEOUT_S
    while True:
        fetched = int(await element_text(page, "counter-fetched"))
        if not readings or readings[-1] != fetched:
            readings.append(fetched)
        state = await element_text(page, "job-state")
        if state == "completed":
            return readings
        assert state in ("queued", "running"), (
            f"the job page shows state {state!r}; log:\n{log_tail(log)}"
        )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the job page did not show completed within {CRAWL_TIMEOUT_S:g} s "
                f"(fetched readings {readings}); log:\n{log_tail(log)}"
            )
        await asyncio.sleep(0.1)


def count_increases(readings: list[int]) -> int:
    return sum(1 for before, after in itertools.pairwise(readings) if after > before)


def save_artifact(screenshot: Path) -> None:
    """Copy the screenshot under test-artifacts/ when CRAWLER_TEST_ARTIFACTS is set."""
    if not os.environ.get(ARTIFACTS_VARIABLE):
        return
    folder = REPO_ROOT / "test-artifacts"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(screenshot, folder / screenshot.name)


async def test_status_page_follows_crawl(
    chromium: Path,
    tree_site: ServedApp,
    service: tuple[str, Path],
    tmp_path: Path,
) -> None:
    base_url, log = service

    async with async_playwright() as playwright:
        context = await open_browser(
            playwright.chromium, chromium, tmp_path / "profile", javascript=True
        )
        try:
            page = await context.new_page()
            await page.goto(f"{base_url}/")
            await page.fill("#seeds", tree_site.url("/page/0"))
            # One fetch at a time keeps the crawl running for several polls.
            await page.fill("#concurrency", "1")
            await page.click("#start-form button[type=submit]")
            await page.wait_for_url(re.compile(r"/jobs/[^/?#]+$"))
            job_id = page.url.rsplit("/", 1)[1]

            # A reload or navigation would drop this window property.
            await page.evaluate("window.loadedOnce = true")
            readings = await watch_until_final(page, log)
            still_loaded = await page.evaluate("window.loadedOnce === true")
            shown = {
                element_id: int(await element_text(page, element_id))
                for element_id in COUNTER_IDS
            }
            screenshot = tmp_path / "status-page.png"
            await page.screenshot(path=screenshot, full_page=True)
        finally:
            await context.close()

    save_artifact(screenshot)
    async with aiohttp.ClientSession() as session:
        job = await get_job(session, base_url, job_id)

    assert count_increases(readings) >= 2, f"fetched readings: {readings}"
    assert still_loaded, "the job page was reloaded while it showed the crawl"
    assert job["state"] == "completed"
    for element_id, counter in COUNTER_IDS.items():
        assert shown[element_id] == job["counters"][counter], (
            f"#{element_id} shows {shown[element_id]}, the API's {counter} is "
            f"{job['counters'][counter]}"
        )
    assert job["counters"]["fetched"] == PAGES
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


async def test_job_page_without_javascript(
    chromium: Path,
    tree_site: ServedApp,
    service: tuple[str, Path],
    tmp_path: Path,
) -> None:
    base_url, log = service

    async with async_playwright() as playwright:
        context = await open_browser(
            playwright.chromium, chromium, tmp_path / "profile", javascript=False
        )
        try:
            page = await context.new_page()
            # The start form is a plain HTML form, so it works without scripts.
            await page.goto(f"{base_url}/")
            await page.fill("#seeds", tree_site.url("/page/0"))
            await page.click("#start-form button[type=submit]")
            await page.wait_for_url(re.compile(r"/jobs/[^/?#]+$"))
            job_id = page.url.rsplit("/", 1)[1]

            async with aiohttp.ClientSession() as session:
                job = await wait_for_final_state(session, base_url, job_id, log)
            await page.goto(f"{base_url}/jobs/{job_id}")
            shown = {
                element_id: int(await element_text(page, element_id))
                for element_id in COUNTER_IDS
            }
            state = await element_text(page, "job-state")
            chart_note = await element_text(page, "chart-note")
        finally:
            await context.close()

    assert state == "completed"
    for element_id, counter in COUNTER_IDS.items():
        assert shown[element_id] == job["counters"][counter], (
            f"#{element_id} shows {shown[element_id]}, the API's {counter} is "
            f"{job['counters'][counter]}"
        )
    # job.js clears this note when it draws the chart, so it proves no script ran.
    assert chart_note.startswith("Needs JavaScript")


async def test_schedule_form_without_javascript(
    chromium: Path, service: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, _ = service

    async with async_playwright() as playwright:
        context = await open_browser(
            playwright.chromium, chromium, tmp_path / "profile", javascript=False
        )
        try:
            page = await context.new_page()
            await page.goto(f"{base_url}/")
            await page.click("header nav >> text=Schedules")
            await page.wait_for_url(f"{base_url}/schedules")
            await page.fill("#name", "docs nightly")
            await page.fill("#cron", "30 2 * * *")
            await page.fill("#timezone", "America/New_York")
            await page.fill("#seeds", f"http://{SITE_HOST}:9/")
            await page.click("#schedule-form button[type=submit]")
            await page.wait_for_url(re.compile(r"/schedules/[^/?#]+$"))
            description = await element_text(page, "schedule-description")
            next_runs = await page.locator("#next-runs time").all_text_contents()

            await page.fill("#cron", "0 5 * * *")
            await page.click("#schedule-form button[type=submit]")
            await page.wait_for_load_state()
            edited = await element_text(page, "schedule-cron")

            await page.fill("#cron", "61 * * * *")
            await page.click("#schedule-form button[type=submit]")
            await page.wait_for_load_state()
            error = await element_text(page, "error-cron")
            screenshot = tmp_path / "schedule-page.png"
            await page.screenshot(path=screenshot, full_page=True)
        finally:
            await context.close()

    save_artifact(screenshot)
    assert description == "At 02:30 every day"
    assert len(next_runs) == 5
    assert all(" 02:30 E" in text for text in next_runs), next_runs
    assert edited == "0 5 * * *"
    assert "Bad minute" in error

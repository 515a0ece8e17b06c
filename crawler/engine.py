"""The crawl engine: asyncio fan-out over a frontier, polite per host.

:class:`Crawler` runs one crawl to completion. It takes requests from a
:class:`~crawler.frontier.CrawlStore` and fetches up to ``concurrency`` of them
at once (a per-crawl ``asyncio.Semaphore``), never more than
``per_host_concurrency`` per host and never faster than the host's delay.
It only takes a request whose host is free, so one slow or throttled host does
not tie up the workers that other hosts could use.

For each URL, in order: robots.txt, then the fetch with bounded retries, then
each redirect hop checked against loops, scope, robots.txt and de-duplication
(the address guard checks every connection in the fetcher), then parsing off
the event loop, then the record and the newly found links go to the store.

Guarantees: a page is recorded at most once per canonical key (the store
enforces it), at most ``max_pages`` fetches start, and :meth:`Crawler.stop`
ends the crawl without losing a record already saved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import aiohttp

from crawler.errors import FetchError, InvalidUrlError, StoreError
from crawler.fetch import (
    Fetcher,
    Response,
    RetryPolicy,
    describe_status,
    parse_retry_after,
)
from crawler.frontier import CrawlRequest, CrawlStore
from crawler.options import CrawlOptions
from crawler.parse import ParsedPage, is_html
from crawler.parse_pool import ParsePool
from crawler.politeness import HostPoliteness
from crawler.records import Links, PageError, PageRecord, utc_timestamp
from crawler.robots import RobotsCache, parse_x_robots_tag
from crawler.scope import Scope
from crawler.sitemaps import SitemapError, parse_sitemap
from crawler.urls import canonicalize_url, host_key, normalize_url, resolve_link

logger = logging.getLogger(__name__)

MAX_SITEMAP_FILES = 1000
MAX_SITEMAP_NESTING = 3
SITEMAP_MAX_BYTES = 50 * 1024 * 1024


@dataclass(slots=True)
class CrawlStats:
    """Counters of one crawl, updated as records are saved."""

    started: float
    queued: int = 0
    fetched: int = 0
    failed: int = 0
    in_flight: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    finish_reason: str = ""
    finished: float | None = None

    def pages_per_s(self, now: float) -> float:
        """Return fetched pages per second since the crawl started."""
        end = self.finished if self.finished is not None else now
        elapsed = end - self.started
        return self.fetched / elapsed if elapsed > 0 else 0.0


ProgressCallback = Callable[[CrawlStats], None]


class Crawler:
    """Runs one crawl with the given options against a store."""

    def __init__(
        self,
        options: CrawlOptions,
        store: CrawlStore,
        session: aiohttp.ClientSession,
        parse_pool: ParsePool,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_progress: ProgressCallback | None = None,
        retry_policy: RetryPolicy | None = None,
        pages_done: int = 0,
        seed: bool = True,
        poll_interval_s: float | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        """``pages_done`` counts fetches of earlier runs of the same job (a
        reclaimed job), which count against ``max_pages``.

        For a store shared with other crawlers of the same job: ``seed=False``
        skips the seeds and sitemaps (the crawler that started the job queued
        them); ``poll_interval_s`` is how often to look at the store again
        while it reports pending requests that this crawler cannot take; and
        ``idle_timeout_s`` ends the crawl (reason ``idle``) after that long
        without a request of its own.
        """
        self.options = options
        self._store = store
        self._fetcher = Fetcher(session, options, clock=clock)
        self._parse_pool = parse_pool
        self._clock = clock
        self._sleep = sleep
        self._on_progress = on_progress
        self._retry = retry_policy or RetryPolicy.from_options(options)
        self._politeness = HostPoliteness(
            options.per_host_concurrency,
            options.per_host_delay_s,
            clock=clock,
            sleep=sleep,
        )
        self._robots = RobotsCache(self._fetch_robots)
        self._delays_applied: set[str] = set()
        # A sitemap-only crawl takes its hosts from the sitemap URLs.
        self._scope = Scope(options, options.seeds or options.sitemaps)
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._stop_reason: str | None = None
        self._budget_used = pages_done
        self._seed = seed
        self._poll_interval_s = poll_interval_s
        self._idle_timeout_s = idle_timeout_s
        self.stats = CrawlStats(started=clock())

    # -- public API --------------------------------------------------------

    def stop(self, reason: str = "stopped", *, cancel_in_flight: bool = True) -> None:
        """End the crawl: no new fetch starts after this call.

        With ``cancel_in_flight`` the fetches under way are cancelled too;
        otherwise they finish and are recorded (a graceful drain), and a later
        call may still cancel them. A cancelled request gets no record and is
        not marked done in the store, so a database-backed store can hand it
        out again. Records already saved stay saved. Safe to call from a signal
        handler on the loop's thread.
        """
        if self._stop_reason is None:
            logger.info("Crawl stopping (%s)", reason)
            self._stop_reason = reason
        if cancel_in_flight:
            for task in self._tasks:
                task.cancel()
        self._changed.set()

    def host_waits(self) -> dict[str, float]:
        """Return the seconds each host must still wait before the next request
        to it may start, for the hosts that must wait."""
        return self._politeness.waits()

    async def run(self) -> CrawlStats:
        """Crawl until the frontier is empty or a limit or stop() ends it."""
        deadline = None
        if self.options.max_duration_s is not None:
            deadline = self._clock() + self.options.max_duration_s

        try:
            if self._seed:
                await self._add_seeds()
                await self._add_sitemaps()
            await self._fan_out(deadline)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._robots.close()

        self.stats.finished = self._clock()
        self.stats.finish_reason = self._stop_reason or "completed"
        logger.info(
            "Crawl finished (%s): %d fetched, %d failed, %d queued",
            self.stats.finish_reason,
            self.stats.fetched,
            self.stats.failed,
            self.stats.queued,
        )
        self._report_progress()
        return self.stats

    # -- scheduling --------------------------------------------------------

    async def _fan_out(self, deadline: float | None) -> None:
        semaphore = asyncio.Semaphore(self.options.concurrency)
        last_pop = self._clock()
        while self._stop_reason is None:
            if deadline is not None and self._clock() >= deadline:
                self.stop("max_duration")
                break

            self._changed.clear()
            if self._budget_used >= self.options.max_pages:
                if not self._tasks:
                    self._stop_reason = "max_pages"
                    break
                await self._wait_for_change(deadline, None)
                continue

            await semaphore.acquire()
            if self._stop_reason is not None:
                semaphore.release()
                break
            request = await self._store.pop(self._politeness.busy_hosts())
            if request is None:
                semaphore.release()
                ready_in = self._politeness.seconds_until_ready()
                if not self._tasks:
                    if await self._store.pending() == 0:
                        break
                    # Waiting out a host's delay (a long Crawl-delay) is work,
                    # not idleness.
                    if ready_in is not None:
                        last_pop = self._clock()
                    idle_s = self._clock() - last_pop
                    if self._idle_timeout_s is not None and (
                        idle_s >= self._idle_timeout_s
                    ):
                        self.stop("idle")
                        break
                await self._wait_for_change(deadline, ready_in)
                continue

            last_pop = self._clock()
            self._budget_used += 1
            task = asyncio.create_task(
                self._process(request),
                name=f"crawl-{request.host}-{self.stats.fetched}",
            )
            self._tasks.add(task)
            self.stats.in_flight = len(self._tasks)
            task.add_done_callback(lambda t: self._task_done(t, semaphore))

        # Requests already running finish (or were cancelled by stop()).
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _task_done(
        self, task: asyncio.Task[None], semaphore: asyncio.Semaphore
    ) -> None:
        self._tasks.discard(task)
        self.stats.in_flight = len(self._tasks)
        semaphore.release()
        self._changed.set()

    async def _wait_for_change(
        self, deadline: float | None, ready_in: float | None
    ) -> None:
        timeouts = [t for t in (ready_in, self._poll_interval_s) if t is not None]
        if deadline is not None:
            timeouts.append(max(0.0, deadline - self._clock()))
        timeout = min(timeouts) if timeouts else None
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    # -- one URL -----------------------------------------------------------

    async def _process(self, request: CrawlRequest) -> None:
        try:
            try:
                record = await self._crawl(request)
                if record is not None:
                    await self._save(record)
            except StoreError:
                raise
            except Exception:
                # The top of a worker: a bug in one page must not end the crawl.
                logger.exception("Unexpected error while crawling %s", request.url)
                self.stats.skipped["internal_error"] += 1
            await self._store.done(request)
        except asyncio.CancelledError:
            # Not done: the store may hand the request out again.
            raise
        except StoreError as exc:
            # The record, or the request's end, could not be stored. The
            # request stays in progress, and the worker that reclaims it
            # returns it to the queue. Crawling on would lose more pages.
            logger.error(
                "Store failed while recording %s (%s); stopping the crawl",
                request.url,
                exc,
                extra={"url": request.url},
            )
            self.stop("store_error", cancel_in_flight=False)

    async def _crawl(self, request: CrawlRequest) -> PageRecord | None:
        """Fetch one request, following redirects hop by hop, and build its record."""
        fetched_at = utc_timestamp()
        started = self._clock()
        url = request.url
        chain = {request.key}

        def failure(
            final_url: str, kind: str, message: str, response: Response | None = None
        ) -> PageRecord:
            return self._failure(
                request,
                final_url,
                fetched_at,
                started,
                PageError(kind, message),
                response,
            )

        for hop in range(self.options.max_redirects + 1):
            refusal = await self._robots_refusal(url)
            if refusal is not None:
                if hop == 0:
                    # Nothing was fetched, so the page budget is given back.
                    self._budget_used -= 1
                return failure(url, refusal.kind, refusal.message)

            try:
                response, attempts = await self._fetch_with_retries(url)
            except FetchError as exc:
                record = failure(url, exc.kind, exc.message)
                if exc.status is None:
                    return record
                return replace(record, status=exc.status, content_type=exc.content_type)

            location = response.location
            if location is None:
                return await self._page_record(
                    request, response, attempts, fetched_at, started
                )

            target = resolve_link(location, url)
            if target is None:
                message = (
                    f"{describe_status(response.status)} with an unusable "
                    f"Location {location!r}"
                )
                return failure(url, "http_status", message, response)
            if hop == self.options.max_redirects:
                message = (
                    f"more than {self.options.max_redirects} redirects "
                    f"(max_redirects); the last one points to {target}"
                )
                return failure(url, "redirect_loop", message, response)

            key = canonicalize_url(target, self.options.strip_params)
            if key in chain:
                message = f"redirect loop: {url} redirects back to {target}"
                return failure(url, "redirect_loop", message, response)
            decision = self._scope.check(target)
            if not decision.allowed:
                message = f"redirect to {target}: {decision.detail}"
                return failure(target, "out_of_scope", message, response)
            if not await self._store.claim_key(key):
                # The target is queued or recorded under its own URL already.
                self.stats.skipped["duplicate_redirect"] += 1
                return None

            chain.add(key)
            url = target

        raise AssertionError("unreachable: the loop returns on its last hop")

    async def _fetch_with_retries(self, url: str) -> tuple[Response, int]:
        """Fetch ``url``, retrying what may succeed later; return the response and
        the number of attempts made."""
        host = host_key(url)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._politeness.slot(host):
                    response = await self._fetcher.fetch(url)
            except FetchError as exc:
                if not exc.retryable or attempt > self._retry.max_retries:
                    if attempt > 1:
                        exc.message += f" (after {attempt} attempts)"
                    raise
                delay = self._retry.backoff_s(attempt)
                logger.warning(
                    "Fetch of %s failed (%s); retrying in %.1f s",
                    url,
                    exc.message,
                    delay,
                    extra={"url": url, "attempt": attempt},
                )
                await self._sleep(delay)
                continue

            if (
                not self._retry.is_retryable_status(response.status)
                or attempt > self._retry.max_retries
            ):
                return response, attempt
            retry_in = self._retry_delay(host, url, response, attempt)
            if retry_in is None:
                return response, attempt
            await self._sleep(retry_in)

    def _retry_delay(
        self, host: str, url: str, response: Response, attempt: int
    ) -> float | None:
        """Return how long to wait before retrying a 429 or 5xx, or None to give up.

        A Retry-After on 429 or 503 raises the host's delay and pauses the host,
        so the wait happens in the host's slot and every request to the host
        observes it; without one, exponential backoff applies.
        """
        retry_after = None
        if response.status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None and retry_after > self.options.max_retry_after_s:
            logger.warning(
                "%s asks for Retry-After %.0f s, over max_retry_after_s; giving up",
                url,
                retry_after,
                extra={"url": url, "status": response.status},
            )
            return None

        if retry_after is not None:
            reason = f"Retry-After on {describe_status(response.status)}"
            self._politeness.raise_delay(host, retry_after, reason=reason)
            self._politeness.pause(host, retry_after)
            delay = 0.0
        else:
            delay = self._retry.backoff_s(attempt)
        logger.warning(
            "%s responded with %s; retrying in %.1f s",
            url,
            describe_status(response.status),
            max(delay, retry_after or 0.0),
            extra={"url": url, "status": response.status, "attempt": attempt},
        )
        return delay

    async def _robots_refusal(self, url: str) -> PageError | None:
        """Return why robots.txt forbids ``url``, or None when it may be fetched.

        When the guard blocked robots.txt itself, the page would be blocked
        too, so the error kind is ``blocked_address`` rather than ``robots``.
        """
        if not self.options.obey_robots:
            return None
        rules = await self._robots.rules_for(url)
        host = host_key(url)
        if host not in self._delays_applied:
            self._delays_applied.add(host)
            delay = rules.crawl_delay(self.options.user_agent)
            if delay:
                self._politeness.raise_delay(
                    host, delay, reason="robots.txt Crawl-delay"
                )
        if rules.can_fetch(url, self.options.user_agent):
            return None
        if rules.fetch_error is not None:
            # robots.txt could not be fetched at all (host down, DNS, TLS,
            # guard): the page would fail the same way, so the record names
            # that error rather than "robots".
            return PageError(
                rules.fetch_error,
                f"robots.txt could not be fetched, the host is skipped: {rules.note}",
            )

        return PageError("robots", rules.explain(url))

    async def _fetch_robots(self, url: str, max_bytes: int) -> Response:
        async with self._politeness.slot(host_key(url)):
            return await self._fetcher.fetch(
                url, max_body_bytes=max_bytes, truncate=True
            )

    # -- records -----------------------------------------------------------

    async def _page_record(
        self,
        request: CrawlRequest,
        response: Response,
        attempts: int,
        fetched_at: str,
        started: float,
    ) -> PageRecord:
        status = response.status
        error = None
        if status >= 300:
            message = describe_status(status)
            if attempts > 1:
                message += f" (after {attempts} attempts)"
            error = PageError("http_status", message)

        header_type = response.headers.get("Content-Type")
        parsed: ParsedPage | None = None
        if status < 300 and is_html(header_type, response.body):
            parsed = await self._parse_pool.extract(
                response.url, response.body, header_type, self.options.selectors
            )

        directives = parse_x_robots_tag(
            response.headers.getall("X-Robots-Tag", []), self.options.user_agent
        )
        links = Links()
        if parsed is not None:
            directives = directives | parsed.robots
            links = await self._follow_links(request, parsed, "nofollow" in directives)

        noindex = "noindex" in directives
        keep = parsed is not None and not noindex
        return PageRecord(
            url=request.url,
            final_url=response.url,
            key=canonicalize_url(response.url, self.options.strip_params),
            depth=request.depth,
            referrer=request.referrer,
            fetched_at=fetched_at,
            status=status,
            elapsed_ms=round((self._clock() - started) * 1000),
            content_type=response.content_type,
            size_bytes=len(response.body),
            encoding=parsed.encoding if parsed else None,
            title=parsed.title if keep and parsed else None,
            description=parsed.description if keep and parsed else None,
            canonical=parsed.canonical if keep and parsed else None,
            lang=parsed.lang if keep and parsed else None,
            robots=tuple(sorted(directives & {"noindex", "nofollow"})),
            links=links,
            fields=dict(parsed.fields) if keep and parsed else {},
            error=error,
        )

    async def _follow_links(
        self, request: CrawlRequest, parsed: ParsedPage, nofollow_all: bool
    ) -> Links:
        in_scope: list[str] = []
        seen_keys: set[str] = set()
        new_requests: list[CrawlRequest] = []
        child_depth = request.depth + 1

        for link in parsed.links:
            decision = self._scope.admit(link.url)
            if not decision.allowed:
                self.stats.skipped[decision.reason] += 1
                continue
            key = canonicalize_url(link.url, self.options.strip_params)
            if key in seen_keys:
                continue
            seen_keys.add(key)
            if link.nofollow or nofollow_all:
                self.stats.skipped["nofollow"] += 1
                continue

            in_scope.append(link.url)
            if child_depth > self.options.max_depth:
                self.stats.skipped["max_depth"] += 1
                continue
            new_requests.append(
                CrawlRequest(
                    link.url, key, host_key(link.url), child_depth, request.url
                )
            )

        if new_requests:
            added = await self._store.add(new_requests)
            self.stats.queued += added
            if added:
                self._changed.set()
        return Links(count=len(parsed.links), in_scope=tuple(in_scope))

    def _failure(
        self,
        request: CrawlRequest,
        final_url: str,
        fetched_at: str,
        started: float,
        error: PageError,
        response: Response | None = None,
    ) -> PageRecord:
        return PageRecord(
            url=request.url,
            final_url=final_url,
            key=canonicalize_url(request.url, self.options.strip_params),
            depth=request.depth,
            referrer=request.referrer,
            fetched_at=fetched_at,
            status=response.status if response else None,
            elapsed_ms=round((self._clock() - started) * 1000),
            content_type=response.content_type if response else None,
            size_bytes=len(response.body) if response else None,
            error=error,
        )

    async def _save(self, record: PageRecord) -> None:
        await self._store.save(record)
        if record.error is None:
            self.stats.fetched += 1
        elif record.error.kind in ("robots", "out_of_scope"):
            self.stats.skipped[record.error.kind] += 1
        else:
            if record.status is not None:
                self.stats.fetched += 1
            self.stats.failed += 1
            self.stats.errors[record.error.kind] += 1
        self._report_progress()

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.stats)

    # -- seeds and sitemaps ------------------------------------------------

    async def _add_seeds(self) -> None:
        """Queue the seeds; a seed the scope rules reject gets an error record.

        A link that leaves the scope is only counted, but a seed is what the
        user asked for, so its rejection must be visible in the results.
        """
        requests: list[CrawlRequest] = []
        for seed in self.options.seeds:
            url = normalize_url(seed)
            decision = self._scope.admit(url)
            key = canonicalize_url(url, self.options.strip_params)
            if decision.allowed:
                requests.append(CrawlRequest(url, key, host_key(url), 0, None))
                continue
            if await self._store.claim_key(key):
                error = PageError("out_of_scope", f"seed rejected: {decision.detail}")
                record = PageRecord(
                    url=url,
                    final_url=url,
                    key=key,
                    depth=0,
                    referrer=None,
                    fetched_at=utc_timestamp(),
                    error=error,
                )
                await self._save(record)
        self.stats.queued += await self._store.add(requests)

    def _request_for(
        self, raw_url: str, depth: int, referrer: str | None
    ) -> CrawlRequest | None:
        """Return a request for an in-scope URL; count and drop anything else."""
        try:
            url = normalize_url(raw_url)
        except InvalidUrlError:
            self.stats.skipped["invalid_url"] += 1
            return None
        decision = self._scope.admit(url)
        if not decision.allowed:
            logger.info("Skipping %s: %s", url, decision.detail)
            self.stats.skipped[decision.reason] += 1
            return None
        key = canonicalize_url(url, self.options.strip_params)
        return CrawlRequest(url, key, host_key(url), depth, referrer)

    async def _add_sitemaps(self) -> None:
        # Sitemap URLs from robots.txt and sitemap indexes are hostile input:
        # each is resolved against the file it came from, and skipped (with a
        # warning) unless it is a valid http(s) URL.
        pending = [(url, url) for url in self.options.sitemaps]
        if self.options.robots_sitemaps:
            for seed in self.options.seeds:
                rules = await self._robots.rules_for(normalize_url(seed))
                source = f"{rules.origin}/robots.txt"
                pending.extend((sitemap, source) for sitemap in rules.sitemaps)

        loaded: set[str] = set()
        level = [(raw, source, 0) for raw, source in pending]
        while level and len(loaded) < MAX_SITEMAP_FILES and self._stop_reason is None:
            raw, source, nesting = level.pop(0)
            url = resolve_link(raw, source)
            if url is None:
                logger.warning(
                    "Skipping sitemap URL %r from %s: not an http(s) URL", raw, source
                )
                self.stats.skipped["sitemap_error"] += 1
                continue
            if url in loaded:
                logger.warning(
                    "Sitemap %s is listed again (from %s); skipped", url, source
                )
                continue
            loaded.add(url)
            children = await self._load_sitemap(url)
            if nesting < MAX_SITEMAP_NESTING:
                level.extend((child, url, nesting + 1) for child in children)
            elif children:
                logger.warning(
                    "Sitemap index %s nests deeper than %d levels; %d children skipped",
                    url,
                    MAX_SITEMAP_NESTING,
                    len(children),
                )

    async def _load_sitemap(self, url: str) -> list[str]:
        """Queue a sitemap's in-scope URLs; return the child sitemaps of an index."""
        try:
            response = await self._fetch_following(url)
        except FetchError as exc:
            logger.warning(
                "Sitemap %s not loaded: %s", url, exc.message, extra={"url": url}
            )
            self.stats.skipped["sitemap_error"] += 1
            return []
        if response.status != 200:
            logger.warning(
                "Sitemap %s responded with %s",
                url,
                describe_status(response.status),
                extra={"url": url},
            )
            self.stats.skipped["sitemap_error"] += 1
            return []
        try:
            # A 50,000-URL sitemap takes about 0.2 s to parse: off the loop.
            sitemap = await asyncio.to_thread(
                parse_sitemap, response.body, max_bytes=SITEMAP_MAX_BYTES
            )
        except SitemapError as exc:
            logger.warning("Sitemap %s not parsed: %s", url, exc, extra={"url": url})
            self.stats.skipped["sitemap_error"] += 1
            return []

        if sitemap.kind == "sitemapindex":
            return list(sitemap.urls)
        requests = [
            r for u in sitemap.urls if (r := self._request_for(u, 0, url)) is not None
        ]
        self.stats.queued += await self._store.add(requests)
        return []

    async def _fetch_following(self, url: str) -> Response:
        """Fetch ``url`` following redirects (for sitemaps, which may live on a CDN)."""
        for _ in range(self.options.max_redirects + 1):
            response, _attempts = await self._fetch_with_retries(url)
            target = response.location
            if target is None:
                return response
            next_url = resolve_link(target, url)
            if next_url is None:
                return response
            url = next_url
        raise FetchError(
            url, "redirect_loop", f"more than {self.options.max_redirects} redirects"
        )

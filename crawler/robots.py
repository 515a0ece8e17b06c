"""robots.txt fetching and caching, with RFC 9309's rules for failures.

Parsing is Protego's: it implements RFC 9309 matching (longest match wins,
``*`` and ``$`` wildcards, Allow beating Disallow on equal length), which the
standard library's ``urllib.robotparser`` does not.

What the fetch outcome means (RFC 9309, section 2.3.1):

* 2xx: the file's rules apply; only its first 500 KiB are parsed;
* 4xx except 429: no rules, everything is allowed;
* 429, 5xx, or no answer at all (DNS, connect, timeout, blocked address):
  the host is treated as fully disallowed for this crawl;
* redirects are followed up to five hops, each through the caller's fetch.

Each origin is fetched once per crawl; concurrent callers for one origin wait
for the same fetch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from protego import Protego

from crawler.errors import FetchError
from crawler.fetch import Response, describe_status
from crawler.urls import origin_of, resolve_link, robots_url

logger = logging.getLogger(__name__)

ROBOTS_MAX_BYTES = 500 * 1024
ROBOTS_MAX_REDIRECTS = 5

FetchOnce = Callable[[str, int], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class RobotsRules:
    """The outcome of one origin's robots.txt: parsed rules, or allow/deny all."""

    origin: str
    status: int | None
    parser: Protego | None = None
    disallow_all: bool = False
    note: str = ""
    sitemaps: tuple[str, ...] = field(default=())
    fetch_error: str | None = None
    """The FetchError kind when robots.txt could not be fetched at all."""

    def can_fetch(self, url: str, user_agent: str) -> bool:
        """Return True if robots.txt lets ``user_agent`` fetch ``url``."""
        if self.disallow_all:
            return False
        if self.parser is None:
            return True
        return bool(self.parser.can_fetch(url, user_agent))

    def crawl_delay(self, user_agent: str) -> float | None:
        """Return the Crawl-delay in seconds for ``user_agent``, or None."""
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(user_agent)
        return float(delay) if delay is not None else None

    def explain(self, url: str) -> str:
        """Return why ``url`` is disallowed, for the page record's error message."""
        if self.disallow_all:
            return (
                f"robots.txt of {self.origin} is unavailable ({self.note}); "
                "the host is treated as disallowed"
            )
        return f"disallowed by {self.origin}/robots.txt"


class RobotsCache:
    """Fetches each origin's robots.txt once per crawl and keeps the rules."""

    def __init__(self, fetch: FetchOnce) -> None:
        self._fetch = fetch
        self._rules: dict[str, asyncio.Task[RobotsRules]] = {}

    async def rules_for(self, url: str) -> RobotsRules:
        """Return the rules for ``url``'s origin, fetching robots.txt on first use."""
        origin = origin_of(url)
        task = self._rules.get(origin)
        if task is None:
            task = asyncio.create_task(self._load(origin), name=f"robots-{origin}")
            self._rules[origin] = task
        # shield: one caller's cancellation must not cancel the shared fetch.
        return await asyncio.shield(task)

    def cached(self) -> list[RobotsRules]:
        """Return the rules fetched so far."""
        return [
            t.result() for t in self._rules.values() if t.done() and not t.cancelled()
        ]

    async def close(self) -> None:
        """Cancel robots.txt fetches still running."""
        for task in self._rules.values():
            task.cancel()
        await asyncio.gather(*self._rules.values(), return_exceptions=True)

    async def _load(self, origin: str) -> RobotsRules:
        url = robots_url(origin + "/")
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            try:
                response = await self._fetch(url, ROBOTS_MAX_BYTES)
            except FetchError as exc:
                logger.warning(
                    "%s unreachable (%s); treating the host as disallowed",
                    url,
                    exc.message,
                    extra={"host": origin, "url": url},
                )
                return RobotsRules(
                    origin,
                    None,
                    disallow_all=True,
                    note=f"{exc.kind}: {exc.message}",
                    fetch_error=exc.kind,
                )

            target = response.location
            if target is None:
                return _rules_from_response(origin, response)
            next_url = resolve_link(target, url)
            if next_url is None:
                return RobotsRules(
                    origin, response.status, note="redirect without a usable Location"
                )
            url = next_url

        return RobotsRules(
            origin,
            None,
            note=f"more than {ROBOTS_MAX_REDIRECTS} redirects; everything allowed",
        )


def _rules_from_response(origin: str, response: Response) -> RobotsRules:
    status = response.status
    if 200 <= status < 300:
        # RFC 9309 robots.txt is UTF-8; a leading BOM would turn the first
        # line into an unknown directive, so it is dropped.
        text = response.body.decode("utf-8", errors="replace").removeprefix("\ufeff")
        parser = Protego.parse(text)
        sitemaps = tuple(str(s) for s in parser.sitemaps)
        return RobotsRules(origin, status, parser=parser, sitemaps=sitemaps)
    if status == 429 or status >= 500:
        logger.warning(
            "robots.txt responded with status %s; treating the host as disallowed",
            status,
            extra={"host": origin, "status": status},
        )
        return RobotsRules(
            origin, status, disallow_all=True, note=describe_status(status)
        )
    if 400 <= status < 500:
        return RobotsRules(
            origin, status, note=f"{describe_status(status)}: everything allowed"
        )
    # 1xx or 3xx without Location: not a robots.txt, and not an error either.
    return RobotsRules(
        origin, status, note=f"{describe_status(status)}: everything allowed"
    )


# X-Robots-Tag directives that take a value after a colon; any other word before
# a colon names the user agent the rest of the header applies to.
_VALUED_DIRECTIVES = frozenset(
    {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}
)


def parse_x_robots_tag(values: list[str], user_agent: str) -> frozenset[str]:
    """Return the lower-case directives of X-Robots-Tag headers that apply to us.

    A header may name a user agent (``otherbot: noindex``); such a header
    applies only when the name matches our product token. ``none`` means
    ``noindex, nofollow``.
    """
    token = user_agent.split("/", 1)[0].strip().lower()
    directives: set[str] = set()
    for value in values:
        head, colon, rest = value.partition(":")
        head = head.strip().lower()
        if (
            colon
            and head
            and " " not in head
            and "," not in head
            and head not in _VALUED_DIRECTIVES
        ):
            if head != token:
                continue
            value = rest
        for part in value.split(","):
            directive = part.strip().lower()
            if directive == "none":
                directives.update(("noindex", "nofollow"))
            elif directive:
                directives.add(directive.split(":", 1)[0].strip())
    return frozenset(directives)

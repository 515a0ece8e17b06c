"""The crawler's exception hierarchy.

Every error the engine raises on purpose derives from :class:`CrawlerError`, so
callers (the CLI, the web app) can tell our errors from bugs.
"""

from __future__ import annotations


class CrawlerError(Exception):
    """Base class for errors raised by the crawler on purpose."""


class InvalidOptionError(CrawlerError, ValueError):
    """A crawl option or setting has a value the crawler cannot use.

    ``option`` is the option's name as the API spells it (snake_case), so the
    CLI can turn it into ``--kebab-case`` and the API into a problem's field.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option
        self.message = message


class InvalidUrlError(CrawlerError, ValueError):
    """A URL cannot be crawled: wrong scheme, no host, or not parseable."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


class FetchError(CrawlerError):
    """A fetch failed; ``kind`` is the error class stored on the page record.

    Kinds: ``dns``, ``connect``, ``tls``, ``timeout``, ``http_status``,
    ``too_large``, ``blocked_address``, ``redirect_loop``, ``decode``.
    ``retryable`` tells whether another attempt may succeed. ``status`` and
    ``content_type`` are set when the response's headers had arrived before
    the failure (a body too large, too slow or undecodable).
    """

    def __init__(
        self, url: str, kind: str, message: str, *, retryable: bool = False
    ) -> None:
        super().__init__(f"{kind}: {message} ({url})")
        self.url = url
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.status: int | None = None
        self.content_type: str | None = None


class BlockedAddressError(OSError):
    """A connection was about to go to an address the guard forbids.

    It subclasses ``OSError`` because aiohttp's connector only passes ``OSError``
    from resolvers and socket factories through to the caller.
    """

    def __init__(self, host: str, address: str) -> None:
        super().__init__(
            f"connection to {host} ({address}) is blocked by the address guard"
        )
        self.host = host
        self.address = address


class StoreError(CrawlerError):
    """The frontier or result store failed."""


class InvalidScheduleError(CrawlerError, ValueError):
    """A schedule field has a value the scheduler cannot use.

    ``field`` is the field's name as the API spells it (``cron``,
    ``timezone``, ...), so the API can name it in the problem it returns.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

"""The page record: what the crawler stores for every URL it fetched or skipped.

One record per page, keyed by the canonical form of its final URL. Its JSON
form is the line format of ``crawler crawl -o out.jsonl`` and of the API's
exports, so field names and meanings are part of the public interface (the
README documents them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

# Error kinds a record can carry. The first group comes from fetching; the
# second from rules that stopped the crawler before or between requests.
ERROR_KINDS = (
    "dns",
    "connect",
    "tls",
    "timeout",
    "http_status",
    "too_large",
    "decode",
    "redirect_loop",
    "blocked_address",
    "robots",
    "out_of_scope",
)


@dataclass(frozen=True, slots=True)
class PageError:
    """Why a page has no usable content: ``kind`` from ERROR_KINDS and a message."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Links:
    """Links found on a page: how many, and the in-scope ones the crawler may follow."""

    count: int = 0
    in_scope: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PageRecord:
    """One crawled (or deliberately skipped) URL."""

    url: str
    final_url: str
    key: str
    depth: int
    referrer: str | None
    fetched_at: str
    status: int | None = None
    elapsed_ms: int | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    encoding: str | None = None
    title: str | None = None
    description: str | None = None
    canonical: str | None = None
    lang: str | None = None
    robots: tuple[str, ...] = ()
    links: Links = field(default_factory=Links)
    fields: dict[str, str | list[str] | None] = field(default_factory=dict)
    error: PageError | None = None

    @property
    def ok(self) -> bool:
        """True when the page was fetched and carries no error."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data, in the documented field order."""
        data = asdict(self)
        data["links"] = {
            "count": self.links.count,
            "in_scope": list(self.links.in_scope),
        }
        data["robots"] = list(self.robots)
        del data["key"]
        return data


def utc_timestamp(moment: datetime | None = None) -> str:
    """Return an ISO 8601 UTC time with milliseconds: 2026-12-04T20:21:41.123Z."""
    moment = moment or datetime.now(UTC)
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )

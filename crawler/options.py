"""The rules of one crawl, validated once, shared by the CLI and the API.

Option names are the API's snake_case names; the CLI spells them in kebab-case
(``max_pages`` is ``--max-pages``). Every check raises
:class:`~crawler.errors.InvalidOptionError` naming the option, the bad value and
what would be accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from crawler.errors import InvalidOptionError, InvalidUrlError
from crawler.patterns import PatternError, compile_pattern
from crawler.urls import DEFAULT_STRIP_PARAMS, normalize_url

Scope = Literal["host", "domain", "allowlist"]
SCOPES: tuple[str, ...] = ("host", "domain", "allowlist")

MAX_USER_AGENT_CHARS = 512
MAX_SEEDS = 10_000

_SELECTOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:.-]*")


@dataclass(frozen=True, slots=True)
class Selector:
    """A user extraction rule: a named CSS selector.

    ``attr`` is None to take the element's text, or an attribute name to take
    that attribute. ``all`` takes every match as a list instead of the first.
    """

    name: str
    css: str
    attr: str | None = None
    all: bool = False

    @classmethod
    def parse(cls, spec: str, *, all_matches: bool = False) -> Selector:
        """Parse the CLI form ``NAME=CSS[@ATTR]``."""
        name, sep, rest = spec.partition("=")
        if not sep or not rest:
            raise InvalidOptionError(
                "selectors",
                f"selector {spec!r} must look like NAME=CSS or NAME=CSS@ATTR, "
                "for example price=span.price or image=img.hero@src",
            )
        css, at, attr = rest.rpartition("@")
        # An "@" inside the CSS, as in a[href*="@"], does not start an attribute.
        if not at or not _ATTRIBUTE_NAME.fullmatch(attr.strip()):
            css, attr = rest, ""
        selector = cls(
            name=name.strip(),
            css=css.strip(),
            attr=attr.strip() or None,
            all=all_matches,
        )
        selector.validate()
        return selector

    def validate(self) -> None:
        """Raise InvalidOptionError unless the name and CSS are usable."""
        if not _SELECTOR_NAME.match(self.name):
            raise InvalidOptionError(
                "selectors",
                f"selector name {self.name!r} must start with a letter or underscore "
                "and contain only letters, digits, '_', '.' or '-' (at most 64)",
            )
        if not self.css:
            raise InvalidOptionError(
                "selectors", f"selector {self.name!r} has an empty CSS expression"
            )
        import soupsieve

        try:
            soupsieve.compile(self.css)
        except soupsieve.SelectorSyntaxError as exc:
            raise InvalidOptionError(
                "selectors",
                f"selector {self.name!r} has invalid CSS {self.css!r}: "
                f"{str(exc).splitlines()[0]}",
            ) from exc


@dataclass(frozen=True, slots=True)
class CrawlOptions:
    """Everything that decides what one crawl fetches and how politely.

    Build it with :meth:`from_mapping` (API bodies) or directly (CLI), then call
    :meth:`validate`; the engine assumes validated options.
    """

    seeds: tuple[str, ...]
    max_pages: int = 10_000
    max_depth: int = 20
    max_duration_s: float | None = None
    concurrency: int = 16
    per_host_concurrency: int = 8
    per_host_delay_s: float = 0.0
    scope: Scope = "host"
    allowed_domains: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    obey_robots: bool = True
    user_agent: str = "crawler-service/0.1"
    sitemaps: tuple[str, ...] = ()
    robots_sitemaps: bool = False
    selectors: tuple[Selector, ...] = ()
    max_body_bytes: int = 10 * 1024 * 1024
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 60.0
    min_rate_bytes_s: int = 1024
    rate_grace_s: float = 5.0
    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    max_redirects: int = 10
    max_url_length: int = 2048
    strip_params: tuple[str, ...] = DEFAULT_STRIP_PARAMS
    max_path_repeats: int = 3
    max_query_params: int = 12
    max_query_variants: int = 100

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CrawlOptions:
        """Build options from JSON-like data, rejecting unknown keys and bad types."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidOptionError(
                unknown[0],
                f"unknown option {unknown[0]!r}; known options are "
                + ", ".join(sorted(known)),
            )
        if "seeds" not in data and "sitemaps" not in data:
            raise InvalidOptionError(
                "seeds", "seeds is required: a list of http(s) URLs"
            )

        values: dict[str, Any] = {"seeds": ()}
        for name, value in data.items():
            values[name] = _coerce(name, value, cls.__dataclass_fields__[name].default)
        options = cls(**values)
        options.validate()
        return options

    def to_mapping(self) -> dict[str, Any]:
        """Return the options as JSON-ready data that :meth:`from_mapping` accepts."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "selectors":
                value = [
                    {"name": s.name, "css": s.css, "attr": s.attr, "all": s.all}
                    for s in value
                ]
            elif isinstance(value, tuple):
                value = list(value)
            data[f.name] = value
        return data

    def validate(self) -> None:
        """Raise InvalidOptionError on the first option out of its range."""
        if not self.seeds and not self.sitemaps:
            raise InvalidOptionError(
                "seeds", "give at least one seed URL (or a sitemap URL in sitemaps)"
            )
        for option_name in ("seeds", "sitemaps"):
            for url in getattr(self, option_name):
                _check_url(option_name, url)
                if len(url) > self.max_url_length:
                    raise InvalidOptionError(
                        option_name,
                        f"{option_name} has a URL of {len(url)} characters, longer "
                        f"than max_url_length ({self.max_url_length}), so it could "
                        f"never be crawled: {url[:80]}...; shorten it or raise "
                        "max_url_length",
                    )

        _check_int("max_pages", self.max_pages, 1, 10_000_000)
        _check_int("max_depth", self.max_depth, 0, 1000)
        if self.max_duration_s is not None:
            _check_float("max_duration_s", self.max_duration_s, 0.001, 30 * 24 * 3600.0)
        _check_int("concurrency", self.concurrency, 1, 1024)
        _check_int("per_host_concurrency", self.per_host_concurrency, 1, 1024)
        _check_float("per_host_delay_s", self.per_host_delay_s, 0.0, 3600.0)
        if self.scope not in SCOPES:
            raise InvalidOptionError(
                "scope", f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}"
            )
        if self.scope == "allowlist" and not self.allowed_domains:
            raise InvalidOptionError(
                "allowed_domains",
                "scope 'allowlist' needs at least one domain in allowed_domains",
            )
        for domain in self.allowed_domains:
            if not isinstance(domain, str) or not re.fullmatch(
                r"[A-Za-z0-9\u00a1-\uffff.-]{1,253}(:\d{1,5})?", domain
            ):
                raise InvalidOptionError(
                    "allowed_domains",
                    f"allowed domain {domain!r} must be a host name such as "
                    "docs.example.org, without scheme or path",
                )
        for option_name in ("include", "exclude"):
            for pattern in getattr(self, option_name):
                try:
                    compile_pattern(pattern)
                except PatternError as exc:
                    raise InvalidOptionError(
                        option_name,
                        f"{option_name} pattern {pattern!r} is not a valid regular "
                        f"expression ({exc}); patterns use RE2 syntax, which has "
                        "no look-around or back-references",
                    ) from exc
        if not self.user_agent.strip() or any(c in self.user_agent for c in "\r\n"):
            raise InvalidOptionError(
                "user_agent", "user_agent must be non-empty text on a single line"
            )
        if len(self.user_agent) > MAX_USER_AGENT_CHARS:
            raise InvalidOptionError(
                "user_agent",
                f"user_agent must be at most {MAX_USER_AGENT_CHARS} characters, got "
                f"{len(self.user_agent)}; servers reject longer headers",
            )
        if len(self.seeds) > MAX_SEEDS:
            raise InvalidOptionError(
                "seeds",
                f"seeds may list at most {MAX_SEEDS} URLs, got {len(self.seeds)}; "
                "give a sitemap URL in sitemaps for larger lists",
            )
        names = [s.name for s in self.selectors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidOptionError(
                "selectors", f"selector name {duplicates[0]!r} is used more than once"
            )
        for selector in self.selectors:
            selector.validate()

        _check_int("max_body_bytes", self.max_body_bytes, 1024, 1024 * 1024 * 1024)
        _check_float("connect_timeout_s", self.connect_timeout_s, 0.001, 600.0)
        _check_float("read_timeout_s", self.read_timeout_s, 0.001, 3600.0)
        _check_float("total_timeout_s", self.total_timeout_s, 0.001, 3600.0)
        _check_int("min_rate_bytes_s", self.min_rate_bytes_s, 0, 1024 * 1024 * 1024)
        _check_float("rate_grace_s", self.rate_grace_s, 0.0, 3600.0)
        _check_int("max_retries", self.max_retries, 0, 10)
        _check_float("backoff_base_s", self.backoff_base_s, 0.0, 600.0)
        _check_float("backoff_max_s", self.backoff_max_s, 0.0, 3600.0)
        _check_float("max_retry_after_s", self.max_retry_after_s, 0.0, 24 * 3600.0)
        _check_int("max_redirects", self.max_redirects, 0, 50)
        _check_int("max_url_length", self.max_url_length, 16, 65_536)
        for pattern in self.strip_params:
            if not isinstance(pattern, str) or not pattern:
                raise InvalidOptionError(
                    "strip_params",
                    f"strip_params entries must be non-empty parameter names or "
                    f"patterns such as utm_*, got {pattern!r}",
                )
        _check_int("max_path_repeats", self.max_path_repeats, 1, 100)
        _check_int("max_query_params", self.max_query_params, 1, 1000)
        _check_int("max_query_variants", self.max_query_variants, 1, 1_000_000)


def _check_url(option: str, url: object) -> None:
    if not isinstance(url, str):
        raise InvalidOptionError(
            option, f"{option} entries must be URL strings, got {url!r}"
        )
    try:
        normalize_url(url)
    except InvalidUrlError as exc:
        raise InvalidOptionError(
            option,
            f"{option} entry {url!r} is not a crawlable URL ({exc.reason}); "
            "use an absolute http:// or https:// URL",
        ) from exc


def _check_int(option: str, value: object, low: int, high: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise InvalidOptionError(
            option, f"{option} must be an integer from {low} to {high}, got {value!r}"
        )


def _check_float(option: str, value: object, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high
    ):
        raise InvalidOptionError(
            option, f"{option} must be a number from {low:g} to {high:g}, got {value!r}"
        )


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Turn JSON values into the dataclass's types, rejecting wrong shapes."""
    if name == "selectors":
        if not isinstance(value, list):
            raise InvalidOptionError(
                name,
                'selectors must be a list of objects like {"name": "price", '
                '"css": "span.price", "attr": null, "all": false}',
            )
        return tuple(_coerce_selector(item) for item in value)
    if isinstance(default, tuple) or name == "seeds":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidOptionError(
                name, f"{name} must be a list of strings, got {value!r}"
            )
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InvalidOptionError(
                name, f"{name} must be true or false, got {value!r}"
            )
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise InvalidOptionError(name, f"{name} must be a string, got {value!r}")
    return value


def _coerce_selector(item: object) -> Selector:
    example = 'for example {"name": "price", "css": "span.price"}'
    if not isinstance(item, dict):
        raise InvalidOptionError(
            "selectors", f"each selector must be an object, {example}"
        )
    unknown = sorted(set(item) - {"name", "css", "attr", "all"})
    if unknown:
        raise InvalidOptionError(
            "selectors",
            f"unknown selector key {unknown[0]!r}; keys are name, css, attr, all",
        )
    name, css = item.get("name"), item.get("css")
    attr, take_all = item.get("attr"), item.get("all", False)
    if not isinstance(name, str) or not isinstance(css, str):
        raise InvalidOptionError(
            "selectors", f"selector name and css must be strings, {example}"
        )
    if attr is not None and (not isinstance(attr, str) or not attr):
        raise InvalidOptionError(
            "selectors", f"selector {name!r}: attr must be a non-empty string or null"
        )
    if not isinstance(take_all, bool):
        raise InvalidOptionError(
            "selectors", f"selector {name!r}: all must be true or false"
        )
    return Selector(name=name, css=css, attr=attr, all=take_all)


def iter_option_names() -> Iterable[str]:
    """Yield every option name, in declaration order."""
    return (f.name for f in fields(CrawlOptions))


__all__ = ["SCOPES", "CrawlOptions", "Scope", "Selector", "iter_option_names"]

"""Scope and trap rules: which discovered URLs a crawl may fetch.

:meth:`Scope.check` applies the stateless rules and :meth:`Scope.admit` adds
the one stateful rule. Both take a normalized absolute URL, as returned by
:func:`crawler.urls.normalize_url`, and return a :class:`ScopeDecision`.
Seeds are subject to the same rules as every other URL.

The rules run in this order, and the first one that rejects decides:

1. ``url_length`` (trap): the URL is longer than ``max_url_length``
   characters.
2. The host rule (out_of_scope), chosen by ``scope``:

   * ``"host"`` (rule ``same_host``): the URL's host and effective port
     (:func:`crawler.urls.host_key`, such as ``example.org:443``) equal those
     of one of the seeds. Another port on the same host is another host.
   * ``"domain"`` (rule ``same_domain``): the URL's host has the same
     registered domain (eTLD+1, such as ``example.co.uk``) as one of the
     seeds, on any port. The registered domain comes from the public suffix
     list snapshot bundled with tldextract, private suffixes such as
     ``github.io`` included, and is never downloaded. An IP address, a
     single-label host such as ``localhost`` and a host whose suffix is not
     in the list are each their own registered domain.
   * ``"allowlist"`` (rule ``allowed_domains``): the URL's host name equals
     an entry of ``allowed_domains`` or is a subdomain of one, compared
     case-insensitively after converting IDN entries to punycode. An entry
     without a port matches any port, and an entry written ``host:port``
     matches only that port.

3. ``exclude`` (out_of_scope): a pattern of ``exclude`` matches the URL.
4. ``include`` (out_of_scope): ``include`` is not empty and none of its
   patterns matches the URL. Exclude wins over include because it runs
   first. Patterns are regular expressions in RE2 syntax (Python's, without
   look-around or back-references), searched for in the full normalized URL,
   so ``/docs/`` matches anywhere and ``^https://`` anchors at the start.
   RE2 matches in linear time, so no pattern can stall the crawl.
5. ``path_repeats`` (trap): one non-empty path segment occurs more than
   ``max_path_repeats`` times in the path, as in ``/a/b/a/b/a/b/a/b`` with
   the default of 3.
6. ``query_params`` (trap): the query has more than ``max_query_params``
   parameters (non-empty ``&``-separated pairs).
7. ``query_variants`` (trap), in :meth:`Scope.admit` only: the same
   scheme, host, port and path already has ``max_query_variants`` distinct
   admitted query strings, and this URL's query string is a new one. Query
   strings count as the same when they contain the same pairs in any order,
   so admitting one URL twice counts once. URLs without a query never count
   and are never rejected by this rule.

A rejected URL gets ``reason`` ``"out_of_scope"`` or ``"trap"``, the ``rule``
name above, and a ``detail`` sentence naming the value that failed and the
option that sets the limit. An allowed URL gets empty strings in all three.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import tldextract

from crawler.errors import InvalidOptionError, InvalidUrlError
from crawler.options import CrawlOptions
from crawler.patterns import compile_pattern
from crawler.urls import DEFAULT_PORTS, host_key, hostname_of, normalize_url

logger = logging.getLogger(__name__)

# Number of values named in a detail sentence before "and N more".
_MAX_LISTED = 3


@dataclass(frozen=True, slots=True)
class ScopeDecision:
    """The outcome of a scope check for one URL."""

    allowed: bool
    reason: str
    """Empty when allowed, otherwise ``"out_of_scope"`` or ``"trap"``."""
    rule: str
    """Name of the rule that rejected the URL, empty when allowed."""
    detail: str
    """A sentence that names the failing value and the option to change."""


ALLOWED = ScopeDecision(allowed=True, reason="", rule="", detail="")


def _out_of_scope(rule: str, detail: str) -> ScopeDecision:
    return ScopeDecision(allowed=False, reason="out_of_scope", rule=rule, detail=detail)


def _trap(rule: str, detail: str) -> ScopeDecision:
    return ScopeDecision(allowed=False, reason="trap", rule=rule, detail=detail)


def _list_values(values: Sequence[str]) -> str:
    """Join values for a detail sentence, naming at most _MAX_LISTED of them."""
    listed = ", ".join(values[:_MAX_LISTED])
    if len(values) > _MAX_LISTED:
        listed += f" and {len(values) - _MAX_LISTED} more"
    return listed


@functools.cache
def _suffix_extractor() -> tldextract.TLDExtract:
    # An empty suffix_list_urls and no cache_dir make tldextract use the
    # snapshot bundled with the package, with no network or disk access.
    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
    )


@functools.lru_cache(maxsize=65_536)
def registered_domain(hostname: str) -> str:
    """Return the registered domain (eTLD+1) of a lower-case host name.

    IP addresses, single-label hosts and hosts whose suffix is not in the
    bundled public suffix list are returned unchanged, without a trailing dot.
    """
    hostname = hostname.rstrip(".")
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        pass
    else:
        return hostname

    result = _suffix_extractor()(hostname)
    if result.domain and result.suffix:
        return f"{result.domain}.{result.suffix}"
    return hostname


def _parse_allowed_domain(entry: str) -> tuple[str, int | None]:
    """Return the punycode host name and optional port of an allowed_domains entry."""
    text = entry.strip().strip(".")
    try:
        url = normalize_url(f"http://{text}/")
    except InvalidUrlError as exc:
        raise InvalidOptionError(
            "allowed_domains",
            f"allowed domain {entry!r} is not a valid host name ({exc.reason})",
        ) from exc

    port = _port_of(url) if text.rpartition(":")[2].isdigit() else None
    return hostname_of(url).rstrip("."), port


class Scope:
    """The scope and trap rules of one crawl, with the query-variant counts.

    Build one per crawl. The regular expressions are compiled once here.
    Raises InvalidOptionError when a host or domain scope has no seed to take
    its hosts from, or when an allowed_domains entry is not a host name, and
    InvalidUrlError when a seed is not a crawlable URL.
    """

    def __init__(self, options: CrawlOptions, seeds: Sequence[str]) -> None:
        self._options = options
        self._scope = options.scope
        self._include = [compile_pattern(pattern) for pattern in options.include]
        self._exclude = [compile_pattern(pattern) for pattern in options.exclude]

        normalized_seeds = [normalize_url(seed) for seed in seeds]
        if self._scope in ("host", "domain") and not normalized_seeds:
            raise InvalidOptionError(
                "seeds",
                f"scope {self._scope!r} needs at least one seed URL to take its "
                "hosts from; give seeds or use scope 'allowlist'",
            )

        self._seed_hosts = frozenset(host_key(seed) for seed in normalized_seeds)
        self._seed_domains = frozenset(
            registered_domain(hostname_of(seed)) for seed in normalized_seeds
        )

        # Host name -> allowed ports, where None allows every port.
        self._allowed: dict[str, set[int] | None] = {}
        for entry in options.allowed_domains:
            name, port = _parse_allowed_domain(entry)
            if port is None:
                self._allowed[name] = None
            elif name not in self._allowed:
                self._allowed[name] = {port}
            else:
                ports = self._allowed[name]
                if ports is not None:
                    ports.add(port)

        # Normalized URL without its query -> query strings admitted so far,
        # each with its pairs sorted.
        self._variants: dict[str, set[str]] = {}

        logger.debug(
            "scope %r: seed hosts %s, seed domains %s, allowed domains %s",
            self._scope,
            sorted(self._seed_hosts),
            sorted(self._seed_domains),
            sorted(self._allowed),
        )

    def check(self, url: str) -> ScopeDecision:
        """Apply the stateless rules (1 to 6 in the module docstring) to ``url``.

        Raises InvalidUrlError when ``url`` is not a normalized http(s) URL
        with a host.
        """
        options = self._options
        if len(url) > options.max_url_length:
            return _trap(
                "url_length",
                f"URL is {len(url)} characters long, more than max_url_length "
                f"({options.max_url_length})",
            )

        parts = _split_normalized(url)
        decision = self._check_host(parts)
        if decision is not None:
            return decision

        decision = self._check_patterns(url)
        if decision is not None:
            return decision

        decision = _check_path_repeats(parts.path, options.max_path_repeats)
        if decision is not None:
            return decision

        return _check_query_params(parts.query, options.max_query_params)

    def admit(self, url: str) -> ScopeDecision:
        """Apply :meth:`check`, then count ``url`` against the query-variant limit.

        An allowed URL with a query is recorded, so call this once for each
        URL the crawl will queue. A URL that is rejected is not recorded.
        """
        decision = self.check(url)
        if not decision.allowed:
            return decision

        base, question_mark, query = url.partition("?")
        if not question_mark or not query:
            return decision

        variant = "&".join(sorted(query.split("&")))
        seen = self._variants.setdefault(base, set())
        if variant in seen:
            return decision

        limit = self._options.max_query_variants
        if len(seen) >= limit:
            return _trap(
                "query_variants",
                f"{base} already has {limit} admitted query strings, the "
                "max_query_variants limit",
            )
        seen.add(variant)
        return decision

    def _check_host(self, parts: _UrlParts) -> ScopeDecision | None:
        if self._scope == "host":
            key = f"{parts.host}:{parts.port}"
            if key in self._seed_hosts:
                return None
            seeds = _list_values(sorted(self._seed_hosts))
            return _out_of_scope(
                "same_host", f"host {key} is not {seeds} (scope 'host')"
            )

        hostname = parts.host.strip("[]")
        if self._scope == "domain":
            domain = registered_domain(hostname)
            if domain in self._seed_domains:
                return None
            seeds = _list_values(sorted(self._seed_domains))
            return _out_of_scope(
                "same_domain",
                f"host {hostname} is in domain {domain}, not {seeds} (scope 'domain')",
            )

        if self._is_allowed_host(hostname.rstrip("."), parts.port):
            return None
        entries = _list_values(sorted(self._allowed))
        return _out_of_scope(
            "allowed_domains",
            f"host {hostname} is neither an allowed domain ({entries}) nor a "
            "subdomain of one (scope 'allowlist')",
        )

    def _is_allowed_host(self, hostname: str, port: int) -> bool:
        """Return True if the host or one of its parent domains is allowed."""
        candidate = hostname
        while True:
            if candidate in self._allowed:
                ports = self._allowed[candidate]
                if ports is None or port in ports:
                    return True
            _, dot, parent = candidate.partition(".")
            if not dot:
                return False
            candidate = parent

    def _check_patterns(self, url: str) -> ScopeDecision | None:
        for pattern in self._exclude:
            if pattern.search(url):
                return _out_of_scope(
                    "exclude", f"URL matches exclude pattern '{pattern.text}'"
                )

        if not self._include:
            return None
        for pattern in self._include:
            if pattern.search(url):
                return None
        patterns = _list_values([f"'{pattern.text}'" for pattern in self._include])
        return _out_of_scope(
            "include", f"URL matches none of the include patterns ({patterns})"
        )


class _UrlParts(NamedTuple):
    host: str
    """Lower-case host in URL form: IPv6 addresses keep their brackets."""
    port: int
    """Effective port: the explicit one, else 80 for http and 443 for https."""
    path: str
    query: str


def _split_normalized(url: str) -> _UrlParts:
    """Split a normalized URL without urllib, which is slower on distinct URLs.

    Raises InvalidUrlError for a URL that normalize_url could not have returned
    (no http(s) scheme, no host, non-ASCII host, non-numeric port).
    """
    scheme, separator, rest = url.partition("://")
    default_port = DEFAULT_PORTS.get(scheme)
    if not separator or default_port is None:
        raise InvalidUrlError(
            url, "not a normalized http(s) URL; pass it through normalize_url first"
        )

    authority, slash, path_and_query = rest.partition("/")
    path, _, query = f"{slash}{path_and_query}".partition("?")
    host_and_port = authority.rpartition("@")[2]
    if host_and_port.startswith("["):
        address, _, port_text = host_and_port.partition("]")
        host, port_text = f"{address}]", port_text.removeprefix(":")
    else:
        host, _, port_text = host_and_port.partition(":")

    if not host or not host.isascii():
        raise InvalidUrlError(
            url, "missing or non-ASCII host; pass the URL through normalize_url first"
        )
    try:
        port = int(port_text) if port_text else default_port
    except ValueError as exc:
        raise InvalidUrlError(url, f"invalid port {port_text!r}") from exc
    return _UrlParts(host.lower(), port, path or "/", query.partition("#")[0])


def _port_of(url: str) -> int:
    return int(host_key(url).rpartition(":")[2])


def _check_path_repeats(path: str, limit: int) -> ScopeDecision | None:
    segments = [segment for segment in path.split("/") if segment]
    if len(segments) <= limit:
        return None

    segment, count = Counter(segments).most_common(1)[0]
    if count <= limit:
        return None
    return _trap(
        "path_repeats",
        f"path segment {segment!r} occurs {count} times, more than "
        f"max_path_repeats ({limit})",
    )


def _check_query_params(query: str, limit: int) -> ScopeDecision:
    if not query:
        return ALLOWED

    count = sum(1 for pair in query.split("&") if pair)
    if count <= limit:
        return ALLOWED
    return _trap(
        "query_params",
        f"query has {count} parameters, more than max_query_params ({limit})",
    )


__all__ = ["ALLOWED", "Scope", "ScopeDecision", "registered_domain"]

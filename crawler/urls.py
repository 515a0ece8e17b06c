"""URL normalization, link resolution and the keys derived from a URL.

Three forms of a URL are kept apart on purpose:

* :func:`normalize_url` returns the *fetchable* form. It applies only changes
  that a browser applies too (WHATWG URL Standard). Whitespace around the URL
  and tabs or newlines inside it are removed. Scheme and host are lower-cased,
  an IDN host becomes punycode and unsafe characters are percent-encoded. Dot
  segments are resolved, the fragment and default port are dropped, and an
  empty path becomes "/". The query keeps its parameters and their order,
  because servers may depend on both.
* :func:`canonicalize_url` returns the *de-duplication key*: the normalized URL
  with a sorted query, normalized percent-encoding and tracking parameters
  removed. It is never fetched.
* :func:`host_key`, :func:`origin_of`, :func:`robots_url` and
  :func:`hostname_of` derive the politeness key, the robots.txt location and
  the host name for scope checks from a normalized URL.

Every function that rejects a URL raises
:class:`~crawler.errors.InvalidUrlError`, and no other exception, for any
string input.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import logging
import re
from collections.abc import Sequence
from urllib.parse import SplitResult, unquote_plus, urljoin, urlsplit

from w3lib.url import canonicalize_url as _w3lib_canonicalize_url
from w3lib.url import safe_url_string

from crawler.errors import InvalidUrlError

logger = logging.getLogger(__name__)

DEFAULT_STRIP_PARAMS: tuple[str, ...] = (
    "utm_*",
    "gclid",
    "fbclid",
    "msclkid",
    "dclid",
    "yclid",
    "mc_cid",
    "mc_eid",
    "_ga",
    "_hsenc",
    "_hsmi",
)
"""Tracking query parameters that :func:`canonicalize_url` removes.

Each entry is an ``fnmatch`` pattern matched case-sensitively against the
percent-decoded parameter name.
"""

SKIPPED_SCHEMES: frozenset[str] = frozenset(
    {
        "about",
        "blob",
        "callto",
        "chrome",
        "chrome-extension",
        "data",
        "facetime",
        "fax",
        "file",
        "ftp",
        "ftps",
        "geo",
        "intent",
        "irc",
        "ircs",
        "itms",
        "itms-apps",
        "itms-services",
        "javascript",
        "magnet",
        "mailto",
        "market",
        "mms",
        "moz-extension",
        "news",
        "nntp",
        "sftp",
        "sip",
        "sips",
        "skype",
        "sms",
        "smsto",
        "ssh",
        "tel",
        "view-source",
        "vbscript",
        "webcal",
        "whatsapp",
        "ws",
        "wss",
    }
)
"""Common link schemes that the crawler cannot fetch, in lower case.

:func:`resolve_link` returns None for these and for every other scheme except
http and https.
"""

HTTP_SCHEMES: frozenset[str] = frozenset({"http", "https"})
DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}

# WHATWG URL Standard: strip leading and trailing C0 controls and spaces, and
# remove every ASCII tab or newline, wherever it is.
_C0_CONTROL_OR_SPACE = "".join(chr(code) for code in range(0x21))
_REMOVE_TAB_OR_NEWLINE = str.maketrans("", "", "\t\n\r")

_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")

# RFC 3986 reg-name characters without percent-encoding. Anything else (space,
# NUL, "%", "<", a non-ASCII character that IDNA could not encode) is rejected.
_HOST_NAME_RE = re.compile(r"[a-z0-9\-._~!$&'()*+,;=]+")

# WHATWG "ends in a number": the last label is decimal digits or 0x-hex.
_NUMERIC_LABEL_RE = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")


def _clean(text: str) -> str:
    """Strip outer C0 controls and spaces and drop inner tabs and newlines."""
    text = text.strip(_C0_CONTROL_OR_SPACE)
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.translate(_REMOVE_TAB_OR_NEWLINE)
    return text


def _backslashes_to_slashes(reference: str) -> str:
    r"""Replace backslashes before the query or fragment with "/", as browsers do.

    Browsers read "\" as "/" in http(s) URLs, but urllib does not, so
    ``\\evil.example/x`` would otherwise stay on the page's host.
    """
    if "\\" not in reference:
        return reference
    end = len(reference)
    for mark in "?#":
        position = reference.find(mark)
        if position != -1:
            end = min(end, position)
    return reference[:end].replace("\\", "/") + reference[end:]


def _slashes_to_authority(url: str, scheme: str) -> str:
    r"""Rewrite an absolute http(s) URL so that exactly "//" follows the scheme.

    Browsers read ``http:example.com``, ``http:/example.com`` and
    ``http:\\example.com`` as ``http://example.com``, but urllib finds no
    host in them.
    """
    rest = _backslashes_to_slashes(url[len(scheme) + 1 :])
    return f"{scheme}://{rest.lstrip('/')}"


# WHATWG URL Standard: "%2e" counts as "." in a path segment, so "/a/%2e%2e/b"
# is "/b" in browsers and in the request most servers see.
_SINGLE_DOT_SEGMENTS = frozenset({".", "%2e", "%2E"})
_DOUBLE_DOT_SEGMENTS = frozenset(
    {"..", ".%2e", ".%2E", "%2e.", "%2E.", "%2e%2e", "%2E%2E", "%2e%2E", "%2E%2e"}
)


def _remove_dot_segments(path: str) -> str:
    """Resolve "." and ".." segments of an absolute path (RFC 3986, section 5.2.4).

    Percent-encoded dots count as dots, as browsers count them.
    """
    if "/." not in path and "%2" not in path:
        return path

    segments = path[1:].split("/")
    output: list[str] = []
    for segment in segments[:-1]:
        if segment in _DOUBLE_DOT_SEGMENTS:
            if output:
                output.pop()
        elif segment not in _SINGLE_DOT_SEGMENTS:
            output.append(segment)

    # A trailing dot segment leaves the path ending in "/".
    last = segments[-1]
    if last in _DOUBLE_DOT_SEGMENTS:
        if output:
            output.pop()
        output.append("")
    elif last in _SINGLE_DOT_SEGMENTS:
        output.append("")
    else:
        output.append(last)
    return "/" + "/".join(output)


def _parse_ipv4_number(label: str) -> int | None:
    """Parse one WHATWG IPv4 part (decimal, 0x-hex or 0-octal), or return None."""
    if label[:2] in ("0x", "0X"):
        digits, base = label[2:], 16
    elif len(label) > 1 and label.startswith("0"):
        digits, base = label[1:], 8
    else:
        digits, base = label, 10
    if not digits:
        return 0 if base == 16 else None
    try:
        return int(digits, base)
    except ValueError:
        return None


def _normalize_ipv4(host: str, url: str) -> str | None:
    """Return the dotted-decimal form of an IPv4 host, or None for a domain.

    Browsers read ``127.1``, ``0x7f.0.0.1`` and ``2130706433`` as 127.0.0.1, and
    so does getaddrinfo in glibc 2.36, so host keys must use the same address.
    """
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if not _NUMERIC_LABEL_RE.fullmatch(labels[-1]):
        return None

    numbers = [_parse_ipv4_number(label) for label in labels]
    if len(labels) > 4 or any(number is None for number in numbers):
        raise InvalidUrlError(url, f"host {host!r} is not a valid IPv4 address")
    parts = [number for number in numbers if number is not None]
    if any(part > 255 for part in parts[:-1]) or parts[-1] >= 256 ** (5 - len(parts)):
        raise InvalidUrlError(url, f"host {host!r} is not a valid IPv4 address")

    address = parts[-1]
    for index, part in enumerate(parts[:-1]):
        address += part * 256 ** (3 - index)
    return str(ipaddress.IPv4Address(address))


def _normalize_host(host: str, url: str) -> str:
    """Validate a lower-case host from urlsplit and return its URL form."""
    if not host:
        raise InvalidUrlError(url, "the URL has no host")

    if ":" in host:
        if "%" in host:
            raise InvalidUrlError(
                url, f"IPv6 zone identifiers are not supported: {host!r}"
            )
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError as exc:
            raise InvalidUrlError(url, f"host [{host}] is not an IPv6 address") from exc

    if not host.isascii():
        raise InvalidUrlError(url, f"host {host!r} cannot be converted to punycode")
    if not _HOST_NAME_RE.fullmatch(host):
        raise InvalidUrlError(
            url, f"host {host!r} contains characters not allowed in a host"
        )
    if host.startswith(".") or ".." in host:
        raise InvalidUrlError(url, f"host {host!r} has an empty label")

    ipv4 = _normalize_ipv4(host, url)
    return ipv4 if ipv4 is not None else host


def _split_http_url(url: str) -> SplitResult:
    """Clean and split an absolute URL, raising InvalidUrlError unless it is http(s)."""
    cleaned = _clean(url)
    match = _SCHEME_RE.match(cleaned)
    if match is None:
        raise InvalidUrlError(
            url, "the URL is not absolute; it must start with http:// or https://"
        )

    scheme = match.group(1).lower()
    if scheme not in HTTP_SCHEMES:
        raise InvalidUrlError(
            url, f"scheme {scheme!r} is not supported; use http or https"
        )

    absolute = _slashes_to_authority(cleaned, match.group(1))
    try:
        raw_parts = urlsplit(absolute)
    except ValueError as exc:
        # urlsplit raises ValueError for an unclosed "[" in the host.
        raise InvalidUrlError(url, f"the URL cannot be parsed: {exc}") from exc

    try:
        port = raw_parts.port
    except ValueError as exc:
        raise InvalidUrlError(
            url, f"invalid port in {raw_parts.netloc!r}; use a number from 1 to 65535"
        ) from exc

    try:
        parts = urlsplit(safe_url_string(absolute))
    except ValueError as exc:
        # safe_url_string splits the URL again, and its IDNA codec raises
        # UnicodeError, a ValueError subclass.
        raise InvalidUrlError(url, f"the URL cannot be parsed: {exc}") from exc

    if port == 0:
        raise InvalidUrlError(url, "invalid port 0; use a number from 1 to 65535")
    return parts


# An absolute URL already in normalized form, apart from a possible fragment:
# lower-case scheme and host, no user information, and a path and query made of
# characters that safe_url_string leaves alone. Most links on real pages have
# this shape, and recognising it skips urlsplit and w3lib (about 10 times
# faster); tests check that both paths give the same result.
_FAST_URL_RE = re.compile(
    r"(https?)://([a-z0-9.\-]+)(?::([1-9][0-9]{0,4}))?(/[^?#]*)(\?[^#]+)?(?:#.*)?",
    re.DOTALL,
)
_SAFE_PATH_RE = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*")
# safe_url_string percent-encodes "'" in the query (WHATWG special-query set).
_SAFE_QUERY_RE = re.compile(r"\?(?:[A-Za-z0-9\-._~!$&()*+,;=:@/?]|%[0-9A-F]{2})*")
_DOT_SEGMENT_RE = re.compile(r"/(?:\.|%2[eE]){1,2}(?:/|$)")


def _normalize_fast(url: str) -> str | None:
    """Return normalize_url(url) for URLs of the common normalized shape, else None."""
    match = _FAST_URL_RE.fullmatch(url)
    if match is None:
        return None
    scheme, host, port, path, query = match.groups()
    if host.startswith(".") or host.endswith(".") or ".." in host:
        return None
    if not _is_normalized_host(host):
        return None
    if port is not None and (int(port) > 65535 or int(port) == DEFAULT_PORTS[scheme]):
        return None
    if not _SAFE_PATH_RE.fullmatch(path) or _DOT_SEGMENT_RE.search(path):
        return None
    if query is not None and not _SAFE_QUERY_RE.fullmatch(query):
        return None
    end = match.end(5) if query is not None else match.end(4)
    return url[:end]


def normalize_url(url: str) -> str:
    """Return the fetchable form of an absolute http(s) URL.

    The result is the URL that a browser would request. Scheme and host are
    lower-case, the host is punycode and a numeric IPv4 host is written in
    dotted-decimal form. Unsafe characters are percent-encoded with w3lib
    ``safe_url_string``. Dot segments are resolved, the fragment and default
    port are dropped, and an empty path becomes "/". User information is kept,
    and the query keeps its parameters and their order. Normalizing a
    normalized URL returns it unchanged.

    Raises InvalidUrlError for anything else: another scheme, a relative URL,
    a missing or malformed host, or a port outside 1-65535.
    """
    if not isinstance(url, str):
        raise InvalidUrlError(
            repr(url), f"a URL must be a string, not {type(url).__name__}"
        )

    fast = _normalize_fast(url)
    if fast is not None:
        return fast

    parts = _split_http_url(url)
    scheme = parts.scheme
    host = _normalize_host(parts.hostname or "", url)

    userinfo, at_sign, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at_sign}{host}"
    if parts.port is not None and parts.port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{parts.port}"

    path = _remove_dot_segments(parts.path) if parts.path else "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def resolve_link(href: str, base_url: str) -> str | None:
    """Resolve a link found on a page into a normalized URL, or return None.

    ``href`` is an attribute value as the HTML parser returned it, with
    entities already decoded. It is not decoded again, because a literal
    ``&amp;`` left after parsing is part of the URL. ``base_url`` is the
    normalized URL that relative links resolve against: the page URL, or the
    page's ``<base href>`` already resolved by the caller.

    Returns None for an empty or fragment-only link and for a result that is
    not a valid http(s) URL. It also returns None for any scheme other than
    http and https, such as those in :data:`SKIPPED_SCHEMES`. Schemes are
    matched as browsers match them, so ``" JAVA\\tSCRIPT:"`` is skipped too.
    """
    cleaned = _clean(href)
    if not cleaned or cleaned.startswith("#"):
        return None

    match = _SCHEME_RE.match(cleaned)
    scheme = match.group(1).lower() if match else ""
    if match is not None and scheme not in HTTP_SCHEMES:
        # SKIPPED_SCHEMES such as javascript: and mailto:, and every other
        # scheme that the crawler cannot fetch.
        return None

    # The base URL is http(s), so browsers read a backslash before the query
    # as "/".
    rest = _backslashes_to_slashes(cleaned[match.end() :] if match else cleaned)
    if match is None and rest[:1] not in ("/", "?", "#", ""):
        # A path-relative reference depends only on the base's directory, so
        # the result is cached per directory: pages of one folder share most
        # of their links, and the fragment (dropped anyway) is cut first.
        query_start = base_url.find("?")
        directory_end = base_url.rfind(
            "/", 0, query_start if query_start >= 0 else None
        )
        return _resolve_in_directory(
            base_url[: directory_end + 1], rest.partition("#")[0]
        )

    if rest.startswith("//"):
        # A network-path reference takes only the scheme from the base.
        # urljoin would keep the base host for "http://" with no host.
        joined: str | None = f"{scheme or base_url.partition(':')[0]}:{rest}"
    else:
        joined = _join(base_url, f"{scheme}:{rest}" if match else rest)
    return _normalize_or_none(joined)


@functools.lru_cache(maxsize=32_768)
def _resolve_in_directory(directory_url: str, reference: str) -> str | None:
    return _normalize_or_none(_join(directory_url, reference))


def _normalize_or_none(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        return normalize_url(url)
    except InvalidUrlError:
        return None


@functools.lru_cache(maxsize=64)
def _compile_strip_patterns(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))


def _strip_query_params(url: str, patterns: re.Pattern[str]) -> str:
    """Remove query parameters whose decoded name matches ``patterns``."""
    base, question_mark, query = url.partition("?")
    if not question_mark:
        return url

    kept = [
        pair
        for pair in query.split("&")
        if not patterns.match(unquote_plus(pair.partition("=")[0]))
    ]
    return f"{base}?{'&'.join(kept)}" if kept else base


def canonicalize_url(
    url: str, strip_params: Sequence[str] = DEFAULT_STRIP_PARAMS
) -> str:
    """Return the de-duplication key of a URL, which is never fetched.

    The key is :func:`normalize_url` followed by w3lib ``canonicalize_url``
    (query sorted by name then value, percent-encoding normalized, blank values
    kept) and the removal of every query parameter whose percent-decoded name
    matches one of the ``fnmatch`` patterns in ``strip_params``
    (case-sensitive). URLs that differ only in fragment, query order, tracking
    parameters, default port or host case get the same key.

    Raises InvalidUrlError when :func:`normalize_url` does.
    """
    normalized = normalize_url(url)

    try:
        canonical = _w3lib_canonicalize_url(normalized)
    except ValueError as exc:
        raise InvalidUrlError(url, f"the URL cannot be canonicalized: {exc}") from exc

    if strip_params and "?" in canonical:
        canonical = _strip_query_params(
            canonical, _compile_strip_patterns(tuple(strip_params))
        )
    return canonical


def _join(base_url: str, reference: str) -> str | None:
    """Resolve a reference with urljoin, returning None when urljoin raises."""
    try:
        return urljoin(base_url, reference)
    except ValueError:
        # urljoin raises ValueError for an unclosed "[" in the host.
        return None


@functools.lru_cache(maxsize=4096)
def _is_normalized_host(host: str) -> bool:
    """Return True if normalize_url would leave this lower-case host unchanged."""
    if not _HOST_NAME_RE.fullmatch(host):
        return False
    if not _NUMERIC_LABEL_RE.fullmatch(host.rpartition(".")[2]):
        return True
    try:
        return str(ipaddress.IPv4Address(host)) == host
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)
def _authority(url: str) -> tuple[str, str, int]:
    """Return the scheme, the host in URL form and the effective port of a URL.

    A URL whose host is not in normalized form is normalized first, so IPv6,
    IDN and numeric-shorthand hosts get the same key as their normalized URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrlError(url, f"the URL cannot be parsed: {exc}") from exc

    host = parts.hostname or ""
    if parts.scheme not in HTTP_SCHEMES or not _is_normalized_host(host):
        parts = urlsplit(normalize_url(url))
        port = parts.port
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"

    if port is None:
        port = DEFAULT_PORTS[parts.scheme]
    return parts.scheme, host, port


def host_key(url: str) -> str:
    """Return the politeness key of a URL: lower-case ``host:port`` with the port.

    The port is the effective one (80 for http, 443 for https when the URL has
    none), so ``http://127.0.0.1:8080/`` and ``http://127.0.0.1:8081/`` are
    different hosts. IPv6 hosts keep their brackets: ``[::1]:8080``.
    """
    _, host, port = _authority(url)
    return f"{host}:{port}"


def origin_of(url: str) -> str:
    """Return ``scheme://host[:port]`` of a URL, with the default port omitted."""
    scheme, host, port = _authority(url)
    if port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def robots_url(url: str) -> str:
    """Return the robots.txt URL that governs ``url``."""
    return f"{origin_of(url)}/robots.txt"


def hostname_of(url: str) -> str:
    """Return the lower-case punycode host name of a URL, without port or brackets."""
    _, host, _ = _authority(url)
    return host.strip("[]")


__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_STRIP_PARAMS",
    "HTTP_SCHEMES",
    "SKIPPED_SCHEMES",
    "canonicalize_url",
    "host_key",
    "hostname_of",
    "normalize_url",
    "origin_of",
    "resolve_link",
    "robots_url",
]

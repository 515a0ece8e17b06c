"""Tests for URL normalization, link resolution and URL keys."""

from __future__ import annotations

import random
from typing import Any

import pytest

import crawler.urls as urls
from crawler.errors import InvalidUrlError
from crawler.urls import (
    DEFAULT_STRIP_PARAMS,
    SKIPPED_SCHEMES,
    canonicalize_url,
    host_key,
    hostname_of,
    normalize_url,
    origin_of,
    resolve_link,
    robots_url,
)

LONG_PATH = "/" + "a" * 2980
BASE = "http://example.org/dir/page.html?x=1"

NORMALIZE_CASES = [
    ("http://example.org", "http://example.org/"),
    ("HTTP://EXAMPLE.ORG/Path", "http://example.org/Path"),
    ("HtTpS://Example.Org/A?B=C", "https://example.org/A?B=C"),
    ("  http://example.org/a  ", "http://example.org/a"),
    ("\x00\x1f http://example.org/a \x01", "http://example.org/a"),
    ("http://example.org/a\x7f\x01b", "http://example.org/a%7F%01b"),
    ("http://exa\tmple.org/a\nb\r", "http://example.org/ab"),
    ("http://example.org:80/", "http://example.org/"),
    ("https://example.org:443/", "https://example.org/"),
    ("http://example.org:443/", "http://example.org:443/"),
    ("https://example.org:80/", "https://example.org:80/"),
    ("http://example.org:8080", "http://example.org:8080/"),
    ("http://example.org:/a", "http://example.org/a"),
    ("http://example.org/a#frag", "http://example.org/a"),
    ("http://example.org/a?q=1#frag", "http://example.org/a?q=1"),
    ("http://example.org/#", "http://example.org/"),
    ("http://example.org/p?", "http://example.org/p"),
    ("http://example.org?x=1", "http://example.org/?x=1"),
    (
        "http://пример.рф/путь",
        "http://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C",
    ),
    ("http://ÉXAMPLE.com/", "http://xn--xample-9ua.com/"),
    ("http://example.org/?q=я", "http://example.org/?q=%D1%8F"),
    ("http://example.org/a b|c^d", "http://example.org/a%20b%7Cc%5Ed"),
    ("http://example.org/?q=a b<c>", "http://example.org/?q=a%20b%3Cc%3E"),
    ("http://example.org/%7Efoo?x=%2F", "http://example.org/%7Efoo?x=%2F"),
    ("http://example.org/%zz", "http://example.org/%zz"),
    ("http://example.org/a?q=1&amp;r=2", "http://example.org/a?q=1&amp;r=2"),
    (
        "http://example.org/?b=2&a=1&utm_source=x",
        "http://example.org/?b=2&a=1&utm_source=x",
    ),
    ("http://example.org/a/./b/../c", "http://example.org/a/c"),
    ("http://example.org/../../x", "http://example.org/x"),
    ("http://example.org/a/..", "http://example.org/"),
    ("http://example.org//a//b/", "http://example.org//a//b/"),
    ("http://user:pw@Example.org/", "http://user:pw@example.org/"),
    ("http://[0:0::1]:8080/a", "http://[::1]:8080/a"),
    ("http://[::1]:80/", "http://[::1]/"),
    ("http://[2001:DB8::1]/", "http://[2001:db8::1]/"),
    ("http://127.1/", "http://127.0.0.1/"),
    ("http://0x7f.0.0.1:8080/", "http://127.0.0.1:8080/"),
    ("http://2130706433/", "http://127.0.0.1/"),
    ("http://010.0.0.1/", "http://8.0.0.1/"),
    ("http://127.0.0.1./", "http://127.0.0.1/"),
    ("http://my_host.Example.org/", "http://my_host.example.org/"),
    ("http://example.org./", "http://example.org./"),
    ("http:\\\\example.org\\a\\b?x=\\y", "http://example.org/a/b?x=%5Cy"),
    ("http:example.org", "http://example.org/"),
    ("https:///example.org/x", "https://example.org/x"),
    ("http://example.org" + LONG_PATH, "http://example.org" + LONG_PATH),
]


@pytest.mark.parametrize(("url", "expected"), NORMALIZE_CASES)
def test_normalize_url(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), NORMALIZE_CASES)
def test_normalize_url_idempotent(url: str, expected: str) -> None:
    assert normalize_url(expected) == expected


INVALID_CASES = [
    ("ftp://example.org/", "scheme 'ftp'"),
    ("javascript:alert(1)", "scheme 'javascript'"),
    ("mailto:a@example.org", "scheme 'mailto'"),
    ("localhost:8080/x", "scheme 'localhost'"),
    ("/relative/path", "not absolute"),
    ("example.org/path", "not absolute"),
    ("", "not absolute"),
    ("   ", "not absolute"),
    ("http://", "no host"),
    ("http:///", "no host"),
    ("https://?q=1", "no host"),
    ("http://@/", "no host"),
    ("http://user:pw@/", "no host"),
    ("http://h:99999/", "invalid port"),
    ("http://h:65536/", "invalid port"),
    ("http://h:abc/", "invalid port"),
    ("http://h:-1/", "invalid port"),
    ("http://[::1]:x/", "invalid port"),
    ("http://h:0/", "port 0"),
    ("http://[::1", "cannot be parsed"),
    ("http://[::1/x", "cannot be parsed"),
    ("http://[::g]/", "cannot be parsed"),
    ("http://[fe80::1%25eth0]/", "zone"),
    ("http://a b.example/", "not allowed in a host"),
    ("http://exa%41mple.org/", "not allowed in a host"),
    ("http://exa<mple.org/", "not allowed in a host"),
    ("http://a\x00b.example/", "not allowed in a host"),
    ("http://a..b/", "empty label"),
    ("http://.example.org/", "empty label"),
    ("http://.../", "empty label"),
    ("http://256.0.0.1/", "not a valid IPv4"),
    ("http://1.2.3.4.5/", "not a valid IPv4"),
    ("http://1.2.3.09/", "not a valid IPv4"),
    ("http://" + "a" * 64 + ".пример/", "punycode"),
]


@pytest.mark.parametrize(("url", "reason"), INVALID_CASES)
def test_normalize_url_rejects(url: str, reason: str) -> None:
    with pytest.raises(InvalidUrlError) as caught:
        normalize_url(url)

    assert reason in caught.value.reason
    assert caught.value.url == url


@pytest.mark.parametrize("value", [None, 42, b"http://example.org/", ["http://x/"]])
def test_normalize_url_rejects_non_strings(value: Any) -> None:
    with pytest.raises(InvalidUrlError, match="must be a string"):
        normalize_url(value)


def test_url_functions_raise_only_invalid_url_error() -> None:
    # A seeded random mix of URL fragments, so a failure is reproducible.
    pieces = [
        "http://", "https://", "HTTP://", "http:", "//", "\\", "[", "]", "::1",
        ":", ":80", ":99999", "@", "user:pw@", "%", "%zz", "%2e%2e", "..", "/",
        "?", "#", "&", "=", "xn--", "127.1", "0x7f", "пример", " ", "\t", "\x00",
        "host", "a.b", "ß", "\u200b", "\uff11", "javascript:",
    ]  # fmt: skip
    generator = random.Random(20_240_601)
    for _ in range(20_000):
        url = "".join(generator.choices(pieces, k=generator.randint(0, 9)))
        resolved = resolve_link(url, BASE)
        assert resolved is None or normalize_url(resolved) == resolved, url

        try:
            normalized = normalize_url(url)
        except InvalidUrlError:
            continue

        assert normalized.isascii(), url
        assert normalize_url(normalized) == normalized, url
        assert canonicalize_url(canonicalize_url(normalized)) == canonicalize_url(
            normalized
        ), url
        assert host_key(normalized), url


RESOLVE_CASES = [
    ("other.html", "http://example.org/dir/other.html"),
    ("/abs", "http://example.org/abs"),
    ("./", "http://example.org/dir/"),
    (".", "http://example.org/dir/"),
    ("..", "http://example.org/"),
    ("../up.html", "http://example.org/up.html"),
    ("../../../../x", "http://example.org/x"),
    ("/a/../../b", "http://example.org/b"),
    ("?q=2", "http://example.org/dir/page.html?q=2"),
    ("page.html#section", "http://example.org/dir/page.html"),
    ("//other.org/p", "http://other.org/p"),
    ("//other.org", "http://other.org/"),
    ("//OTHER.org:80/p#f", "http://other.org/p"),
    ("https://Other.ORG:443/a#f", "https://other.org/a"),
    ("HTTP://EXAMPLE.ORG/Path", "http://example.org/Path"),
    ("  /padded  ", "http://example.org/padded"),
    ("\n\t/newline\n", "http://example.org/newline"),
    ("/a\tb\nc", "http://example.org/abc"),
    ("a b.html", "http://example.org/dir/a%20b.html"),
    ("/путь", "http://example.org/%D0%BF%D1%83%D1%82%D1%8C"),
    ("http://пример.рф/путь", "http://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C"),
    ("/a?b=1&c=2", "http://example.org/a?b=1&c=2"),
    # The parser already decoded entities, so a literal "&amp;" is data.
    ("/a?b=1&amp;c=2", "http://example.org/a?b=1&amp;c=2"),
    ("&#x6a;avascript:x", "http://example.org/dir/&"),
    ("/p?utm_source=x&b=2&a=1", "http://example.org/p?utm_source=x&b=2&a=1"),
    ("\\\\evil.example/x", "http://evil.example/x"),
    ("/a\\b?c=\\d", "http://example.org/a/b?c=%5Cd"),
    ("http:\\\\evil.example\\x", "http://evil.example/x"),
    ("http:rel", "http://example.org/dir/rel"),
    ("https:other.example", "https://other.example/"),
    ("http://127.1:8080/", "http://127.0.0.1:8080/"),
]


@pytest.mark.parametrize(("href", "expected"), RESOLVE_CASES)
def test_resolve_link(href: str, expected: str) -> None:
    assert resolve_link(href, BASE) == expected


SKIPPED_HREFS = [
    "",
    "   ",
    "\t\n",
    "#",
    "#top",
    "  #top",
    "javascript:void(0)",
    "JAVASCRIPT:void(0)",
    " JavaScript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "\x01javascript:alert(1)",
    "vbscript:msgbox",
    "mailto:a@example.org",
    "MailTo:a@example.org",
    "tel:+123456",
    "data:text/html,hi",
    "ftp://example.org/file",
    "file:///etc/passwd",
    "about:blank",
    "blob:http://example.org/uuid",
    "sms:+123",
    "whatsapp://send?text=hi",
    "unknown-scheme:foo",
    "http://[::1",
    "http://h:99999/",
    "http://",
    "//",
    "http://a..b/",
]


@pytest.mark.parametrize("href", SKIPPED_HREFS)
def test_resolve_link_returns_none(href: str) -> None:
    assert resolve_link(href, BASE) is None


def test_resolve_link_protocol_relative_keeps_https() -> None:
    assert resolve_link("//cdn.example/x", "https://example.org/") == (
        "https://cdn.example/x"
    )


def test_resolve_link_relative_base_href() -> None:
    # The caller resolves <base href="../base/"> against the page URL first.
    page = "http://example.org/a/b/page.html"
    base = resolve_link("../base/", page)

    assert base == "http://example.org/a/base/"
    assert resolve_link("x.html", base) == "http://example.org/a/base/x.html"
    assert resolve_link("../y.html", base) == "http://example.org/a/y.html"


def test_resolve_link_base_href_without_slash() -> None:
    base = resolve_link("/docs/index.html", "http://example.org/a/page.html")

    assert base == "http://example.org/docs/index.html"
    assert resolve_link("sub/p", base) == "http://example.org/docs/sub/p"


def test_resolve_link_base_with_port() -> None:
    base = "http://127.0.0.1:8080/a/"

    assert resolve_link("b", base) == "http://127.0.0.1:8080/a/b"
    assert resolve_link("//127.0.0.1:8081/", base) == "http://127.0.0.1:8081/"


def test_skipped_schemes_cover_common_ones() -> None:
    for scheme in ("javascript", "mailto", "tel", "data", "ftp", "file", "about"):
        assert scheme in SKIPPED_SCHEMES


def test_skipped_schemes_exclude_http() -> None:
    assert "http" not in SKIPPED_SCHEMES
    assert "https" not in SKIPPED_SCHEMES


def test_default_strip_params() -> None:
    assert DEFAULT_STRIP_PARAMS == (
        "utm_*", "gclid", "fbclid", "msclkid", "dclid", "yclid",
        "mc_cid", "mc_eid", "_ga", "_hsenc", "_hsmi",
    )  # fmt: skip


CANONICAL = "http://example.org/p?a=1&b=2"

SAME_KEY_VARIANTS = [
    "http://example.org/p?b=2&a=1",
    "http://example.org/p?a=1&b=2#frag",
    "http://EXAMPLE.org:80/p?a=1&b=2",
    "HTTP://example.org/p?a=1&b=2",
    "http://example.org/p?a=1&utm_source=news&b=2&utm_medium=email",
    "http://example.org/p?gclid=1&a=1&fbclid=2&b=2&msclkid=3",
    "http://example.org/p?_ga=1&a=1&mc_cid=2&mc_eid=3&b=2&_hsenc=4&_hsmi=5",
    "http://example.org/p?a=1&yclid=1&dclid=2&b=2",
    "http://example.org/x/../p?a=1&b=2",
    "http://example.org/p?a=1&b=2&utm%5Fsource=x",
]


@pytest.mark.parametrize("url", SAME_KEY_VARIANTS)
def test_canonicalize_url_same_key(url: str) -> None:
    assert canonicalize_url(url) == CANONICAL


@pytest.mark.parametrize("url", SAME_KEY_VARIANTS[:2] + SAME_KEY_VARIANTS[4:8])
def test_normalize_url_keeps_query_as_is(url: str) -> None:
    assert normalize_url(url).partition("?")[2] == url.partition("?")[2].split("#")[0]


DIFFERENT_KEY_VARIANTS = [
    "http://example.org/P?a=1&b=2",
    "https://example.org/p?a=1&b=2",
    "http://example.org:8080/p?a=1&b=2",
    "http://www.example.org/p?a=1&b=2",
    "http://example.org/p?a=1&b=3",
    "http://example.org/p?a=1&b=2&UTM_source=x",
    "http://example.org/p?a=1&b=2&gclid2=x",
    "http://example.org/p/?a=1&b=2",
]


@pytest.mark.parametrize("url", DIFFERENT_KEY_VARIANTS)
def test_canonicalize_url_different_key(url: str) -> None:
    assert canonicalize_url(url) != CANONICAL


def test_canonicalize_url_drops_empty_query() -> None:
    assert canonicalize_url("http://example.org/p?utm_source=x") == (
        "http://example.org/p"
    )


def test_canonicalize_url_normalizes_percent_encoding() -> None:
    assert canonicalize_url("http://example.org/%7efoo") == canonicalize_url(
        "http://example.org/~foo"
    )


def test_canonicalize_url_keeps_blank_values() -> None:
    assert canonicalize_url("http://example.org/p?b&a=") == "http://example.org/p?a=&b="


def test_canonicalize_url_custom_strip_params() -> None:
    url = "http://example.org/p?sessionid=9&ref_src=x&utm_source=y&a=1"

    assert canonicalize_url(url, ["sessionid", "ref*"]) == (
        "http://example.org/p?a=1&utm_source=y"
    )


def test_canonicalize_url_empty_strip_params() -> None:
    url = "http://example.org/p?utm_source=y"

    assert canonicalize_url(url, ()) == url


def test_canonicalize_url_rejects_invalid() -> None:
    with pytest.raises(InvalidUrlError):
        canonicalize_url("mailto:a@example.org")


HOST_KEY_CASES = [
    ("http://127.0.0.1:8080/x", "127.0.0.1:8080"),
    ("http://127.0.0.1:8081/x", "127.0.0.1:8081"),
    ("https://example.org/", "example.org:443"),
    ("http://example.org/", "example.org:80"),
    ("https://example.org:443/", "example.org:443"),
    ("http://Example.ORG:8080/", "example.org:8080"),
    ("http://user:pw@example.org/", "example.org:80"),
    ("http://[::1]:8080/", "[::1]:8080"),
    ("http://[0::1]/", "[::1]:80"),
    ("http://пример.рф/", "xn--e1afmkfd.xn--p1ai:80"),
    ("http://127.1/", "127.0.0.1:80"),
]


@pytest.mark.parametrize(("url", "expected"), HOST_KEY_CASES)
def test_host_key(url: str, expected: str) -> None:
    assert host_key(url) == expected


ORIGIN_CASES = [
    ("https://example.org:443/a?b", "https://example.org"),
    ("http://example.org/a", "http://example.org"),
    ("http://example.org:443/a", "http://example.org:443"),
    ("http://127.0.0.1:8080/a", "http://127.0.0.1:8080"),
    ("http://[::1]:81/", "http://[::1]:81"),
    ("http://u:p@Example.org/", "http://example.org"),
]


@pytest.mark.parametrize(("url", "expected"), ORIGIN_CASES)
def test_origin_of(url: str, expected: str) -> None:
    assert origin_of(url) == expected


@pytest.mark.parametrize(("url", "expected"), ORIGIN_CASES)
def test_robots_url(url: str, expected: str) -> None:
    assert robots_url(url) == expected + "/robots.txt"


HOSTNAME_CASES = [
    ("http://Example.org:8080/", "example.org"),
    ("http://[::1]:8080/", "::1"),
    ("http://пример.рф/", "xn--e1afmkfd.xn--p1ai"),
    ("http://127.0.0.1/", "127.0.0.1"),
    ("http://localhost:9/", "localhost"),
]


@pytest.mark.parametrize(("url", "expected"), HOSTNAME_CASES)
def test_hostname_of(url: str, expected: str) -> None:
    assert hostname_of(url) == expected


@pytest.mark.parametrize("url", ["not a url", "ftp://example.org/", "http://", ""])
def test_host_key_rejects_invalid(url: str) -> None:
    with pytest.raises(InvalidUrlError):
        host_key(url)


def _normalize_slow(url: str) -> str:
    """normalize_url without its fast path, as the reference."""
    saved = urls._normalize_fast
    urls._normalize_fast = lambda _url: None
    try:
        return urls.normalize_url(url)
    except InvalidUrlError as exc:
        return f"InvalidUrlError: {exc.reason}"
    finally:
        urls._normalize_fast = saved


def _normalize_or_error(url: str) -> str:
    try:
        return urls.normalize_url(url)
    except InvalidUrlError as exc:
        return f"InvalidUrlError: {exc.reason}"


FAST_PATH_CASES = [
    "http://a.b/%7e?x=%2f",
    "http://a.b/%7E",
    "http://a.b/p?",
    "http://a.b:80/",
    "https://a.b:443/x",
    "http://a.b:8080/x",
    "http://a.b:0/",
    "http://a.b:65536/",
    "http://127.1/",
    "http://1.2.3.4/x",
    "http://1.2.3.04/",
    "http://09.1.1.1/",
    "http://a..b/",
    "http://a.b./",
    "http://a.b/./x",
    "http://a.b/x/..",
    "http://a.b/x/../y",
    "http://a.b/%2e%2e/",
    "http://a.b/'x'?q='1'",
    "http://a.b/x?q=a b",
    "http://a.b/%zz",
    "http://a.b/p#frag ment",
    "http://a.b/p?q#f",
    "http://A.b/",
    "http://a.b/x?q=[1]",
    "http://a.b/x?q=%",
    "http://a.b/~u/!$&()*+,;=:@",
    "http://-a.b/",
    "http://a.b/p?q=é",
    "http://xn--e1afmkfd.xn--p1ai/",
]


@pytest.mark.parametrize("url", FAST_PATH_CASES)
def test_normalize_fast_path_matches_slow_path(url: str) -> None:
    assert _normalize_or_error(url) == _normalize_slow(url)


def test_normalize_fast_path_matches_slow_path_on_random_urls() -> None:
    rng = random.Random(7)
    alphabet = "abAB09-._~!$&'()*+,;=:@/?#%[] é\\"
    mismatches = []
    for _ in range(20_000):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        prefix = rng.choice(
            ("http://ex.org/", "https://ex.org:8443/", "http://1.2.3.4/")
        )
        url = prefix + tail
        if _normalize_or_error(url) != _normalize_slow(url):
            mismatches.append(url)

    assert mismatches == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.b/%2e%2e/%2e%2e/etc/passwd", "http://a.b/etc/passwd"),
        ("http://a.b/a/%2E%2E/b", "http://a.b/b"),
        ("http://a.b/a/%2e/b", "http://a.b/a/b"),
        ("http://a.b/a/.%2e", "http://a.b/"),
        ("http://a.b/x%2e/y", "http://a.b/x%2e/y"),
    ],
)
def test_normalize_url_encoded_dot_segments(url: str, expected: str) -> None:
    assert urls.normalize_url(url) == expected

"""Tests for the scope and trap rules."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from crawler.errors import InvalidOptionError, InvalidUrlError
from crawler.options import CrawlOptions
from crawler.scope import ALLOWED, Scope, ScopeDecision, registered_domain
from crawler.urls import normalize_url

SEED = "http://www.example.org/"


def make_scope(seeds: Sequence[str] = (SEED,), **options: Any) -> Scope:
    crawl_options = CrawlOptions(seeds=tuple(seeds), **options)
    crawl_options.validate()
    return Scope(crawl_options, seeds)


def test_allowed_decision_is_empty() -> None:
    decision = make_scope().check("http://www.example.org/a")

    assert decision == ScopeDecision(allowed=True, reason="", rule="", detail="")
    assert decision == ALLOWED


def test_decision_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALLOWED.allowed = False  # type: ignore[misc]


# Host scope


@pytest.mark.parametrize(
    "url",
    [
        "http://www.example.org/",
        "http://www.example.org/deep/path?q=1",
        "http://user:pw@www.example.org/",
    ],
)
def test_host_scope_allows_seed_host(url: str) -> None:
    assert make_scope().check(url).allowed


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://docs.other.org/", "docs.other.org:80"),
        ("http://example.org/", "example.org:80"),
        ("http://sub.www.example.org/", "sub.www.example.org:80"),
        ("http://www.example.org:8080/", "www.example.org:8080"),
        ("https://www.example.org/", "www.example.org:443"),
    ],
)
def test_host_scope_rejects_other_host(url: str, key: str) -> None:
    decision = make_scope().check(url)

    assert not decision.allowed
    assert decision.reason == "out_of_scope"
    assert decision.rule == "same_host"
    assert decision.detail == f"host {key} is not www.example.org:80 (scope 'host')"


def test_host_scope_compares_ports_on_one_ip() -> None:
    scope = make_scope(["http://127.0.0.1:8080/"])

    assert scope.check("http://127.0.0.1:8080/x").allowed
    assert not scope.check("http://127.0.0.1:8081/x").allowed
    assert not scope.check("http://127.0.0.2:8080/x").allowed


def test_host_scope_several_seeds() -> None:
    scope = make_scope(["http://a.example/", "https://b.example:8443/"])

    assert scope.check("http://a.example/x").allowed
    assert scope.check("https://b.example:8443/y").allowed
    assert not scope.check("https://b.example/y").allowed


def test_host_scope_detail_lists_at_most_three_seeds() -> None:
    seeds = [f"http://h{i}.example/" for i in range(5)]
    decision = make_scope(seeds).check("http://other.example/")

    assert decision.detail == (
        "host other.example:80 is not h0.example:80, h1.example:80, "
        "h2.example:80 and 2 more (scope 'host')"
    )


def test_host_scope_normalizes_seeds() -> None:
    scope = make_scope(["HTTP://WWW.Example.ORG:80/start#top"])

    assert scope.check("http://www.example.org/other").allowed


def test_host_scope_ipv6() -> None:
    scope = make_scope(["http://[::1]:8080/"])

    assert scope.check("http://[::1]:8080/a").allowed
    assert not scope.check("http://[::2]:8080/a").allowed


def test_host_scope_idn_seed() -> None:
    scope = make_scope(["http://пример.рф/"])

    assert scope.check(normalize_url("http://пример.рф/путь")).allowed


def test_host_scope_needs_seeds() -> None:
    options = CrawlOptions(seeds=(), sitemaps=("http://www.example.org/sitemap.xml",))
    options.validate()

    with pytest.raises(InvalidOptionError) as caught:
        Scope(options, [])

    assert caught.value.option == "seeds"


# Domain scope


REGISTERED_DOMAINS = [
    ("www.example.org", "example.org"),
    ("a.b.example.org", "example.org"),
    ("example.org", "example.org"),
    ("www.bbc.co.uk", "bbc.co.uk"),
    ("a.b.example.co.uk", "example.co.uk"),
    ("news.example.com.au", "example.com.au"),
    ("alice.github.io", "alice.github.io"),
    ("www.alice.github.io", "alice.github.io"),
    ("www.xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
    ("example.org.", "example.org"),
    ("127.0.0.1", "127.0.0.1"),
    ("::1", "::1"),
    ("localhost", "localhost"),
    ("app.localhost", "app.localhost"),
    ("a.corp.internal", "a.corp.internal"),
    ("co.uk", "co.uk"),
]


@pytest.mark.parametrize(("hostname", "expected"), REGISTERED_DOMAINS)
def test_registered_domain(hostname: str, expected: str) -> None:
    assert registered_domain(hostname) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://www.bbc.co.uk/",
        "https://news.bbc.co.uk/a",
        "http://bbc.co.uk:8080/",
        "http://a.b.c.bbc.co.uk/",
    ],
)
def test_domain_scope_allows_same_registered_domain(url: str) -> None:
    scope = make_scope(["https://www.bbc.co.uk/"], scope="domain")

    assert scope.check(url).allowed


@pytest.mark.parametrize(
    ("url", "host", "domain"),
    [
        ("https://other.co.uk/", "other.co.uk", "other.co.uk"),
        ("https://www.bbc.com/", "www.bbc.com", "bbc.com"),
        ("https://co.uk/", "co.uk", "co.uk"),
        ("https://bbc.co.uk.evil.com/", "bbc.co.uk.evil.com", "evil.com"),
    ],
)
def test_domain_scope_rejects_other_domain(url: str, host: str, domain: str) -> None:
    decision = make_scope(["https://www.bbc.co.uk/"], scope="domain").check(url)

    assert not decision.allowed
    assert decision.reason == "out_of_scope"
    assert decision.rule == "same_domain"
    assert decision.detail == (
        f"host {host} is in domain {domain}, not bbc.co.uk (scope 'domain')"
    )


def test_domain_scope_private_suffix() -> None:
    scope = make_scope(["https://alice.github.io/"], scope="domain")

    assert scope.check("https://www.alice.github.io/").allowed
    assert not scope.check("https://bob.github.io/").allowed


def test_domain_scope_ip_is_own_domain() -> None:
    scope = make_scope(["http://127.0.0.1:8080/"], scope="domain")

    assert scope.check("http://127.0.0.1:9000/").allowed
    assert not scope.check("http://127.0.0.2:8080/").allowed


def test_domain_scope_localhost_is_own_domain() -> None:
    scope = make_scope(["http://localhost:8080/"], scope="domain")

    assert scope.check("http://localhost:9/").allowed
    assert not scope.check("http://127.0.0.1:8080/").allowed
    assert not scope.check("http://app.localhost:8080/").allowed


def test_domain_scope_idn() -> None:
    scope = make_scope(["http://пример.рф/"], scope="domain")

    assert scope.check(normalize_url("http://www.пример.рф/")).allowed
    assert not scope.check("http://xn--e1afmkfd.com/").allowed


# Allowlist scope


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/",
        "https://docs.example.org:8443/x",
        "http://a.b.example.org/",
        "http://example.org./",
    ],
)
def test_allowlist_allows_domain_and_subdomains(url: str) -> None:
    scope = make_scope(scope="allowlist", allowed_domains=("example.org",))

    assert scope.check(url).allowed


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://notexample.org/", "notexample.org"),
        ("http://example.org.evil.example/", "example.org.evil.example"),
        ("http://other.org/", "other.org"),
        ("http://org/", "org"),
    ],
)
def test_allowlist_rejects_other_host(url: str, host: str) -> None:
    scope = make_scope(scope="allowlist", allowed_domains=("example.org",))
    decision = scope.check(url)

    assert not decision.allowed
    assert decision.reason == "out_of_scope"
    assert decision.rule == "allowed_domains"
    assert decision.detail == (
        f"host {host} is neither an allowed domain (example.org) nor a subdomain "
        "of one (scope 'allowlist')"
    )


def test_allowlist_is_case_insensitive() -> None:
    scope = make_scope(scope="allowlist", allowed_domains=("Docs.Example.ORG",))

    assert scope.check("http://docs.example.org/").allowed
    assert scope.check("http://api.docs.example.org/").allowed
    assert not scope.check("http://example.org/").allowed


def test_allowlist_idn_entry() -> None:
    scope = make_scope(scope="allowlist", allowed_domains=("пример.рф",))

    assert scope.check("http://xn--e1afmkfd.xn--p1ai/").allowed
    assert scope.check(normalize_url("http://www.пример.рф/")).allowed


def test_allowlist_entry_with_port() -> None:
    scope = make_scope(scope="allowlist", allowed_domains=("localhost:8080",))

    assert scope.check("http://localhost:8080/").allowed
    assert scope.check("http://app.localhost:8080/").allowed
    assert not scope.check("http://localhost:8081/").allowed


def test_allowlist_same_host_with_and_without_port() -> None:
    scope = make_scope(
        scope="allowlist", allowed_domains=("example.org:8080", "example.org")
    )

    assert scope.check("http://example.org:9999/").allowed


def test_allowlist_ip_entry() -> None:
    scope = make_scope(scope="allowlist", allowed_domains=("127.0.0.1",))

    assert scope.check("http://127.0.0.1:8080/").allowed
    assert not scope.check("http://127.0.0.2/").allowed


def test_allowlist_ignores_seed_host() -> None:
    scope = make_scope(scope="allowlist", allowed_domains=("other.org",))

    assert not scope.check(SEED).allowed


def test_allowlist_needs_no_seeds() -> None:
    options = CrawlOptions(
        seeds=(),
        sitemaps=("http://example.org/sitemap.xml",),
        scope="allowlist",
        allowed_domains=("example.org",),
    )
    options.validate()

    assert Scope(options, []).check("http://example.org/a").allowed


def test_allowlist_rejects_invalid_entry() -> None:
    options = CrawlOptions(
        seeds=(SEED,), scope="allowlist", allowed_domains=("a..example",)
    )
    options.validate()

    with pytest.raises(InvalidOptionError) as caught:
        Scope(options, options.seeds)

    assert caught.value.option == "allowed_domains"


# Include and exclude


def test_include_allows_match() -> None:
    scope = make_scope(include=(r"/docs/",))

    assert scope.check("http://www.example.org/docs/a").allowed


def test_include_rejects_non_match() -> None:
    decision = make_scope(include=(r"/docs/", r"/api/")).check(
        "http://www.example.org/blog/"
    )

    assert not decision.allowed
    assert decision.reason == "out_of_scope"
    assert decision.rule == "include"
    assert (
        decision.detail
        == "URL matches none of the include patterns ('/docs/', '/api/')"
    )


def test_include_searches_full_url() -> None:
    scope = make_scope(include=(r"^https://",))

    assert not scope.check("http://www.example.org/").allowed


def test_include_applies_to_seed() -> None:
    scope = make_scope(include=(r"/docs/",))

    assert not scope.check(SEED).allowed


def test_exclude_rejects_match() -> None:
    decision = make_scope(exclude=(r"\.pdf$",)).check("http://www.example.org/a.pdf")

    assert not decision.allowed
    assert decision.reason == "out_of_scope"
    assert decision.rule == "exclude"
    assert decision.detail == r"URL matches exclude pattern '\.pdf$'"


def test_exclude_allows_non_match() -> None:
    scope = make_scope(exclude=(r"\.pdf$",))

    assert scope.check("http://www.example.org/a.pdf.html").allowed


def test_exclude_beats_include() -> None:
    scope = make_scope(include=(r"/docs/",), exclude=(r"/docs/private/",))
    decision = scope.check("http://www.example.org/docs/private/x")

    assert decision.rule == "exclude"
    assert scope.check("http://www.example.org/docs/public/x").allowed


def test_host_rule_runs_before_exclude() -> None:
    scope = make_scope(exclude=(r"other",))

    assert scope.check("http://other.org/").rule == "same_host"


# Traps


def test_url_length_trap() -> None:
    url = "http://other.org/" + "a" * 3000
    decision = make_scope().check(url)

    assert not decision.allowed
    assert decision.reason == "trap"
    assert decision.rule == "url_length"
    assert decision.detail == (
        "URL is 3017 characters long, more than max_url_length (2048)"
    )


def test_url_length_at_limit_allowed() -> None:
    url = SEED + "a" * (100 - len(SEED))

    assert make_scope(max_url_length=100).check(url).allowed
    assert not make_scope(max_url_length=99).check(url).allowed


def test_path_repeats_trap() -> None:
    decision = make_scope().check("http://www.example.org/a/b/a/b/a/b/a/b")

    assert not decision.allowed
    assert decision.reason == "trap"
    assert decision.rule == "path_repeats"
    assert decision.detail == (
        "path segment 'a' occurs 4 times, more than max_path_repeats (3)"
    )


@pytest.mark.parametrize(
    "path",
    ["/a/b/a/b/a/b", "/a//a//a//", "/a/b/c/d/e/f/g/h", "/x/y/z/x/y/z/x/y/z"],
)
def test_path_repeats_within_limit(path: str) -> None:
    assert make_scope().check("http://www.example.org" + path).allowed


def test_path_repeats_limit_option() -> None:
    scope = make_scope(max_path_repeats=1)

    assert not scope.check("http://www.example.org/a/a").allowed
    assert scope.check("http://www.example.org/a/b").allowed


def test_query_params_trap() -> None:
    query = "&".join(f"p{i}=1" for i in range(13))
    decision = make_scope().check(f"http://www.example.org/?{query}")

    assert not decision.allowed
    assert decision.reason == "trap"
    assert decision.rule == "query_params"
    assert decision.detail == "query has 13 parameters, more than max_query_params (12)"


def test_query_params_at_limit_allowed() -> None:
    query = "&".join(f"p{i}=1" for i in range(12))

    assert make_scope().check(f"http://www.example.org/?{query}").allowed


def test_query_params_ignore_empty_pairs() -> None:
    scope = make_scope(max_query_params=2)

    assert scope.check("http://www.example.org/?a=1&&&b=2&").allowed


def test_path_repeats_before_query_params() -> None:
    scope = make_scope(max_query_params=1)
    decision = scope.check("http://www.example.org/a/a/a/a?x=1&y=2")

    assert decision.rule == "path_repeats"


# Query variants


def test_query_variants_trap() -> None:
    scope = make_scope(max_query_variants=3)
    for page in range(1, 4):
        assert scope.admit(f"http://www.example.org/list?page={page}").allowed

    decision = scope.admit("http://www.example.org/list?page=4")

    assert not decision.allowed
    assert decision.reason == "trap"
    assert decision.rule == "query_variants"
    assert decision.detail == (
        "http://www.example.org/list already has 3 admitted query strings, "
        "the max_query_variants limit"
    )


def test_query_variants_same_url_counts_once() -> None:
    scope = make_scope(max_query_variants=1)

    assert scope.admit("http://www.example.org/list?page=1").allowed
    assert scope.admit("http://www.example.org/list?page=1").allowed
    assert not scope.admit("http://www.example.org/list?page=2").allowed


def test_query_variants_order_counts_once() -> None:
    scope = make_scope(max_query_variants=1)

    assert scope.admit("http://www.example.org/s?a=1&b=2").allowed
    assert scope.admit("http://www.example.org/s?b=2&a=1").allowed


def test_query_variants_admitted_after_trap() -> None:
    scope = make_scope(max_query_variants=1)
    scope.admit("http://www.example.org/list?page=1")
    scope.admit("http://www.example.org/list?page=2")

    assert scope.admit("http://www.example.org/list?page=1").allowed


def test_query_variants_without_query_unlimited() -> None:
    scope = make_scope(max_query_variants=1)
    scope.admit("http://www.example.org/list?page=1")

    assert scope.admit("http://www.example.org/list").allowed
    assert scope.admit("http://www.example.org/list?").allowed


def test_query_variants_per_path() -> None:
    scope = make_scope(max_query_variants=1)

    assert scope.admit("http://www.example.org/a?x=1").allowed
    assert scope.admit("http://www.example.org/b?x=2").allowed
    assert scope.admit("http://www.example.org/a/?x=3").allowed


def test_query_variants_per_host() -> None:
    scope = make_scope(["http://a.example/", "http://b.example/"], max_query_variants=1)

    assert scope.admit("http://a.example/s?q=1").allowed
    assert scope.admit("http://b.example/s?q=2").allowed


def test_check_does_not_count_variants() -> None:
    scope = make_scope(max_query_variants=2)
    for page in range(10):
        assert scope.check(f"http://www.example.org/list?page={page}").allowed

    assert scope.admit("http://www.example.org/list?page=8").allowed
    assert scope.admit("http://www.example.org/list?page=9").allowed


def test_rejected_urls_not_counted() -> None:
    scope = make_scope(max_query_variants=1, exclude=(r"page=1",))

    assert scope.admit("http://www.example.org/list?page=1").rule == "exclude"
    assert scope.admit("http://www.example.org/list?page=2").allowed


# Invalid input


@pytest.mark.parametrize(
    "url",
    ["not a url", "ftp://www.example.org/", "http:///x", "http://h:port/", "/path"],
)
def test_check_rejects_non_normalized(url: str) -> None:
    with pytest.raises(InvalidUrlError):
        make_scope().check(url)


def test_check_rejects_idn_not_normalized() -> None:
    with pytest.raises(InvalidUrlError):
        make_scope().check("http://пример.рф/")


def test_scope_backtracking_pattern_finishes() -> None:
    # With Python's re this search would backtrack for longer than the
    # universe's age; RE2 answers at once (the suite's per-test timeout
    # would fail a backtracking engine).
    options = CrawlOptions(
        seeds=("http://example.org/",), include=("(a+)+$",), max_url_length=65_536
    )
    scope = Scope(options, options.seeds)

    decision = scope.check("http://example.org/" + "a" * 5000 + "!")

    assert decision.allowed is False
    assert decision.rule == "include"


def test_options_reject_lookaround_pattern() -> None:
    options = CrawlOptions(seeds=("http://example.org/",), exclude=("(?<=a)b",))

    with pytest.raises(InvalidOptionError) as raised:
        options.validate()

    assert raised.value.option == "exclude"
    assert "RE2 syntax" in raised.value.message

"""Tests for crawl options: parsing API bodies, validation and selectors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crawler.errors import InvalidOptionError
from crawler.options import CrawlOptions, Selector, iter_option_names

SEED = "http://docs.example.org/start"

FULL_BODY: dict[str, Any] = {
    "seeds": [SEED, "https://docs.example.org/other"],
    "max_pages": 500,
    "max_depth": 4,
    "max_duration_s": 90.5,
    "concurrency": 8,
    "per_host_concurrency": 2,
    "per_host_delay_s": 0.25,
    "scope": "allowlist",
    "allowed_domains": ["docs.example.org", "cdn.example.org:8443"],
    "include": [r"/guide/", r"\.html$"],
    "exclude": [r"/private/"],
    "obey_robots": False,
    "user_agent": "testbot/1.0 (+http://bot.example.org)",
    "sitemaps": ["http://docs.example.org/sitemap.xml"],
    "robots_sitemaps": True,
    "selectors": [
        {"name": "price", "css": "span.price"},
        {"name": "images", "css": "img", "attr": "src", "all": True},
    ],
    "max_body_bytes": 2048,
    "connect_timeout_s": 3,
    "read_timeout_s": 4.5,
    "total_timeout_s": 20,
    "min_rate_bytes_s": 0,
    "rate_grace_s": 1.0,
    "max_retries": 0,
    "backoff_base_s": 0.1,
    "backoff_max_s": 2.0,
    "max_retry_after_s": 10.0,
    "max_redirects": 3,
    "max_url_length": 512,
    "strip_params": ["utm_*", "sessionid"],
    "max_path_repeats": 2,
    "max_query_params": 5,
    "max_query_variants": 10,
}


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"seeds": [SEED]}
    data.update(overrides)
    return data


def rejected_option(data: dict[str, Any]) -> InvalidOptionError:
    with pytest.raises(InvalidOptionError) as caught:
        CrawlOptions.from_mapping(data)
    return caught.value


# Valid bodies


def test_from_mapping_full_body() -> None:
    options = CrawlOptions.from_mapping(FULL_BODY)

    assert options.seeds == (SEED, "https://docs.example.org/other")
    assert options.max_pages == 500
    assert options.max_duration_s == 90.5
    assert options.scope == "allowlist"
    assert options.allowed_domains == ("docs.example.org", "cdn.example.org:8443")
    assert options.include == (r"/guide/", r"\.html$")
    assert options.obey_robots is False
    assert options.user_agent == "testbot/1.0 (+http://bot.example.org)"
    assert options.robots_sitemaps is True
    assert options.selectors == (
        Selector(name="price", css="span.price"),
        Selector(name="images", css="img", attr="src", all=True),
    )
    assert options.connect_timeout_s == 3
    assert options.strip_params == ("utm_*", "sessionid")


def test_from_mapping_covers_every_option() -> None:
    assert sorted(FULL_BODY) == sorted(iter_option_names())


def test_from_mapping_defaults() -> None:
    options = CrawlOptions.from_mapping(body())

    assert options == CrawlOptions(seeds=(SEED,))


def test_from_mapping_sitemaps_without_seed_urls() -> None:
    options = CrawlOptions.from_mapping(
        {"seeds": [], "sitemaps": ["http://docs.example.org/sitemap.xml"]}
    )

    assert options.seeds == ()


def test_to_mapping_round_trip() -> None:
    options = CrawlOptions.from_mapping(FULL_BODY)

    data = json.loads(json.dumps(options.to_mapping()))

    assert CrawlOptions.from_mapping(data) == options


def test_to_mapping_of_defaults_round_trip() -> None:
    options = CrawlOptions(seeds=(SEED,))

    assert CrawlOptions.from_mapping(options.to_mapping()) == options


def test_to_mapping_selector_form() -> None:
    options = CrawlOptions.from_mapping(FULL_BODY)

    assert options.to_mapping()["selectors"][1] == {
        "name": "images",
        "css": "img",
        "attr": "src",
        "all": True,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_pages", 1),
        ("max_pages", 10_000_000),
        ("max_depth", 0),
        ("per_host_delay_s", 0),
        ("min_rate_bytes_s", 0),
        ("max_retries", 10),
        ("max_duration_s", None),
    ],
)
def test_from_mapping_accepts_boundary(name: str, value: Any) -> None:
    options = CrawlOptions.from_mapping(body(**{name: value}))

    assert getattr(options, name) == value


# Invalid bodies


@pytest.mark.parametrize(
    ("data", "option"),
    [
        ({"seeds": [SEED], "max_pagez": 5}, "max_pagez"),
        ({"max_pages": 5}, "seeds"),
        ({"seeds": SEED}, "seeds"),
        ({"seeds": [SEED, 7]}, "seeds"),
        ({"seeds": []}, "seeds"),
        ({"seeds": ["mailto:someone@example.org"]}, "seeds"),
        ({"seeds": ["ftp://files.example.org/"]}, "seeds"),
        ({"seeds": ["/relative/path"]}, "seeds"),
        ({"seeds": ["http://"]}, "seeds"),
        (body(sitemaps=["ftp://files.example.org/sitemap.xml"]), "sitemaps"),
        (body(max_pages=-1), "max_pages"),
        (body(max_pages=0), "max_pages"),
        (body(max_pages=10_000_001), "max_pages"),
        (body(max_pages=10**12), "max_pages"),
        (body(max_pages=True), "max_pages"),
        (body(max_pages=10.0), "max_pages"),
        (body(max_pages="10"), "max_pages"),
        (body(max_depth=1001), "max_depth"),
        (body(concurrency=False), "concurrency"),
        (body(per_host_concurrency=0), "per_host_concurrency"),
        (body(per_host_delay_s="1.5"), "per_host_delay_s"),
        (body(per_host_delay_s=-0.5), "per_host_delay_s"),
        (body(per_host_delay_s=float("nan")), "per_host_delay_s"),
        (body(read_timeout_s=True), "read_timeout_s"),
        (body(max_duration_s="60"), "max_duration_s"),
        (body(max_duration_s=0), "max_duration_s"),
        (body(total_timeout_s=float("inf")), "total_timeout_s"),
        (body(max_body_bytes=1023), "max_body_bytes"),
        (body(max_redirects=51), "max_redirects"),
        (body(obey_robots="yes"), "obey_robots"),
        (body(robots_sitemaps=1), "robots_sitemaps"),
        (body(scope="nope"), "scope"),
        (body(scope=3), "scope"),
        (body(scope="allowlist"), "allowed_domains"),
        (body(allowed_domains="example.org"), "allowed_domains"),
        (
            body(scope="allowlist", allowed_domains=["http://example.org/"]),
            "allowed_domains",
        ),
        (body(allowed_domains=["example.org/path"]), "allowed_domains"),
        (body(allowed_domains=["exa mple.org"]), "allowed_domains"),
        (body(include=["("]), "include"),
        (body(include="guide"), "include"),
        (body(exclude=["[a-"]), "exclude"),
        (body(user_agent=""), "user_agent"),
        (body(user_agent="   "), "user_agent"),
        (body(user_agent="bot/1.0\r\nX-Injected: 1"), "user_agent"),
        (body(user_agent="bot\n2"), "user_agent"),
        (body(user_agent=5), "user_agent"),
        (body(strip_params=[""]), "strip_params"),
        (body(strip_params="utm_*"), "strip_params"),
    ],
)
def test_from_mapping_rejects(data: dict[str, Any], option: str) -> None:
    error = rejected_option(data)

    assert error.option == option


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_pages", 0),
        ("max_pages", "ten"),
        ("scope", "nope"),
        ("include", ["("]),
        ("per_host_delay_s", -1),
    ],
)
def test_rejection_message_text(name: str, value: Any) -> None:
    error = rejected_option(body(**{name: value}))

    assert name in error.message
    bad = value[0] if isinstance(value, list) else value
    assert repr(bad) in error.message


def test_unknown_option_message() -> None:
    error = rejected_option(body(max_pagez=5))

    assert "'max_pagez'" in error.message
    assert "max_pages" in error.message


@pytest.mark.parametrize(
    "selectors",
    [
        {"name": "price", "css": "span.price"},
        "price=span.price",
        ["price=span.price"],
        [{"name": "price", "css": "span", "bogus": 1}],
        [{"name": "1price", "css": "span"}],
        [{"name": "has space", "css": "span"}],
        [{"name": "x" * 65, "css": "span"}],
        [{"name": "", "css": "span"}],
        [{"css": "span"}],
        [{"name": "price"}],
        [{"name": "price", "css": ""}],
        [{"name": "price", "css": "   "}],
        [{"name": "price", "css": "span["}],
        [{"name": "price", "css": "span:nope"}],
        [{"name": "price", "css": 5}],
        [{"name": "price", "css": "span", "attr": ""}],
        [{"name": "price", "css": "span", "attr": 5}],
        [{"name": "price", "css": "span", "all": "yes"}],
        [{"name": "price", "css": "span"}, {"name": "price", "css": "div"}],
    ],
)
def test_from_mapping_rejects_selectors(selectors: Any) -> None:
    error = rejected_option(body(selectors=selectors))

    assert error.option == "selectors"


def test_duplicate_selector_message() -> None:
    selectors = [{"name": "price", "css": "span"}, {"name": "price", "css": "div"}]

    error = rejected_option(body(selectors=selectors))

    assert "'price'" in error.message


def test_validate_direct_options() -> None:
    options = CrawlOptions(seeds=(SEED,), concurrency=0)

    with pytest.raises(InvalidOptionError) as caught:
        options.validate()

    assert caught.value.option == "concurrency"


# Selector.parse


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("price=span.price", Selector("price", "span.price")),
        (" price = span.price ", Selector("price", "span.price")),
        ("image=img.hero@src", Selector("image", "img.hero", "src")),
        ("link=a[rel=next]@href", Selector("link", "a[rel=next]", "href")),
        (
            "meta=meta[name=description]@content",
            Selector("meta", "meta[name=description]", "content"),
        ),
        ("data=div@data-id", Selector("data", "div", "data-id")),
        ('email=a[href*="@"]', Selector("email", 'a[href*="@"]')),
        ('email=a[href*="@"]@href', Selector("email", 'a[href*="@"]', "href")),
    ],
)
def test_selector_parse(spec: str, expected: Selector) -> None:
    assert Selector.parse(spec) == expected


def test_selector_parse_all_matches() -> None:
    selector = Selector.parse("tags=a.tag", all_matches=True)

    assert selector == Selector("tags", "a.tag", None, all=True)


@pytest.mark.parametrize(
    "spec",
    [
        "price",
        "price=",
        "=span.price",
        "price=span[",
        "price=p@",
        "1price=span",
        "price=@src",
    ],
)
def test_selector_parse_rejects(spec: str) -> None:
    with pytest.raises(InvalidOptionError) as caught:
        Selector.parse(spec)

    assert caught.value.option == "selectors"


def test_selector_parse_error_shows_form() -> None:
    with pytest.raises(InvalidOptionError) as caught:
        Selector.parse("price")

    assert "NAME=CSS" in caught.value.message
    assert "'price'" in caught.value.message


def test_selector_invalid_css_message() -> None:
    with pytest.raises(InvalidOptionError) as caught:
        Selector.parse("price=span[")

    assert "invalid CSS 'span['" in caught.value.message


def test_from_mapping_accepts_sitemaps_without_seeds() -> None:
    options = CrawlOptions.from_mapping(
        {"sitemaps": ["http://example.org/sitemap.xml"]}
    )

    assert options.seeds == ()
    assert options.sitemaps == ("http://example.org/sitemap.xml",)


def test_options_reject_overlong_user_agent() -> None:
    options = CrawlOptions(seeds=("http://example.org/",), user_agent="x" * 513)

    with pytest.raises(InvalidOptionError) as raised:
        options.validate()

    assert raised.value.option == "user_agent"


def test_options_reject_too_many_seeds() -> None:
    seeds = tuple(f"http://example.org/{n}" for n in range(10_001))

    with pytest.raises(InvalidOptionError) as raised:
        CrawlOptions(seeds=seeds).validate()

    assert raised.value.option == "seeds"


@pytest.mark.parametrize("option", ["seeds", "sitemaps"])
def test_options_reject_url_over_max_url_length(option: str) -> None:
    long_url = "http://a.test/" + "x" * 600

    error = rejected_option({option: [long_url], "max_url_length": 512})

    assert error.option == option
    assert "614 characters" in error.message
    assert "max_url_length (512)" in error.message


def test_options_accept_url_at_max_url_length() -> None:
    url = "http://a.test/" + "x" * (512 - len("http://a.test/"))

    options = CrawlOptions.from_mapping({"seeds": [url], "max_url_length": 512})

    assert options.seeds == (url,)

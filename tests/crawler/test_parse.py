"""Tests for HTML page extraction: metadata, links, robots and user selectors."""

from __future__ import annotations

import pickle
import random

import pytest

from crawler.options import Selector
from crawler.parse import Link, ParsedPage, extract_page, is_html

URL = "https://example.com/dir/page.html"
HTML = "text/html; charset=utf-8"


def parse(html: str, *selectors: Selector, url: str = URL) -> ParsedPage:
    return extract_page(url, html.encode(), HTML, selectors)


def link_urls(page: ParsedPage) -> list[str]:
    return [link.url for link in page.links]


# is_html


@pytest.mark.parametrize(
    "content_type",
    ["text/html", "TEXT/HTML; charset=utf-8", "application/xhtml+xml", " text/html ;"],
)
def test_is_html_by_header(content_type: str) -> None:
    assert is_html(content_type, b"")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json", "application/xml", "image/png"]
)
def test_not_html_by_header(content_type: str) -> None:
    assert not is_html(content_type, b"<!doctype html><html>")


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html>\n<html>",
        b"  \n<html lang=en>",
        b"\xef\xbb\xbf<!doctype HTML>",
        b"<!-- saved page -->\n<!DOCTYPE html>",
        b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml">',
    ],
)
def test_is_html_sniffed(body: bytes) -> None:
    assert is_html(None, body)


@pytest.mark.parametrize(
    "body", [b"", b"%PDF-1.7", b"<?xml version='1.0'?><urlset>", b"<htmlfoo>", b"{}"]
)
def test_not_html_sniffed(body: bytes) -> None:
    assert not is_html(None, body)


def test_blank_header_is_sniffed() -> None:
    assert is_html("  ", b"<html>")


# metadata


def test_title_whitespace_collapsed() -> None:
    page = parse("<title>\n  Hello\n\t  world  \n</title>")

    assert page.title == "Hello world"


@pytest.mark.parametrize("html", ["<p>no title</p>", "<title>  \n </title><p>x"])
def test_title_missing_or_blank(html: str) -> None:
    assert parse(html).title is None


def test_description() -> None:
    page = parse('<meta name="Description" content="  A short\n page ">')

    assert page.description == "A short page"


def test_canonical_resolved() -> None:
    page = parse('<link rel="Canonical" href="../other.html?a=1&amp;b=2#top">')

    assert page.canonical == "https://example.com/other.html?a=1&b=2"


def test_lang() -> None:
    assert parse('<html lang=" de-AT "><p>x').lang == "de-AT"


def test_lang_missing() -> None:
    assert parse("<html><p>x").lang is None


def test_encoding_from_meta() -> None:
    body = '<meta charset="windows-1251"><title>Привет</title>'.encode("cp1251")

    page = extract_page(URL, body, "text/html", ())

    assert page.encoding == "cp1251"
    assert page.title == "Привет"


# base URL and links


def test_base_absolute() -> None:
    page = parse('<base href="https://cdn.example.org/root/"><a href="x.html">x</a>')

    assert page.base_url == "https://cdn.example.org/root/"
    assert link_urls(page) == ["https://cdn.example.org/root/x.html"]


def test_base_relative() -> None:
    page = parse('<base href="../docs/"><a href="x.html">x</a>')

    assert page.base_url == "https://example.com/docs/"
    assert link_urls(page) == ["https://example.com/docs/x.html"]


def test_base_missing_is_page_url() -> None:
    assert parse("<a href='x'>x</a>").base_url == URL


def test_base_without_href_skipped() -> None:
    page = parse('<base target="_blank"><base href="/b/"><a href="x">x</a>')

    assert page.base_url == "https://example.com/b/"


def test_entity_in_href_decoded() -> None:
    page = parse('<a href="/search?q=a&amp;page=2">next</a>')

    assert link_urls(page) == ["https://example.com/search?q=a&page=2"]


def test_area_links() -> None:
    page = parse('<map><area href="/map/a" shape="rect"></map>')

    assert link_urls(page) == ["https://example.com/map/a"]


def test_rel_nofollow_noopener() -> None:
    page = parse('<a href="/a" rel="nofollow noopener">a</a><a href="/b">b</a>')

    assert page.links == (
        Link("https://example.com/a", nofollow=True),
        Link("https://example.com/b", nofollow=False),
    )


def test_rel_nofollow_case_insensitive() -> None:
    page = parse('<a href="/a" rel="NoFollow">a</a>')

    assert page.links[0].nofollow


def test_links_deduplicated_in_order() -> None:
    page = parse('<a href="/b">1</a><a href="/a">2</a><a href="/b#frag">3</a>')

    assert link_urls(page) == ["https://example.com/b", "https://example.com/a"]


def test_duplicate_followable_wins() -> None:
    page = parse('<a href="/a" rel="nofollow">1</a><a href="/a">2</a>')

    assert page.links == (Link("https://example.com/a", nofollow=False),)


def test_duplicate_all_nofollow() -> None:
    page = parse('<a href="/a" rel="nofollow">1</a><a href="/a" rel="nofollow">2</a>')

    assert page.links == (Link("https://example.com/a", nofollow=True),)


@pytest.mark.parametrize(
    "href", ["javascript:void(0)", "mailto:a@example.com", "tel:+1", "#top", ""]
)
def test_unfollowable_hrefs_skipped(href: str) -> None:
    assert parse(f'<a href="{href}">x</a>').links == ()


def test_anchor_without_href_skipped() -> None:
    assert parse('<a name="top">x</a>').links == ()


def test_link_in_script_ignored() -> None:
    page = parse('<script>document.write("<a href=/js>")</script><a href="/real">r</a>')

    assert link_urls(page) == ["https://example.com/real"]


# robots


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("noindex", {"noindex"}),
        ("NOINDEX, NOFOLLOW", {"noindex", "nofollow"}),
        ("nofollow", {"nofollow"}),
        ("none", {"noindex", "nofollow"}),
        ("index,follow", {"index", "follow"}),
    ],
)
def test_meta_robots(content: str, expected: set[str]) -> None:
    page = parse(f'<meta name="robots" content="{content}">')

    assert page.robots == frozenset(expected)


def test_meta_robots_other_agent_ignored() -> None:
    page = parse('<meta name="googlebot" content="noindex">')

    assert page.robots == frozenset()


def test_meta_robots_combined() -> None:
    page = parse(
        "<meta name=ROBOTS content=noindex><meta name=robots content=nofollow>"
    )

    assert page.robots == frozenset({"noindex", "nofollow"})


# visible text


def test_text_length_skips_script_and_style() -> None:
    html = "<title>T</title><body><p> Hello  <b>world</b> </p><script>var x;</script>"
    html += "<style>p {}</style></body>"

    assert parse(html).text_length == len("Hello world")


def test_text_length_empty_body() -> None:
    assert parse("<title>Only a title</title>").text_length == 0


# selectors


def test_selector_text() -> None:
    page = parse("<h1> The\n <em>big</em>   title </h1>", Selector("heading", "h1"))

    assert page.fields == {"heading": "The big title"}


def test_selector_attr() -> None:
    page = parse(
        '<img class="hero" src="/a.png">', Selector("image", "img.hero", "src")
    )

    assert page.fields == {"image": "/a.png"}


def test_selector_multi_valued_attr() -> None:
    page = parse('<p class="price  sale">9</p>', Selector("classes", "p", "class"))

    assert page.fields == {"classes": "price sale"}


def test_selector_meta_value_plain_str() -> None:
    html = '<meta charset="utf-8"><meta http-equiv="refresh" content="5">'
    selectors = (
        Selector("charset", "meta[charset]", "charset"),
        Selector("refresh", "meta[http-equiv]", "content"),
    )

    page = parse(html, *selectors)

    assert type(page.fields["charset"]) is str
    assert type(page.fields["refresh"]) is str


def test_selector_first_match() -> None:
    page = parse("<li>one</li><li>two</li>", Selector("item", "li"))

    assert page.fields == {"item": "one"}


def test_selector_all_matches() -> None:
    page = parse("<li>one</li><li>two</li>", Selector("items", "li", all=True))

    assert page.fields == {"items": ["one", "two"]}


def test_selector_all_attr_skips_missing() -> None:
    selector = Selector("hrefs", "a", "href", all=True)

    page = parse('<a href="/a">a</a><a>b</a><a href="/c">c</a>', selector)

    assert page.fields == {"hrefs": ["/a", "/c"]}


def test_selector_no_match() -> None:
    selectors = (Selector("one", "h2"), Selector("many", "h2", all=True))

    page = parse("<p>x</p>", *selectors)

    assert page.fields == {"one": None, "many": []}


def test_selector_missing_attr() -> None:
    page = parse("<img>", Selector("image", "img", "src"))

    assert page.fields == {"image": None}


def test_no_selectors_no_fields() -> None:
    assert parse("<p>x</p>").fields == {}


def test_selectors_on_xml_document() -> None:
    # BeautifulSoup warns about XML parsed as HTML; the suite turns warnings
    # into errors, so this fails if the warning comes back.
    body = '<?xml version="1.0"?><rss><channel><title>Feed</title></channel></rss>'

    page = parse(body, Selector("title", "title"))

    assert page.fields == {"title": "Feed"}


def test_selectors_on_url_like_text() -> None:
    # Short markup without "<" that looks like a URL makes BeautifulSoup warn.
    page = parse("https://example.com/x.html", Selector("body", "body"))

    assert page.fields == {"body": "https://example.com/x.html"}


# hostile and broken input


def test_malformed_html() -> None:
    html = "<p><b>bold <i>both</b> italic</i><a href='/x'>x<a href=/y>y<div></span>"

    page = parse(html, Selector("bold", "b"))

    assert link_urls(page) == ["https://example.com/x", "https://example.com/y"]
    assert page.fields == {"bold": "bold both"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<!-- only a comment -->",
        b"\x00" * 1000,
        b"<html><body>\x00<a href='/nul\x00'>x</a>",
        b"<" * 10_000,
        b"<a href='" + b"x" * 11_000_000 + b"'>huge attribute</a><p>after</p>",
        b"<div>" * 100_000,
        b"</p></div></html></body>",
        b"<![CDATA[x]]><?php echo 1 ?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>",
    ],
    ids=[
        "empty",
        "comment",
        "nul",
        "nul-in-tags",
        "brackets",
        "huge-attribute",
        "deep-nesting",
        "closing-only",
        "odd-markup",
    ],
)
def test_hostile_input_never_raises(body: bytes) -> None:
    page = extract_page(
        URL, body, None, (Selector("p", "p"), Selector("a", "a", all=True))
    )

    assert isinstance(page, ParsedPage)


@pytest.mark.parametrize("seed", range(5))
def test_garbage_bytes(seed: int) -> None:
    body = random.Random(seed).randbytes(50_000)

    page = extract_page(URL, body, None, (Selector("p", "p"),))

    assert page.base_url == URL


def test_empty_body_fields() -> None:
    selectors = (Selector("one", "p"), Selector("many", "p", all=True))

    page = extract_page(URL, b"", None, selectors)

    assert page.fields == {"one": None, "many": []}
    assert page.links == ()
    assert page.title is None


def test_comment_only_page() -> None:
    page = extract_page(URL, b"<!-- nothing here -->", HTML, ())

    assert page.title is None
    assert page.text_length == 0


def test_deep_nesting_keeps_early_links() -> None:
    body = b"<a href='/top'>top</a>" + b"<div>" * 100_000

    page = extract_page(URL, body, HTML, ())

    assert link_urls(page) == ["https://example.com/top"]


def test_parsed_page_pickles() -> None:
    html = '<title>T</title><meta name=robots content=none><a href="/a">a</a>'
    page = parse(html, Selector("t", "title"))

    assert pickle.loads(pickle.dumps(page)) == page


def test_extract_page_keeps_links_in_deep_nesting() -> None:
    depth = 400
    body = (
        "<html><body>"
        + "<div>" * depth
        + '<a href="/deep">deep</a>'
        + "</div>" * depth
        + '<a href="/after">after</a></body></html>'
    ).encode()

    page = extract_page("http://example.org/", body, "text/html")

    assert [link.url for link in page.links] == [
        "http://example.org/deep",
        "http://example.org/after",
    ]


def test_extract_page_caps_links() -> None:
    from crawler.parse import MAX_LINKS_PER_PAGE

    anchors = "".join(f'<a href="/p{i}">p</a>' for i in range(MAX_LINKS_PER_PAGE + 50))
    body = f"<html><body>{anchors}</body></html>".encode()

    page = extract_page("http://example.org/", body, "text/html")

    assert len(page.links) == MAX_LINKS_PER_PAGE
    assert page.links[-1].url == f"http://example.org/p{MAX_LINKS_PER_PAGE - 1}"


def test_extract_page_clips_long_title() -> None:
    from crawler.parse import MAX_TEXT_FIELD_CHARS

    body = f"<html><head><title>{'x' * 50_000}</title></head></html>".encode()

    page = extract_page("http://example.org/", body, "text/html")

    assert page.title == "x" * MAX_TEXT_FIELD_CHARS

"""Extract links, metadata and user-selected fields from one fetched HTML page.

:func:`extract_page` is the crawler's hot path, so it builds one lxml tree and
reads everything the crawl needs from it: title, description, canonical URL,
language, ``<base href>``, robots directives, links and the length of the
visible text. BeautifulSoup is built only when the crawl has user selectors:
soupsieve gives users full CSS, but the BeautifulSoup tree costs 11 to 26 times
the lxml pass on large pages (measured in docs/concurrency.md).

Guarantees:

* :func:`extract_page` never raises for any ``body`` bytes: empty, binary,
  NUL bytes, unclosed tags, deep nesting, huge attributes. When lxml builds no
  tree (an empty body, a body that is only a comment) the page has no title, no
  links and every field None (first match) or ``[]`` (all matches). It raises
  soupsieve's ``SelectorSyntaxError`` for an invalid CSS expression, which
  :meth:`crawler.options.Selector.validate` rejects beforehand.
* It is a pure function of picklable arguments and returns a picklable result,
  so the engine can run it in a thread or a process pool. It does not hold the
  event loop's objects and keeps no state between calls.
* libxml2 (2.14.6 with lxml 6.2) stops nesting elements at 256 levels
  without ``huge_tree``, and drops an attribute value over 10,000,000 bytes
  together with the rest of the document, so text and links deeper than that
  or after such an attribute are missing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bs4 import BeautifulSoup, Tag
from lxml import etree

from crawler.encoding import decode_html
from crawler.options import Selector
from crawler.urls import resolve_link

logger = logging.getLogger(__name__)

HTML_CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})

# Elements whose content is never rendered as text.
_INVISIBLE_ELEMENTS = ("script", "style", "template")

# Distinct links kept per page; the rest of a larger page's links are ignored.
MAX_LINKS_PER_PAGE = 10_000

# Maximum length of a kept title or description, in characters.
MAX_TEXT_FIELD_CHARS = 2_000

# How many leading bytes is_html() looks at when there is no Content-Type.
_SNIFF_BYTES = 1024

# A leading XML declaration, comment or whitespace, which sniffing skips.
_SNIFF_SKIPPABLE = re.compile(rb"\s+|<!--.*?-->|<\?xml[^>]*>", re.DOTALL)

# "<!doctype html" or "<html" followed by whitespace or ">".
_SNIFF_HTML = re.compile(rb"<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE)

# A leading XML declaration, which makes BeautifulSoup warn.
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*>")

FieldValue = str | list[str] | None


@dataclass(frozen=True, slots=True)
class Link:
    """A link found on a page: an absolute http(s) URL and its rel=nofollow."""

    url: str
    nofollow: bool


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """What the crawler keeps from one HTML page.

    ``links`` are absolute, normalized and de-duplicated in order of first
    occurrence. A link is ``nofollow`` only when every ``<a>``/``<area>`` that
    points to its URL has rel="nofollow". ``robots`` contains the lower-case
    tokens of ``<meta name="robots">`` (``none`` is stored as ``noindex`` and
    ``nofollow``). ``text_length`` counts the characters of the body's text
    outside script, style and template, with each whitespace run counted once.
    ``fields`` has one entry per selector, keyed by the selector's name.
    """

    encoding: str | None
    title: str | None
    description: str | None
    canonical: str | None
    lang: str | None
    base_url: str
    links: tuple[Link, ...]
    robots: frozenset[str]
    text_length: int
    fields: dict[str, FieldValue]


def is_html(content_type: str | None, body: bytes) -> bool:
    """Return whether a response is HTML.

    A Content-Type header decides alone: ``text/html`` or
    ``application/xhtml+xml``. Without one (None or blank), the body is HTML if
    it starts with ``<!doctype html`` or ``<html`` after a byte order mark,
    whitespace, comments and an XML declaration.
    """
    if content_type is not None and content_type.strip():
        media_type = content_type.split(";", 1)[0].strip().lower()
        return media_type in HTML_CONTENT_TYPES

    return _sniff_html(body[:_SNIFF_BYTES])


def _sniff_html(head: bytes) -> bool:
    """Return whether the first bytes of a body start an HTML document."""
    position = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    while match := _SNIFF_SKIPPABLE.match(head, position):
        position = match.end()

    return _SNIFF_HTML.match(head, position) is not None


def extract_page(
    url: str,
    body: bytes,
    content_type: str | None,
    selectors: Sequence[Selector] = (),
) -> ParsedPage:
    """Decode and parse one HTML page fetched from ``url``.

    ``content_type`` is the response's Content-Type header (it may name the
    charset). Links, the canonical URL and ``<base href>`` are resolved with
    :func:`crawler.urls.resolve_link`, so they are absolute and normalized.
    """
    text, encoding = decode_html(body, content_type)

    root = _build_tree(text)
    if root is None:
        return _empty_page(url, encoding, selectors)

    base_url = _base_url(root, url)
    description, robots = _read_meta(root)
    title = _title(root)
    canonical = _canonical(root, base_url)
    links = _links(root, base_url)
    fields = _select_fields(text, selectors) if selectors else {}

    # This removes script, style and template elements, so it runs last.
    text_length = _visible_text_length(root)

    return ParsedPage(
        encoding=encoding,
        title=title,
        description=description,
        canonical=canonical,
        lang=_lang(root),
        base_url=base_url,
        links=links,
        robots=robots,
        text_length=text_length,
        fields=fields,
    )


def _build_tree(text: str) -> etree._Element | None:
    """Parse text with libxml2's HTML parser; None when it yields no element."""
    # The parser gets UTF-8 bytes with encoding="utf-8", so it ignores the
    # page's own <meta charset> and XML declaration, because decode_html() has
    # already chosen the encoding. lxml rejects a str with an XML declaration.
    parser = etree.HTMLParser(
        encoding="utf-8",
        recover=True,
        no_network=True,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
        # Without huge_tree libxml2 drops everything nested deeper than 256
        # elements, links included. Bodies are capped (max_body_bytes), so the
        # larger limits cannot make a tree unbounded.
        huge_tree=True,
    )
    try:
        return etree.fromstring(text.encode("utf-8", "replace"), parser)
    except (etree.LxmlError, ValueError) as exc:
        logger.debug("lxml built no tree: %s", exc)
        return None


def _empty_page(url: str, encoding: str, selectors: Sequence[Selector]) -> ParsedPage:
    return ParsedPage(
        encoding=encoding,
        title=None,
        description=None,
        canonical=None,
        lang=None,
        base_url=url,
        links=(),
        robots=frozenset(),
        text_length=0,
        fields={s.name: [] if s.all else None for s in selectors},
    )


def _collapse(text: str) -> str:
    """Collapse every whitespace run to one space and strip both ends."""
    return " ".join(text.split())


def _clip(text: str | None) -> str | None:
    """Cut a title or description to MAX_TEXT_FIELD_CHARS characters."""
    if text is None or len(text) <= MAX_TEXT_FIELD_CHARS:
        return text
    return text[:MAX_TEXT_FIELD_CHARS]


def _non_empty(text: str | None) -> str | None:
    if text is None:
        return None

    collapsed = _collapse(text)
    return collapsed or None


def _tokens(value: str | None) -> set[str]:
    """Split a space-separated attribute such as rel into lower-case tokens."""
    if value is None:
        return set()

    return set(value.lower().split())


def _base_url(root: etree._Element, url: str) -> str:
    """Return the first <base href> resolved against the page URL, else the URL."""
    for base in root.iter("base"):
        href = base.get("href")
        if href is None:
            continue

        resolved = resolve_link(href, url)
        return url if resolved is None else resolved

    return url


def _title(root: etree._Element) -> str | None:
    # Like document.title: the first <title> in tree order, even inside <svg>.
    title = next(root.iter("title"), None)
    if title is None:
        return None

    return _clip(_non_empty(_text_content(title)))


def _read_meta(root: etree._Element) -> tuple[str | None, frozenset[str]]:
    """Return the meta description and the meta robots tokens."""
    description: str | None = None
    robots: set[str] = set()

    for meta in root.iter("meta"):
        name = (meta.get("name") or "").strip().lower()
        content = meta.get("content")
        if content is None:
            continue

        if name == "description" and description is None:
            description = _clip(_non_empty(content))
        elif name == "robots":
            robots.update(_robots_tokens(content))

    return description, frozenset(robots)


def _robots_tokens(content: str) -> set[str]:
    """Split a robots meta content such as "noindex, nofollow" into tokens."""
    tokens = set(content.lower().replace(",", " ").split())
    if "none" in tokens:
        tokens.discard("none")
        tokens.update(("noindex", "nofollow"))

    return tokens


def _canonical(root: etree._Element, base_url: str) -> str | None:
    for link in root.iter("link"):
        href = link.get("href")
        if href is not None and "canonical" in _tokens(link.get("rel")):
            return resolve_link(href, base_url)

    return None


def _lang(root: etree._Element) -> str | None:
    if root.tag != "html":
        return None

    lang = (root.get("lang") or "").strip()
    return lang or None


def _links(root: etree._Element, base_url: str) -> tuple[Link, ...]:
    """Return the page's <a href> and <area href> links, de-duplicated.

    At most MAX_LINKS_PER_PAGE distinct links are kept, in page order: a page
    with hundreds of thousands of links would otherwise hold the parser and
    the engine for tens of seconds and make a record of tens of megabytes.
    """
    # Maps each URL to whether every occurrence so far had rel="nofollow";
    # dicts keep insertion order, which is the order of first occurrence.
    nofollow_by_url: dict[str, bool] = {}

    for element in root.iter("a", "area"):
        href = element.get("href")
        if href is None:
            continue

        resolved = resolve_link(href, base_url)
        if resolved is None:
            continue

        nofollow = "nofollow" in _tokens(element.get("rel"))
        if (
            resolved not in nofollow_by_url
            and len(nofollow_by_url) >= MAX_LINKS_PER_PAGE
        ):
            break
        nofollow_by_url[resolved] = nofollow_by_url.get(resolved, True) and nofollow

    return tuple(Link(url, nofollow) for url, nofollow in nofollow_by_url.items())


def _visible_text_length(root: etree._Element) -> int:
    """Count the body's text characters outside script, style and template.

    Text nodes are joined as written, so "<p>a</p><p>b</p>" counts 2. This
    removes the invisible elements from the tree.
    """
    body = root.find("body")
    if body is None:
        return 0

    etree.strip_elements(body, *_INVISIBLE_ELEMENTS, with_tail=False)
    return len(_collapse(_text_content(body)))


def _text_content(element: etree._Element) -> str:
    """Return the text inside an element, without its tail.

    Serializing with method="text" is about six times faster than joining
    itertext() on a 700 KB page.
    """
    text: str = etree.tostring(element, method="text", encoding=str, with_tail=False)
    return text


def _select_fields(text: str, selectors: Sequence[Selector]) -> dict[str, FieldValue]:
    """Apply the users' CSS selectors to a BeautifulSoup tree of the page."""
    soup = BeautifulSoup(_markup_for_soup(text), "lxml")
    fields = {selector.name: _select(soup, selector) for selector in selectors}

    # A BeautifulSoup tree is a web of reference cycles that only the cyclic
    # garbage collector would free. Breaking them now frees it at once and
    # leaves the collector less to traverse.
    soup.decompose()
    return fields


def _markup_for_soup(text: str) -> str:
    """Return text that BeautifulSoup parses without a warning.

    Both changes leave the parsed tree as it was: the HTML parser ignores an
    XML declaration, and a trailing newline is whitespace after the content.
    """
    # BeautifulSoup warns (XMLParsedAsHTMLWarning) about markup that starts
    # with an XML declaration, and about short markup without "<" or a newline
    # (MarkupResemblesLocatorWarning). The test suite turns warnings into
    # errors, and warnings.catch_warnings() is not thread-safe.
    text = _XML_DECLARATION.sub("", text, count=1)
    if "<" not in text and "\n" not in text:
        text += "\n"
    return text


def _select(soup: BeautifulSoup, selector: Selector) -> FieldValue:
    if not selector.all:
        element = soup.select_one(selector.css)
        return None if element is None else _element_value(element, selector.attr)

    values = (_element_value(e, selector.attr) for e in soup.select(selector.css))
    return [value for value in values if value is not None]


def _element_value(element: Tag, attr: str | None) -> str | None:
    """Return an element's collapsed text, or the value of its attribute ``attr``.

    BeautifulSoup returns multi-valued attributes (class, rel) as lists, which
    are joined with a space.
    """
    if attr is None:
        return _collapse(element.get_text(" ", strip=True))

    value = element.get(attr)
    if value is None:
        return None

    if isinstance(value, str):
        # bs4 returns str subclasses for <meta charset> and <meta content>
        # (CharsetMetaAttributeValue, ContentMetaAttributeValue). A plain str
        # keeps bs4 types out of the result.
        return str(value)

    return " ".join(str(item) for item in value)


__all__ = ["HTML_CONTENT_TYPES", "Link", "ParsedPage", "extract_page", "is_html"]

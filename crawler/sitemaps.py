"""Read sitemap files: XML urlsets, XML sitemap indexes and plain-text lists.

Sitemaps come from servers the crawler does not trust, so :func:`parse_sitemap`
bounds everything it does:

* gzip is recognized by its magic bytes (1f 8b), not by a file name or header.
  It is decompressed in a loop that never produces more than ``max_bytes``.
  A larger output (a gzip bomb) raises :class:`SitemapError`, and so does an
  uncompressed body over ``max_bytes``.
* XML is parsed by lxml without entity substitution, DTD loading or network
  access, and with libxml2's size limits on (no ``huge_tree``), so external
  entities (XXE) are never read and nested entities (billion laughs) never
  expand.
* At most ``max_urls`` URLs are returned; parsing stops after the last one
  kept, so a malformed part after it goes unnoticed.

Element names are matched by local name, so the standard namespace, no
namespace and any prefix all work. Only a ``<loc>`` that is a direct child of
``<url>`` or ``<sitemap>`` counts, so extension elements such as
``<image:image><image:loc>`` are skipped. Only ``http://`` and ``https://``
URLs are kept, from XML and from text sitemaps alike.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from crawler.errors import CrawlerError

logger = logging.getLogger(__name__)

SitemapKind = Literal["urlset", "sitemapindex", "text"]

# The limits of the sitemaps.org protocol for one sitemap file.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_URLS = 50_000

GZIP_MAGIC = b"\x1f\x8b"

# Compressed bytes handed to zlib per step of the decompression loop.
_GZIP_INPUT_CHUNK = 64 * 1024

# The element that contains <loc> for each kind of XML sitemap.
_ENTRY_ELEMENT: dict[str, str] = {"urlset": "url", "sitemapindex": "sitemap"}

_HTTP_URL = re.compile(r"https?://\S+", re.IGNORECASE)


class SitemapError(CrawlerError):
    """A sitemap cannot be read: bad gzip, too large, or not a valid sitemap."""


@dataclass(frozen=True, slots=True)
class Sitemap:
    """The URLs of one sitemap file, in document order.

    ``kind`` is ``urlset`` (page URLs), ``sitemapindex`` (URLs of more
    sitemaps) or ``text`` (page URLs, one a line).
    """

    kind: SitemapKind
    urls: tuple[str, ...]


def parse_sitemap(
    body: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_urls: int = DEFAULT_MAX_URLS,
) -> Sitemap:
    """Parse a sitemap body, gzip-compressed or not.

    Raises SitemapError for invalid or truncated gzip data, for content over
    ``max_bytes`` once decompressed, for malformed XML, and for an XML root
    element other than ``<urlset>`` or ``<sitemapindex>``.
    """
    if body.startswith(GZIP_MAGIC):
        data = gunzip_bounded(body, max_bytes)
    elif len(body) > max_bytes:
        raise SitemapError(
            f"sitemap is {len(body)} bytes, over the limit of {max_bytes} bytes"
        )
    else:
        data = body

    if _looks_like_xml(data):
        return _parse_xml(data, max_urls)

    return _parse_text(data, max_urls)


def gunzip_bounded(data: bytes, max_bytes: int) -> bytes:
    """Decompress gzip data (all members), producing at most ``max_bytes``.

    Raises SitemapError for output over ``max_bytes``, for corrupt data (zlib
    also checks each member's CRC-32 and length) and for truncated data.
    """
    output = bytearray()
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pending = data

    while pending:
        # Never ask for more than one byte past the limit, so a bomb produces
        # at most max_bytes + 1 bytes of output before it is rejected.
        budget = max_bytes - len(output) + 1
        try:
            output += decompressor.decompress(pending[:_GZIP_INPUT_CHUNK], budget)
        except zlib.error as exc:
            raise SitemapError(f"sitemap has invalid gzip data: {exc}") from exc

        if len(output) > max_bytes:
            raise SitemapError(
                f"sitemap decompresses to more than {max_bytes} bytes, "
                "so it is rejected as a possible gzip bomb"
            )

        consumed = min(len(pending), _GZIP_INPUT_CHUNK)
        consumed -= len(decompressor.unconsumed_tail)
        pending = pending[consumed:]

        if decompressor.eof:
            # Concatenated gzip members form one stream. Anything else after
            # the end of a member is ignored, as gzip(1) does with a warning.
            pending = decompressor.unused_data
            if not pending.startswith(GZIP_MAGIC):
                break
            decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    if not decompressor.eof:
        raise SitemapError("sitemap gzip data is truncated")

    return bytes(output)


def _looks_like_xml(data: bytes) -> bool:
    """Return whether data starts like an XML document rather than a URL list."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True

    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]

    return data[:1024].lstrip().startswith(b"<")


def _parse_xml(data: bytes, max_urls: int) -> Sitemap:
    """Collect the <loc> URLs of an XML urlset or sitemap index."""
    events = etree.iterparse(
        io.BytesIO(data),
        events=("start", "end"),
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        return _collect_locs(events, max_urls)
    except etree.XMLSyntaxError as exc:
        raise SitemapError(f"sitemap XML cannot be parsed: {exc}") from exc


def _collect_locs(
    events: Iterator[tuple[str, etree._Element]], max_urls: int
) -> Sitemap:
    kind: SitemapKind | None = None
    entry_name = ""
    urls: list[str] = []
    depth = 0

    for event, element in events:
        if event == "start":
            depth += 1
            if kind is None:
                kind = _root_kind(element)
                entry_name = _ENTRY_ELEMENT[kind]
            continue

        depth -= 1
        if depth == 2 and _local_name(element) == "loc":
            # Depth 2 is a child of an entry: <urlset><url><loc>.
            parent = element.getparent()
            if parent is not None and _local_name(parent) == entry_name:
                _add_url(urls, element)
        elif depth == 1:
            _free(element)
            if len(urls) >= max_urls:
                break

    if kind is None:
        raise SitemapError("sitemap XML has no root element")

    return Sitemap(kind, tuple(urls[:max_urls]))


def _free(entry: etree._Element) -> None:
    """Drop a finished entry and those before it, so memory stays flat."""
    entry.clear()
    parent = entry.getparent()
    if parent is None:
        return

    while entry.getprevious() is not None:
        del parent[0]


def _root_kind(root: etree._Element) -> SitemapKind:
    name = _local_name(root)
    if name == "urlset":
        return "urlset"
    if name == "sitemapindex":
        return "sitemapindex"

    raise SitemapError(
        f"sitemap XML has root element <{name}>, expected <urlset> or <sitemapindex>"
    )


def _local_name(element: etree._Element) -> str:
    """Return a tag without its namespace: "{http://...}url" becomes "url"."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""

    return tag.rpartition("}")[2]


def _add_url(urls: list[str], loc: etree._Element) -> None:
    url = (loc.text or "").strip()
    if _HTTP_URL.fullmatch(url):
        urls.append(url)
    elif url:
        logger.debug("skipping sitemap <loc> that is not an http(s) URL: %r", url)


def _parse_text(data: bytes, max_urls: int) -> Sitemap:
    """Collect the URLs of a text sitemap: UTF-8, one URL a line."""
    text = data.decode("utf-8", "replace").removeprefix("\ufeff")
    urls: list[str] = []

    for line in text.splitlines():
        candidate = line.strip()
        if not _HTTP_URL.fullmatch(candidate):
            continue

        urls.append(candidate)
        if len(urls) >= max_urls:
            break

    return Sitemap("text", tuple(urls))


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_URLS",
    "Sitemap",
    "SitemapError",
    "SitemapKind",
    "gunzip_bounded",
    "parse_sitemap",
]

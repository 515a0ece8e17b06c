"""Tests for sitemap parsing: XML, gzip, text, limits and hostile files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from crawler.errors import CrawlerError
from crawler.sitemaps import Sitemap, SitemapError, gunzip_bounded, parse_sitemap

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"

URLSET = f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="{NS}"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url>
    <loc>
      https://example.com/a
    </loc>
    <lastmod>2024-01-01</lastmod>
    <image:image><image:loc>https://example.com/a.png</image:loc></image:image>
  </url>
  <url><loc>https://example.com/b?x=1&amp;y=2</loc></url>
</urlset>
""".encode()

SITEMAP_INDEX = f"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="{NS}">
  <sitemap><loc>https://example.com/sitemap-1.xml.gz</loc></sitemap>
  <sitemap><loc>https://example.com/sitemap-2.xml</loc><lastmod>2024</lastmod></sitemap>
</sitemapindex>
""".encode()

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<urlset><url><loc>https://example.com/&lol9;</loc></url></urlset>
"""


def urlset(count: int) -> bytes:
    entries = "".join(
        f"<url><loc>https://example.com/{i}</loc></url>" for i in range(count)
    )
    return f'<urlset xmlns="{NS}">{entries}</urlset>'.encode()


# XML


def test_urlset() -> None:
    sitemap = parse_sitemap(URLSET)

    assert sitemap == Sitemap(
        "urlset", ("https://example.com/a", "https://example.com/b?x=1&y=2")
    )


def test_sitemap_index() -> None:
    sitemap = parse_sitemap(SITEMAP_INDEX)

    assert sitemap.kind == "sitemapindex"
    assert sitemap.urls == (
        "https://example.com/sitemap-1.xml.gz",
        "https://example.com/sitemap-2.xml",
    )


def test_urlset_without_namespace() -> None:
    body = b"<urlset><url><loc>https://example.com/a</loc></url></urlset>"

    assert parse_sitemap(body) == Sitemap("urlset", ("https://example.com/a",))


def test_urlset_with_prefix() -> None:
    body = (
        f'<sm:urlset xmlns:sm="{NS}"><sm:url><sm:loc>https://example.com/a</sm:loc>'
        "</sm:url></sm:urlset>"
    ).encode()

    assert parse_sitemap(body) == Sitemap("urlset", ("https://example.com/a",))


def test_utf16_xml() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-16"?><urlset><url><loc>https://example.com/é'
    )
    body += "</loc></url></urlset>"

    sitemap = parse_sitemap(body.encode("utf-16"))

    assert sitemap.urls == ("https://example.com/é",)


def test_non_http_locs_skipped() -> None:
    body = (
        b"<urlset><url><loc>ftp://example.com/a</loc></url><url><loc> </loc></url>"
        b"<url><loc>https://example.com/b</loc></url><url></url></urlset>"
    )

    assert parse_sitemap(body).urls == ("https://example.com/b",)


def test_empty_urlset() -> None:
    assert parse_sitemap(b"<urlset/>") == Sitemap("urlset", ())


def test_max_urls() -> None:
    sitemap = parse_sitemap(urlset(100), max_urls=10)

    assert sitemap.urls == tuple(f"https://example.com/{i}" for i in range(10))


def test_max_urls_stops_before_bad_tail() -> None:
    body = urlset(20).removesuffix(b"</urlset>") + b"<url><loc>broken"

    assert len(parse_sitemap(body, max_urls=5).urls) == 5


def test_malformed_xml() -> None:
    with pytest.raises(SitemapError, match=r"cannot be parsed.*mismatch"):
        parse_sitemap(b"<urlset><url><loc>https://example.com/</url></urlset>")


def test_wrong_root_element() -> None:
    with pytest.raises(SitemapError, match="root element <html>"):
        parse_sitemap(b"<html><body>Not found</body></html>")


def test_sitemap_error_is_crawler_error() -> None:
    assert issubclass(SitemapError, CrawlerError)


# gzip


def test_gzip_detected_by_content(tmp_path: Path) -> None:
    # The file is named .xml but contains gzip data, as servers often send it.
    path = tmp_path / "sitemap.xml"
    path.write_bytes(gzip.compress(URLSET))

    sitemap = parse_sitemap(path.read_bytes())

    assert sitemap.urls == ("https://example.com/a", "https://example.com/b?x=1&y=2")


def test_gzip_text_sitemap() -> None:
    sitemap = parse_sitemap(gzip.compress(b"https://example.com/a\n"))

    assert sitemap == Sitemap("text", ("https://example.com/a",))


def test_gzip_multiple_members() -> None:
    body = gzip.compress(b"https://example.com/a\n") + gzip.compress(
        b"https://example.com/b\n"
    )

    assert parse_sitemap(body).urls == (
        "https://example.com/a",
        "https://example.com/b",
    )


def test_gzip_bomb() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)

    with pytest.raises(SitemapError, match="more than 1048576 bytes"):
        parse_sitemap(bomb, max_bytes=1024 * 1024)


def test_gunzip_exactly_at_limit() -> None:
    data = b"x" * 1000

    assert gunzip_bounded(gzip.compress(data), 1000) == data


def test_gunzip_one_byte_over_limit() -> None:
    with pytest.raises(SitemapError, match="gzip bomb"):
        gunzip_bounded(gzip.compress(b"x" * 1001), 1000)


def test_gzip_truncated() -> None:
    with pytest.raises(SitemapError, match="truncated"):
        parse_sitemap(gzip.compress(URLSET)[:-10])


def test_gzip_corrupt() -> None:
    with pytest.raises(SitemapError, match="invalid gzip data"):
        parse_sitemap(b"\x1f\x8b" + b"not really gzip" * 10)


def test_plain_body_over_limit() -> None:
    with pytest.raises(SitemapError, match="over the limit"):
        parse_sitemap(urlset(100), max_bytes=1000)


# text


def test_text_sitemap() -> None:
    body = b"\xef\xbb\xbfhttps://example.com/a\r\n\n  http://example.com/b  \n"
    body += b"ftp://example.com/c\nnot a url\nhttps://example.com/with space\n"

    sitemap = parse_sitemap(body)

    assert sitemap == Sitemap("text", ("https://example.com/a", "http://example.com/b"))


def test_text_sitemap_max_urls() -> None:
    body = b"".join(b"https://example.com/%d\n" % i for i in range(10))

    assert len(parse_sitemap(body, max_urls=3).urls) == 3


def test_empty_body() -> None:
    assert parse_sitemap(b"") == Sitemap("text", ())


# hostile XML


def test_external_entity_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    doctype = f'<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
    body = (
        f'<?xml version="1.0"?>{doctype}'
        "<urlset><url><loc>https://example.com/&xxe;</loc></url></urlset>"
    ).encode()

    sitemap = parse_sitemap(body)

    assert not any("TOPSECRET" in url for url in sitemap.urls)


def test_billion_laughs_not_expanded() -> None:
    try:
        sitemap = parse_sitemap(BILLION_LAUGHS)
    except SitemapError:
        # libxml2 2.14 rejects the entity amplification outright.
        return

    assert all(len(url) < 100 for url in sitemap.urls)

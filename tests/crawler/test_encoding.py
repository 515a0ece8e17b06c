"""Tests for choosing and applying the encoding of an HTML body."""

from __future__ import annotations

import codecs
import random

import pytest

from crawler.encoding import decode_html

RUSSIAN = "Привет, мир! Это проверка кодировки текста на русском языке."


def test_bom_beats_header() -> None:
    body = codecs.BOM_UTF8 + "<p>café</p>".encode()

    text, encoding = decode_html(body, "text/html; charset=windows-1251")

    assert encoding == "utf-8"
    assert text == "<p>café</p>"


def test_utf16_bom_is_stripped() -> None:
    body = codecs.BOM_UTF16_LE + "<p>café</p>".encode("utf-16-le")

    text, encoding = decode_html(body, None)

    assert encoding == "utf-16-le"
    assert text == "<p>café</p>"


def test_header_beats_meta() -> None:
    body = f'<meta charset="utf-8"><p>{RUSSIAN}</p>'.encode("cp1251")

    text, encoding = decode_html(body, "text/html; charset=windows-1251")

    assert encoding == "cp1251"
    assert RUSSIAN in text


def test_meta_charset_only() -> None:
    body = f'<html><head><meta charset="windows-1251"></head><p>{RUSSIAN}'.encode(
        "cp1251"
    )

    text, encoding = decode_html(body, "text/html")

    assert encoding == "cp1251"
    assert RUSSIAN in text


def test_meta_http_equiv() -> None:
    meta = '<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">'
    body = f"{meta}<p>{RUSSIAN}".encode("koi8-r")

    text, encoding = decode_html(body, None)

    assert encoding == "koi8-r"
    assert RUSSIAN in text


def test_meta_in_comment_ignored() -> None:
    body = b"<!-- <meta charset=cp1251> --><p>caf\xc3\xa9</p>"

    text, encoding = decode_html(body, None)

    assert encoding == "utf-8"
    assert "café" in text


def test_undeclared_cp1251_detected() -> None:
    body = f"<html><body><p>{RUSSIAN}</p></body></html>".encode("cp1251")

    text, encoding = decode_html(body, None)

    assert encoding == "cp1251"
    assert RUSSIAN in text


def test_undeclared_utf8_kept() -> None:
    body = f"<p>{RUSSIAN}</p>".encode()

    text, encoding = decode_html(body, None)

    assert encoding == "utf-8"
    assert RUSSIAN in text


def test_undeclared_ascii_is_utf8() -> None:
    assert decode_html(b"<p>plain</p>", None) == ("<p>plain</p>", "utf-8")


def test_bogus_header_falls_through() -> None:
    body = f"<meta charset=cp1251><p>{RUSSIAN}".encode("cp1251")

    text, encoding = decode_html(body, "text/html; charset=x-foo")

    assert encoding == "cp1251"
    assert RUSSIAN in text


def test_utf7_header_ignored() -> None:
    body = b"<p>+ADw-script+AD4-alert(1)+ADw-/script+AD4-</p>"

    text, encoding = decode_html(body, "text/html; charset=utf-7")

    assert encoding == "utf-8"
    assert "<script>" not in text


def test_utf7_meta_ignored() -> None:
    body = b'<meta charset="UTF-7"><p>+ADw-script+AD4-</p>'

    text, encoding = decode_html(body, None)

    assert encoding == "utf-8"
    assert "<script>" not in text


@pytest.mark.parametrize("charset", ["zlib", "base64", "idna", "unicode_escape"])
def test_non_text_codec_ignored(charset: str) -> None:
    text, encoding = decode_html(b"<p>x\\x41</p>", f"text/html; charset={charset}")

    assert encoding == "utf-8"
    assert text == "<p>x\\x41</p>"


@pytest.mark.parametrize("charset", ["windows-1252", "latin-1", "ISO-8859-1", "ascii"])
def test_latin_labels_mean_cp1252(charset: str) -> None:
    text, encoding = decode_html(
        b"<p>\x80 caf\xe9</p>", f"text/html; charset={charset}"
    )

    assert encoding == "cp1252"
    assert text == "<p>€ café</p>"


def test_meta_utf16_means_utf8() -> None:
    text, encoding = decode_html(b'<meta charset="utf-16"><p>caf\xc3\xa9', None)

    assert encoding == "utf-8"
    assert text.endswith("café")


def test_header_utf16_is_little_endian() -> None:
    body = "<p>x</p>".encode("utf-16-le")

    text, encoding = decode_html(body, "text/html; charset=utf-16")

    assert encoding == "utf-16-le"
    assert text == "<p>x</p>"


def test_invalid_bytes_become_replacement() -> None:
    text, encoding = decode_html(b"a\xffb", "text/html; charset=utf-8")

    assert encoding == "utf-8"
    assert text == "a\ufffdb"


def test_empty_body() -> None:
    assert decode_html(b"", None) == ("", "utf-8")


@pytest.mark.parametrize("seed", range(5))
def test_garbage_never_raises(seed: int) -> None:
    body = random.Random(seed).randbytes(20_000)

    text, encoding = decode_html(body, None)

    assert isinstance(text, str)
    assert codecs.lookup(encoding).name == encoding

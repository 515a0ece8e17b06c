"""Decode fetched HTML bytes to text the way a browser picks the encoding.

:func:`decode_html` tries these sources in order and uses the first usable one:

1. a byte order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE), which is stripped;
2. the ``charset`` parameter of the Content-Type header;
3. a ``<meta charset>`` or ``<meta http-equiv="Content-Type">`` declaration (or
   an XML declaration) in the first 4096 bytes, before ``<body>``;
4. detection: a body that is valid UTF-8 is UTF-8 (ASCII included), otherwise
   charset-normalizer guesses from the first 64 KiB;
5. UTF-8.

Steps 1 to 3 are w3lib's (``read_bom``, ``http_content_type_encoding``,
``html_body_declared_encoding``), in the same order as its ``html_to_unicode``
(w3lib 2.5.0). w3lib maps labels as the WHATWG Encoding Standard does, so
``latin-1``, ``iso-8859-1``, ``ascii`` and ``windows-1252`` all become
``cp1252``, ``shift_jis`` becomes ``cp932``, ``gbk`` becomes ``gb18030``. A
declared label is used only when it names an encoding of that standard: unknown
names (``x-foo``), UTF-7 (it can smuggle markup past filters) and Python codecs
that are no character set at all (``zlib``, ``base64``, ``idna``) fall through
to the next step.

Guarantees: :func:`decode_html` never raises for any bytes, undecodable bytes
become U+FFFD, and the returned name is the Python codec's canonical name
(``codecs.lookup(name).name``), for example ``utf-8``, ``cp1251``, ``cp1252``
(never ``windows-1252``), ``utf-16-le``.
"""

from __future__ import annotations

import codecs
import logging

import charset_normalizer
from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    read_bom,
    resolve_encoding,
    to_unicode,
)

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "utf-8"

# Number of leading bytes passed to charset-normalizer. Detection took 52 ms on
# a 530 KB cp1251 page and 12 ms on its first 64 KiB (charset-normalizer 3.4.7,
# one AMD EPYC core).
DETECTION_SAMPLE_BYTES = 64 * 1024

# The encodings of the WHATWG Encoding Standard, spelled as w3lib's
# resolve_encoding() returns them. "utf-16" is the bare label, which the
# standard reads as UTF-16LE; UTF-32 is only accepted from a byte order mark.
_DECLARABLE_ENCODINGS = frozenset(
    {
        "utf-8",
        "cp866",
        "iso8859-2",
        "iso8859-3",
        "iso8859-4",
        "iso8859-5",
        "iso8859-6",
        "iso8859-7",
        "iso8859-8",
        "iso8859-10",
        "iso8859-13",
        "iso8859-14",
        "iso8859-15",
        "iso8859-16",
        "koi8-r",
        "koi8-u",
        "mac-roman",
        "mac-cyrillic",
        "cp874",
        "cp1250",
        "cp1251",
        "cp1252",
        "cp1253",
        "cp1254",
        "cp1255",
        "cp1256",
        "cp1257",
        "cp1258",
        "gb18030",
        "big5hkscs",
        "euc_jp",
        "iso2022_jp",
        "cp932",
        "cp949",
        "utf-16",
        "utf-16-be",
        "utf-16-le",
    }
)

# Supersets of Shift_JIS and EUC-JP that charset-normalizer names instead.
_DETECTABLE_EXTRA = frozenset(
    {"euc_jis_2004", "euc_jisx0213", "shift_jis_2004", "shift_jisx0213"}
)

_UTF16_FAMILY = frozenset({"utf-16", "utf-16-be", "utf-16-le"})


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str]:
    """Decode an HTML body and return ``(text, encoding_name)``."""
    bom_encoding, bom = read_bom(body)
    if bom_encoding is not None and bom is not None:
        name = codecs.lookup(bom_encoding).name
        return to_unicode(body[len(bom) :], name), name

    encoding = _header_encoding(content_type)
    if encoding is None:
        encoding = _meta_encoding(body)
    if encoding is not None:
        return to_unicode(body, encoding), encoding

    return _decode_undeclared(body)


def _header_encoding(content_type: str | None) -> str | None:
    """Return the usable encoding the Content-Type header declares, if any."""
    encoding = _declarable(http_content_type_encoding(content_type))
    if encoding == "utf-16":
        # The bare label means little-endian in the Encoding Standard.
        return "utf-16-le"
    return encoding


def _meta_encoding(body: bytes) -> str | None:
    """Return the usable encoding a meta or XML declaration names, if any."""
    encoding = _declarable(html_body_declared_encoding(body))
    if encoding in _UTF16_FAMILY:
        # The prescan read the declaration as ASCII bytes, so the body is not
        # UTF-16; the HTML standard says to use UTF-8 in this case.
        return DEFAULT_ENCODING
    return encoding


def _declarable(encoding: str | None) -> str | None:
    """Return ``encoding`` if the Encoding Standard defines it, else None."""
    if encoding is None:
        return None

    if encoding not in _DECLARABLE_ENCODINGS:
        logger.debug("ignoring declared encoding %r: not a web encoding", encoding)
        return None

    return encoding


def _decode_undeclared(body: bytes) -> tuple[str, str]:
    """Decode a body that declares no usable encoding."""
    try:
        return body.decode(DEFAULT_ENCODING), DEFAULT_ENCODING
    except UnicodeDecodeError:
        pass

    detected = _detect_encoding(body)
    if detected is not None:
        return to_unicode(body, detected), detected

    return to_unicode(body, DEFAULT_ENCODING), DEFAULT_ENCODING


def _detect_encoding(body: bytes) -> str | None:
    """Guess the encoding of a body that is not valid UTF-8, or return None."""
    sample = body[:DETECTION_SAMPLE_BYTES]
    if len(body) > DETECTION_SAMPLE_BYTES:
        # End the sample after a ">" so that it does not cut a multi-byte
        # character: 0x3E is never part of one in the legacy CJK encodings.
        end = sample.rfind(b">") + 1
        if end > DETECTION_SAMPLE_BYTES // 2:
            sample = sample[:end]

    # Guesses come best first. On short samples the best one is often an
    # encoding no web page uses (cp1006 for "caf\xe9"), so take the first one
    # that is a web encoding. resolve_encoding() maps e.g. "ascii" to "cp1252".
    for match in charset_normalizer.from_bytes(sample):
        encoding = resolve_encoding(match.encoding)
        if encoding in _DECLARABLE_ENCODINGS or encoding in _DETECTABLE_EXTRA:
            return encoding

    return None


__all__ = ["DEFAULT_ENCODING", "decode_html"]

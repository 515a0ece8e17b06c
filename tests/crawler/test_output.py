"""Tests for the JSON Lines and CSV record writers: the exact bytes they write."""

from __future__ import annotations

import csv
import io
import json

from crawler.output import CSV_COLUMNS, CsvWriter, JsonLinesWriter
from crawler.records import Links, PageError, PageRecord

FETCHED_AT = "2024-05-01T12:00:00.000Z"

PAGE = PageRecord(
    url="http://example.org/a",
    final_url="http://example.org/b",
    key="http://example.org/b",
    depth=1,
    referrer="http://example.org/",
    fetched_at=FETCHED_AT,
    status=200,
    elapsed_ms=42,
    content_type="text/html",
    size_bytes=1234,
    encoding="utf-8",
    title='Crème, "brûlée"\nand more',
    description="Über uns",
    canonical="http://example.org/b",
    lang="fr",
    robots=("nofollow",),
    links=Links(count=3, in_scope=("http://example.org/c", "http://example.org/d")),
    fields={"price": "9,99 €", "tags": ["a", "b"], "missing": None},
)

FAILED = PageRecord(
    url="http://example.org/slow",
    final_url="http://example.org/slow",
    key="http://example.org/slow",
    depth=0,
    referrer=None,
    fetched_at=FETCHED_AT,
    error=PageError("timeout", "read timed out (read_timeout_s)"),
)

PAGE_JSON = (
    r'{"url": "http://example.org/a", "final_url": "http://example.org/b", '
    r'"depth": 1, "referrer": "http://example.org/", '
    r'"fetched_at": "2024-05-01T12:00:00.000Z", "status": 200, '
    r'"elapsed_ms": 42, "content_type": "text/html", "size_bytes": 1234, '
    r'"encoding": "utf-8", "title": "Crème, \"brûlée\"\nand more", '
    r'"description": "Über uns", "canonical": "http://example.org/b", '
    r'"lang": "fr", "robots": ["nofollow"], '
    r'"links": {"count": 3, "in_scope": '
    r'["http://example.org/c", "http://example.org/d"]}, '
    r'"fields": {"price": "9,99 €", "tags": ["a", "b"], "missing": null}, '
    r'"error": null}'
)

FAILED_JSON = (
    r'{"url": "http://example.org/slow", "final_url": "http://example.org/slow", '
    r'"depth": 0, "referrer": null, "fetched_at": "2024-05-01T12:00:00.000Z", '
    r'"status": null, "elapsed_ms": null, "content_type": null, '
    r'"size_bytes": null, "encoding": null, "title": null, "description": null, '
    r'"canonical": null, "lang": null, "robots": [], '
    r'"links": {"count": 0, "in_scope": []}, "fields": {}, '
    r'"error": {"kind": "timeout", "message": "read timed out (read_timeout_s)"}}'
)

CSV_HEADER = (
    "url,final_url,status,depth,referrer,fetched_at,elapsed_ms,content_type,"
    "size_bytes,encoding,title,description,canonical,lang,robots,links_count,"
    "links_in_scope,error_kind,error_message,field.price,field.tags,field.missing"
    "\r\n"
)

PAGE_CSV = (
    "http://example.org/a,http://example.org/b,200,1,http://example.org/,"
    "2024-05-01T12:00:00.000Z,42,text/html,1234,utf-8,"
    '"Crème, ""brûlée""\nand more",Über uns,http://example.org/b,fr,nofollow,3,'
    '"[""http://example.org/c"", ""http://example.org/d""]",,,'
    '"9,99 €","[""a"", ""b""]",'
    "\r\n"
)

FAILED_CSV = (
    "http://example.org/slow,http://example.org/slow,,0,,"
    "2024-05-01T12:00:00.000Z,,,,,,,,,,0,[],"
    "timeout,read timed out (read_timeout_s),,,"
    "\r\n"
)

FIELD_NAMES = ["price", "tags", "missing"]


def test_json_lines_exact_output() -> None:
    stream = io.StringIO()
    writer = JsonLinesWriter(stream)

    writer.write(PAGE)
    writer.write(FAILED)

    assert stream.getvalue() == PAGE_JSON + "\n" + FAILED_JSON + "\n"


def test_json_lines_one_line_per_record() -> None:
    stream = io.StringIO()
    writer = JsonLinesWriter(stream)

    writer.write(PAGE)
    writer.write(FAILED)
    lines = stream.getvalue().splitlines()

    assert len(lines) == 2
    assert json.loads(lines[0])["title"] == PAGE.title
    assert json.loads(lines[1])["error"]["kind"] == "timeout"


def test_json_lines_keeps_non_ascii() -> None:
    stream = io.StringIO()

    JsonLinesWriter(stream).write(PAGE)

    assert "Über uns" in stream.getvalue()
    assert "\\u" not in stream.getvalue()


def test_csv_header_without_records() -> None:
    stream = io.StringIO()

    CsvWriter(stream, FIELD_NAMES)

    assert stream.getvalue() == CSV_HEADER


def test_csv_header_without_fields() -> None:
    stream = io.StringIO()

    CsvWriter(stream, [])

    assert stream.getvalue() == ",".join(CSV_COLUMNS) + "\r\n"


def test_csv_exact_output() -> None:
    stream = io.StringIO()
    writer = CsvWriter(stream, FIELD_NAMES)

    writer.write(PAGE)
    writer.write(FAILED)

    assert stream.getvalue() == CSV_HEADER + PAGE_CSV + FAILED_CSV


def test_csv_reads_back() -> None:
    stream = io.StringIO()
    writer = CsvWriter(stream, FIELD_NAMES)
    writer.write(PAGE)

    rows = list(csv.DictReader(io.StringIO(stream.getvalue())))

    assert len(rows) == 1
    assert rows[0]["title"] == PAGE.title
    assert json.loads(rows[0]["field.tags"]) == ["a", "b"]
    assert json.loads(rows[0]["links_in_scope"]) == list(PAGE.links.in_scope)


def test_csv_neutralises_formulas() -> None:
    stream = io.StringIO()
    writer = CsvWriter(stream, [])
    record = PageRecord(
        url="http://example.org/",
        final_url="http://example.org/",
        key="http://example.org/",
        depth=0,
        referrer=None,
        fetched_at="2026-01-01T00:00:00.000Z",
        title='=HYPERLINK("http://evil.invalid/","x")',
        description="@SUM(1+1)",
    )

    writer.write(record)
    row = next(csv.DictReader(io.StringIO(stream.getvalue())))

    assert row["title"] == '\'=HYPERLINK("http://evil.invalid/","x")'
    assert row["description"] == "'@SUM(1+1)"
    assert row["url"] == "http://example.org/"

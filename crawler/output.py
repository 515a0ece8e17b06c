"""Writing page records to JSON Lines or CSV, one record at a time.

Each record is written and flushed as soon as it is saved, so a crawl stopped
with Ctrl-C (or killed) keeps every record it produced up to that moment.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO, Protocol

from crawler.records import PageRecord

CSV_COLUMNS = (
    "url",
    "final_url",
    "status",
    "depth",
    "referrer",
    "fetched_at",
    "elapsed_ms",
    "content_type",
    "size_bytes",
    "encoding",
    "title",
    "description",
    "canonical",
    "lang",
    "robots",
    "links_count",
    "links_in_scope",
    "error_kind",
    "error_message",
)


# A cell starting with one of these is run as a formula by spreadsheet
# programs, and titles come from crawled pages (OWASP "CSV injection").
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> object:
    """Return a CSV cell; text that a spreadsheet would run gets a leading "'"."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class RecordWriter(Protocol):
    def write(self, record: PageRecord) -> None: ...


class JsonLinesWriter:
    """Writes one JSON object per line (UTF-8, non-ASCII kept as is)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, record: PageRecord) -> None:
        self._stream.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self._stream.flush()


class CsvWriter:
    """Writes a header row, then one row per record.

    Nested values (the in-scope links, list-valued fields) are JSON-encoded in
    their cell; each selector gets a ``field.NAME`` column. Text that starts
    like a spreadsheet formula (``=``, ``+``, ``-``, ``@``) is prefixed with
    ``'`` so that opening the file runs nothing.
    """

    def __init__(self, stream: IO[str], field_names: Sequence[str]) -> None:
        self._stream = stream
        self._field_names = tuple(field_names)
        self._writer = csv.writer(stream)
        self._writer.writerow(
            [*CSV_COLUMNS, *(f"field.{n}" for n in self._field_names)]
        )
        stream.flush()

    def write(self, record: PageRecord) -> None:
        row: list[object] = [
            record.url,
            record.final_url,
            record.status,
            record.depth,
            record.referrer,
            record.fetched_at,
            record.elapsed_ms,
            record.content_type,
            record.size_bytes,
            record.encoding,
            record.title,
            record.description,
            record.canonical,
            record.lang,
            " ".join(record.robots),
            record.links.count,
            json.dumps(list(record.links.in_scope)),
            record.error.kind if record.error else None,
            record.error.message if record.error else None,
        ]
        for name in self._field_names:
            value = record.fields.get(name)
            row.append(
                json.dumps(value, ensure_ascii=False)
                if isinstance(value, list)
                else value
            )
        self._writer.writerow([_csv_cell(v) for v in row])
        self._stream.flush()

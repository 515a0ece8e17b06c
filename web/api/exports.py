"""Streaming exports of a job's page records as JSON Lines and CSV.

Records come from ``Store.iter_pages`` one stored batch at a time and go out
in chunks of :data:`CHUNK_RECORDS`, so an export of any size keeps about one
batch in memory. An export made while the job runs contains the records
stored up to the moment the stream reaches the end.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from crawler.output import CsvWriter
from crawler.records import Links, PageError, PageRecord
from web.api.jobs import load_job
from web.api.params import parse_page_filter
from web.keys import REQUEST_ID, STORE
from web.paths import API_PREFIX

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()

CHUNK_RECORDS = 500
"""Records encoded into one write to the client."""


def record_from_dict(data: dict[str, Any]) -> PageRecord:
    """Rebuild a PageRecord from ``PageRecord.to_dict()`` output, for CsvWriter.

    The dict has no ``key``, which CsvWriter does not write, so it stays empty.
    """
    links = data.get("links") or {}
    error = data.get("error")
    return PageRecord(
        url=data["url"],
        final_url=data["final_url"],
        key="",
        depth=data["depth"],
        referrer=data.get("referrer"),
        fetched_at=data["fetched_at"],
        status=data.get("status"),
        elapsed_ms=data.get("elapsed_ms"),
        content_type=data.get("content_type"),
        size_bytes=data.get("size_bytes"),
        encoding=data.get("encoding"),
        title=data.get("title"),
        description=data.get("description"),
        canonical=data.get("canonical"),
        lang=data.get("lang"),
        robots=tuple(data.get("robots") or ()),
        links=Links(
            count=links.get("count", 0), in_scope=tuple(links.get("in_scope", ()))
        ),
        fields=dict(data.get("fields") or {}),
        error=PageError(error["kind"], error["message"]) if error else None,
    )


async def _chunks(
    records: AsyncIterator[dict[str, Any]],
    encode: Callable[[list[dict[str, Any]]], str],
) -> AsyncIterator[bytes]:
    batch: list[dict[str, Any]] = []
    async for record in records:
        batch.append(record)
        if len(batch) >= CHUNK_RECORDS:
            yield encode(batch).encode("utf-8")
            batch.clear()
    if batch:
        yield encode(batch).encode("utf-8")


def _encode_json_lines(batch: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in batch)


class _CsvEncoder:
    """Encodes batches with one CsvWriter whose buffer is emptied after each batch."""

    def __init__(self, field_names: list[str]) -> None:
        self._buffer = io.StringIO()
        self._writer = CsvWriter(self._buffer, field_names)

    def __call__(self, batch: list[dict[str, Any]]) -> str:
        for record in batch:
            self._writer.write(record_from_dict(record))
        return self._take()

    def header(self) -> str:
        return self._take()

    def _take(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


async def _stream(
    request: web.Request,
    *,
    suffix: str,
    content_type: str,
    preamble: str,
    encode: Callable[[list[dict[str, Any]]], str],
    job_id: str,
) -> web.StreamResponse:
    store = request.app[STORE]
    filters = parse_page_filter(request.query)
    filename = f"job-{job_id}-pages.{suffix}"
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)

    records = store.iter_pages(job_id, filters=filters)
    try:
        if preamble:
            await response.write(preamble.encode("utf-8"))
        async for chunk in _chunks(records, encode):
            await response.write(chunk)
    except ConnectionResetError:
        # The client went away; the response cannot carry an error any more.
        logger.info(
            "export of job %s stopped: client disconnected (request_id=%s)",
            job_id,
            request[REQUEST_ID],
        )
        return response
    await response.write_eof()
    return response


@routes.get(f"{API_PREFIX}/jobs/{{job_id}}/pages.jsonl", name="api_job_pages_jsonl")
async def export_json_lines(request: web.Request) -> web.StreamResponse:
    job = await load_job(request.app[STORE], request.match_info["job_id"])
    return await _stream(
        request,
        suffix="jsonl",
        content_type="application/jsonl; charset=utf-8",
        preamble="",
        encode=_encode_json_lines,
        job_id=job.id,
    )


@routes.get(f"{API_PREFIX}/jobs/{{job_id}}/pages.csv", name="api_job_pages_csv")
async def export_csv(request: web.Request) -> web.StreamResponse:
    """Stream the records as CSV, with a ``field.NAME`` column per selector."""
    job = await load_job(request.app[STORE], request.match_info["job_id"])
    selectors = job.options.get("selectors") or []
    encoder = _CsvEncoder([selector["name"] for selector in selectors])
    return await _stream(
        request,
        suffix="csv",
        content_type="text/csv; charset=utf-8",
        preamble=encoder.header(),
        encode=encoder,
        job_id=job.id,
    )

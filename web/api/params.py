"""Parsing of query parameters and headers, with errors that name the parameter."""

from __future__ import annotations

import re
from collections.abc import Mapping

from multidict import MultiMapping

from crawler.records import ERROR_KINDS
from crawler.scheduler import JOB_KEY_PREFIX
from crawler.store.base import JobState, PageFilter
from web.problems import InvalidParameterError

MAX_DEPTH_FILTER = 1000

# Any printable ASCII character (0x20 to 0x7E) is accepted, so UUIDs,
# base64 and structured keys all fit.
_IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x20-\x7e]{1,200}")
_STATUS_CLASS_PATTERN = re.compile(r"([1-5])xx", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]{1,9}")


def parse_limit(query: Mapping[str, str], *, default: int, maximum: int) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise InvalidParameterError(
            f"limit must be an integer from 1 to {maximum}, got {raw!r}",
            field="limit",
        )
    return int(raw)


def parse_cursor(query: Mapping[str, str]) -> str | None:
    """Return the cursor, or None when it is missing or empty."""
    return query.get("cursor") or None


def parse_states(query: MultiMapping[str]) -> list[JobState]:
    """Parse ``state``, repeated or comma-separated (``state=queued,running``)."""
    states: list[JobState] = []
    for raw in query.getall("state", []):
        for name in raw.split(","):
            try:
                states.append(JobState(name.strip()))
            except ValueError:
                known = ", ".join(state.value for state in JobState)
                raise InvalidParameterError(
                    f"state must be one of {known}, got {name.strip()!r}",
                    field="state",
                ) from None
    return states


def parse_page_filter(
    query: Mapping[str, str], *, errors_only: bool = False
) -> PageFilter:
    """Parse the ``status``, ``error_kind`` and ``depth`` filters of page listings."""
    status_class = None
    raw_status = query.get("status")
    if raw_status:
        match = _STATUS_CLASS_PATTERN.fullmatch(raw_status)
        if match is None:
            raise InvalidParameterError(
                f"status must be a status class from 1xx to 5xx, such as 2xx, "
                f"got {raw_status!r}",
                field="status",
            )
        status_class = int(match.group(1))

    error_kind = query.get("error_kind") or None
    if error_kind is not None and error_kind not in ERROR_KINDS:
        raise InvalidParameterError(
            f"error_kind must be one of {', '.join(ERROR_KINDS)}, got {error_kind!r}",
            field="error_kind",
        )

    depth = None
    raw_depth = query.get("depth")
    if raw_depth:
        if not _DIGITS.fullmatch(raw_depth) or int(raw_depth) > MAX_DEPTH_FILTER:
            raise InvalidParameterError(
                f"depth must be an integer from 0 to {MAX_DEPTH_FILTER}, "
                f"got {raw_depth!r}",
                field="depth",
            )
        depth = int(raw_depth)

    return PageFilter(
        status_class=status_class,
        error_kind=error_kind,
        depth=depth,
        errors_only=errors_only,
    )


def parse_idempotency_key(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("Idempotency-Key")
    if raw is None:
        return None
    if not _IDEMPOTENCY_KEY_PATTERN.fullmatch(raw):
        raise InvalidParameterError(
            "Idempotency-Key must be 1 to 200 printable ASCII characters, "
            "such as a UUID",
            field="Idempotency-Key",
        )
    if raw.startswith(JOB_KEY_PREFIX):
        raise InvalidParameterError(
            f"Idempotency-Key must not start with {JOB_KEY_PREFIX!r}, which is "
            "reserved for the jobs that schedules start; use another key, such "
            "as a UUID",
            field="Idempotency-Key",
        )
    return raw

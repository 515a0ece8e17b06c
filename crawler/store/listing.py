"""Listing and argument helpers that every store implementation shares.

Cursors are base64url JSON of ``[listing tag, position]``; the position is
whatever orders the listing in that store (an integer sequence in SQLite, an
ObjectId's hex in MongoDB). They are not signed: a hand-made cursor can only
move the start point of a listing the caller may read anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import TypeVar

from crawler.store.base import InvalidCursorError, ResultPage

T = TypeVar("T")
P = TypeVar("P")


def encode_cursor(listing: str, position: int | str) -> str:
    """Return an opaque cursor for ``position`` in ``listing``."""
    raw = json.dumps([listing, position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, listing: str) -> object:
    """Return the position in ``cursor``, which must belong to ``listing``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
        tag, position = json.loads(raw)
    except (binascii.Error, UnicodeError, ValueError, TypeError) as exc:
        raise invalid_cursor(cursor) from exc
    if tag != listing:
        raise invalid_cursor(cursor)
    return position


def invalid_cursor(cursor: str) -> InvalidCursorError:
    """Return the error for a cursor this listing did not make."""
    shown = cursor if len(cursor) <= 60 else cursor[:60] + "..."
    return InvalidCursorError(
        f"invalid cursor {shown!r}: it was not returned by this listing; "
        "request the first page without a cursor"
    )


def result_page(
    rows: list[tuple[P, T]],
    limit: int,
    listing: str,
    encode_position: Callable[[P], int | str],
) -> ResultPage[T]:
    """Return the first ``limit`` items and, if a row is left, the next cursor.

    Callers fetch ``limit + 1`` rows, so a left-over row means another page.
    """
    items = [item for _, item in rows[:limit]]
    if len(rows) <= limit:
        return ResultPage(items=items, next_cursor=None)
    position = encode_position(rows[limit - 1][0])
    return ResultPage(items=items, next_cursor=encode_cursor(listing, position))


def check_limit(limit: int) -> None:
    """Raise ValueError for a page size below 1."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def check_lease(lease_s: float) -> None:
    """Raise ValueError unless the lease is a positive number of seconds."""
    if not lease_s > 0:
        raise ValueError(f"lease_s must be a positive number of seconds, got {lease_s}")

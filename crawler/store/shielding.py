"""Run a store's operations to their end even when the caller is cancelled.

The crawl engine cancels the fetch tasks it stops, and a cancelled task may be
inside a store operation. Two things then go wrong on the MongoDB store:

* PyMongo's async connection pool can be left unusable. After a FerretDB
  restart, one replica logged ``RuntimeError: Lock is not acquired`` from
  inside PyMongo right after a crawl task was cancelled, and every later
  operation of that process hung.
* An operation cancelled between its steps leaves a FerretDB lock document
  behind, which blocks every other process for the lock's time-to-live.

:func:`shield_operations` makes each public coroutine method of a class run in
a task of its own that the caller's cancellation does not reach. The caller
still stops waiting at once; the operation finishes (or fails) in the
background, as the SQLite store's operations do on its thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)


def shield_operations(cls: C) -> C:
    """Shield every public coroutine method of ``cls``, inherited ones too
    (see the module)."""
    for name in dir(cls):
        member = inspect.getattr_static(cls, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(member):
            continue
        setattr(cls, name, shielded(member))
    return cls


def shielded(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Wrap ``method`` so that cancelling its caller does not cancel it."""

    @functools.wraps(method)
    async def run_to_end(*args: P.args, **kwargs: P.kwargs) -> R:
        task = asyncio.ensure_future(method(*args, **kwargs))
        task.add_done_callback(_retrieve_outcome)
        return await asyncio.shield(task)

    return run_to_end


def _retrieve_outcome(task: asyncio.Future[Any]) -> None:
    # Mark an exception as retrieved: when the caller was cancelled, no other
    # code reads it, and asyncio would log "exception was never retrieved".
    if not task.cancelled():
        task.exception()

"""Store operations run to their end when the caller is cancelled."""

from __future__ import annotations

import asyncio
import gc

import pytest

from crawler.store.shielding import shield_operations


class SlowWrites:
    def __init__(self) -> None:
        self.finished: list[str] = []

    async def write(self, name: str) -> str:
        await asyncio.sleep(0.05)
        self.finished.append(name)
        return name


@shield_operations
class SlowStore(SlowWrites):
    async def fail(self) -> None:
        await asyncio.sleep(0.05)
        raise ValueError("boom")

    async def _private(self) -> None:
        await asyncio.sleep(0.05)
        self.finished.append("private")


async def test_cancelled_caller_lets_operation_finish() -> None:
    store = SlowStore()
    caller = asyncio.create_task(store.write("a"))
    await asyncio.sleep(0.01)

    caller.cancel()

    with pytest.raises(asyncio.CancelledError):
        await caller
    assert store.finished == []
    await asyncio.sleep(0.1)
    assert store.finished == ["a"]


async def test_shielded_operation_returns_and_raises() -> None:
    store = SlowStore()

    assert await store.write("b") == "b"
    with pytest.raises(ValueError, match="boom"):
        await store.fail()


async def test_private_methods_not_shielded() -> None:
    store = SlowStore()
    caller = asyncio.create_task(store._private())
    await asyncio.sleep(0.01)

    caller.cancel()
    await asyncio.sleep(0.1)

    assert store.finished == []


async def test_orphaned_failure_not_reported() -> None:
    reported: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        await orphan_failure(SlowStore())
        await asyncio.sleep(0.1)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)

    assert reported == []


async def orphan_failure(store: SlowStore) -> None:
    caller = asyncio.create_task(store.fail())
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller

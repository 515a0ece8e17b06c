"""One scheduler process of test_schedule_processes.py, driven by files.

Run as ``python -m tests.crawler.store.schedule_ticker STORE_URL FOLDER NAME``.
FOLDER contains ``instants.json``, the list of simulated instants (epoch
seconds), and ``control.json``, which the test rewrites: ``{"index": i}`` lets
every process tick up to instant ``i``, and ``{"stop": true}`` ends them. The
process ticks every instant from the control index it finds at start, as a
restarted process would join at the current time, and after each one writes
the index it finished to ``ack-NAME.json``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from crawler.scheduler import Scheduler
from crawler.service import open_store
from crawler.settings import Settings

POLL_S = 0.002


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, value: Any) -> None:
    """Write atomically, so a reader never sees half a file."""
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


async def tick_until_stopped(store_url: str, folder: Path, name: str) -> None:
    instants: list[float] = read_json(folder / "instants.json")
    control_path = folder / "control.json"
    ack_path = folder / f"ack-{name}.json"

    store = await open_store(Settings(store_url=store_url))
    try:
        scheduler = Scheduler(store)
        index = read_json(control_path).get("index", 0)
        while True:
            control = read_json(control_path)
            if control.get("stop"):
                return
            while index <= control["index"]:
                await scheduler.tick(instants[index])
                write_json(ack_path, index)
                index += 1
            await asyncio.sleep(POLL_S)
    finally:
        await store.close()


def main() -> None:
    store_url, folder, name = sys.argv[1:4]
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(tick_until_stopped(store_url, Path(folder), name))


if __name__ == "__main__":
    main()

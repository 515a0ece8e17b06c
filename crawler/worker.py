"""Workers: claim crawl jobs from the store and run them to the end.

A :class:`Worker` runs in every web process (as a background task) and in
``crawler worker`` processes. It claims up to ``worker_jobs`` jobs at a time
with a lease, renews the lease while it crawls, and watches the job's stored
state so that cancel, pause and delete requests made through any replica take
effect within about a second.

What survives a failure:

* A worker killed outright stops renewing; once the lease expires another
  worker claims the job, returns the dead worker's in-progress URLs to the
  queue and continues from the stored frontier. Records are unique per key,
  so a URL fetched twice is recorded once.
* On SIGTERM (:meth:`Worker.stop`) no new fetch starts; fetches in flight get
  ``shutdown_grace_s`` to finish and be recorded, the rest are cancelled and
  returned to the queue, and the lease is released so another worker can take
  the job at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence

import aiohttp

from crawler.engine import Crawler, CrawlStats
from crawler.errors import InvalidOptionError, StoreError
from crawler.fetch import create_session
from crawler.frontier import CrawlRequest
from crawler.guard import AddressGuard
from crawler.options import CrawlOptions
from crawler.parse_pool import ParsePool
from crawler.records import PageRecord
from crawler.settings import Settings
from crawler.store.base import Job, JobState, Store

logger = logging.getLogger(__name__)

# Finish reasons of Crawler.run() that mean the job is done.
_COMPLETED_REASONS = frozenset({"completed", "max_pages", "max_duration"})


class JobFrontier:
    """The engine's CrawlStore interface, backed by one job in the service store."""

    def __init__(self, store: Store, job_id: str, worker_id: str) -> None:
        self._store = store
        self._job_id = job_id
        self._worker_id = worker_id

    async def add(self, requests: Sequence[CrawlRequest]) -> int:
        return await self._store.add_requests(self._job_id, requests)

    async def claim_key(self, key: str) -> bool:
        return await self._store.claim_key(self._job_id, key)

    async def pop(self, busy_hosts: Collection[str]) -> CrawlRequest | None:
        return await self._store.pop_request(self._job_id, busy_hosts, self._worker_id)

    async def done(self, request: CrawlRequest) -> None:
        await self._store.complete_request(self._job_id, request.key)

    async def pending(self) -> int:
        counters = await self._store.counters(self._job_id)
        return counters.queued

    async def save(self, record: PageRecord) -> None:
        await self._store.save_page(self._job_id, record)


def new_worker_id() -> str:
    """Return an id naming this process in leases and logs: host, pid, random."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    """Claims and runs crawl jobs, ``settings.worker_jobs`` at a time."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.worker_id = worker_id or new_worker_id()
        self._store = store
        self._settings = settings
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._running: dict[str, asyncio.Task[None]] = {}
        self._crawlers: dict[str, Crawler] = {}
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pool: ParsePool | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start claiming jobs in a background task."""
        self._session = create_session(AddressGuard(self._settings.allow_networks))
        self._pool = ParsePool(self._settings.parse_mode, self._settings.parse_workers)
        self._loop_task = asyncio.create_task(
            self._claim_loop(), name=f"worker-{self.worker_id}"
        )
        logger.info(
            "Worker %s started (%d jobs at a time)",
            self.worker_id,
            self._settings.worker_jobs,
        )

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming, give fetches ``grace_s`` to finish, then hand jobs back."""
        grace = self._settings.shutdown_grace_s if grace_s is None else grace_s
        self._stopping.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)

        for crawler in self._crawlers.values():
            crawler.stop("shutdown", cancel_in_flight=False)
        tasks = list(self._running.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for crawler in self._crawlers.values():
                crawler.stop("shutdown")
            if pending:
                await asyncio.wait(pending)

        if self._session is not None:
            await self._session.close()
        if self._pool is not None:
            self._pool.close()
        logger.info("Worker %s stopped", self.worker_id)

    # -- claiming -------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            job = None
            if len(self._running) < self._settings.worker_jobs:
                try:
                    job = await self._store.claim_job(
                        self.worker_id,
                        lease_s=self._settings.lease_s,
                        now=self._clock(),
                    )
                except StoreError as exc:
                    logger.warning("Claiming a job failed (%s); retrying", exc)
            if job is not None:
                task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
                self._running[job.id] = task
                task.add_done_callback(functools.partial(self._forget, job.id))
                continue
            try:
                await asyncio.wait_for(self._stopping.wait(), self._poll_interval_s)
            except TimeoutError:
                pass

    def _forget(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._crawlers.pop(job_id, None)

    # -- one job --------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        """Crawl one claimed job to a stored final state or a released lease."""
        log_extra = {"job_id": job.id}
        try:
            options = CrawlOptions.from_mapping(job.options)
        except InvalidOptionError as exc:
            logger.error(
                "Job %s has invalid options: %s", job.id, exc.message, extra=log_extra
            )
            await self._finish(
                job.id, JobState.FAILED, f"invalid options: {exc.message}"
            )
            return

        try:
            requeued = await self._store.requeue_in_progress(job.id)
            counters = await self._store.counters(job.id)
            if requeued:
                logger.info(
                    "Job %s reclaimed; %d URLs back in the queue",
                    job.id,
                    requeued,
                    extra=log_extra,
                )
            assert self._session is not None and self._pool is not None
            crawler = Crawler(
                options,
                JobFrontier(self._store, job.id, self.worker_id),
                self._session,
                self._pool,
                pages_done=counters.fetched + counters.failed,
            )
            self._crawlers[job.id] = crawler
            logger.info(
                "Job %s started by worker %s", job.id, self.worker_id, extra=log_extra
            )

            flushed: Counter[str] = Counter()
            watcher = asyncio.create_task(
                self._watch(job.id, crawler, flushed), name=f"watch-{job.id}"
            )
            try:
                stats = await crawler.run()
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await self._settle(job.id, stats, flushed)
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            # The store is unreachable: leave the job to be reclaimed later.
            logger.error(
                "Job %s interrupted by a store error: %s", job.id, exc, extra=log_extra
            )
        except Exception as exc:
            logger.exception("Job %s failed", job.id, extra=log_extra)
            await self._finish(job.id, JobState.FAILED, f"{type(exc).__name__}: {exc}")

    async def _watch(
        self, job_id: str, crawler: Crawler, flushed: Counter[str]
    ) -> None:
        """Renew the lease and apply cancel, pause and delete requests."""
        interval = min(1.0, self._settings.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._flush_skipped(job_id, crawler.stats, flushed)
                renewed = await self._store.renew_lease(
                    job_id,
                    self.worker_id,
                    lease_s=self._settings.lease_s,
                    now=self._clock(),
                )
                job = await self._store.get_job(job_id)
            except StoreError as exc:
                logger.warning(
                    "Lease renewal failed (%s); retrying", exc, extra={"job_id": job_id}
                )
                continue
            if job is None:
                crawler.stop("deleted")
            elif job.state is JobState.CANCELLED:
                crawler.stop("cancelled")
            elif job.state is JobState.PAUSED:
                crawler.stop("paused", cancel_in_flight=False)
            elif not renewed:
                logger.warning(
                    "Lease on job %s lost; stopping", job_id, extra={"job_id": job_id}
                )
                crawler.stop("lease_lost")

    async def _flush_skipped(
        self, job_id: str, stats: CrawlStats, flushed: Counter[str]
    ) -> None:
        delta = Counter(stats.skipped)
        delta.subtract(flushed)
        positive = {reason: count for reason, count in delta.items() if count > 0}
        if positive:
            await self._store.add_skipped(job_id, positive)
            flushed.update(positive)

    async def _settle(
        self, job_id: str, stats: CrawlStats, flushed: Counter[str]
    ) -> None:
        """Store the outcome of a finished run and hand back what is left."""
        await self._flush_skipped(job_id, stats, flushed)
        reason = stats.finish_reason
        log_extra = {"job_id": job_id}
        if reason in _COMPLETED_REASONS:
            await self._finish(job_id, JobState.COMPLETED, None)
            logger.info(
                "Job %s completed (%s): %d fetched, %d failed",
                job_id,
                reason,
                stats.fetched,
                stats.failed,
                extra=log_extra,
            )
            return
        if reason != "deleted":
            await self._store.requeue_in_progress(job_id)
        await self._store.release_job(job_id, self.worker_id)
        logger.info(
            "Job %s left by worker %s (%s)",
            job_id,
            self.worker_id,
            reason,
            extra=log_extra,
        )

    async def _finish(self, job_id: str, state: JobState, error: str | None) -> None:
        try:
            await self._store.transition(
                job_id, state, allowed_from=(JobState.RUNNING,), last_error=error
            )
            await self._store.release_job(job_id, self.worker_id)
        except StoreError as exc:
            logger.error(
                "Could not store the end of job %s: %s",
                job_id,
                exc,
                extra={"job_id": job_id},
            )

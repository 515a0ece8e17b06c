"""Workers: claim crawl jobs from the store, or help with running ones.

A :class:`Worker` runs in every web process (as a background task) and in
``crawler worker`` processes. It runs up to ``worker_jobs`` jobs at a time.
A queued job is *claimed*: the worker takes the job's lease, seeds the
frontier and renews the lease while it crawls. A worker with a free slot and
no queued job *joins* a running job as a helper, so one job's fetches spread
over every worker and replica. A queued job takes the place of a job that a
worker only helps with, so new jobs start even when every slot is busy. Every
worker watches the stored state of its jobs, so cancel, pause and delete
requests made through any replica take effect within about a second.

Sharing one job between workers rests on three kinds of lease in the store:

* Each popped URL is leased to its worker, which renews the lease while the
  fetch runs. An expired URL (its worker died) goes back to the queue.
* Each host of a job is leased to one worker at a time, which alone fetches
  from it, so ``per_host_concurrency`` and ``per_host_delay_s`` hold across
  workers. A worker that leaves a job records when each of its hosts may be
  fetched again. A dead worker's hosts are free once their lease expires.
* ``max_pages`` caps the job's stored pop count, not each worker's.

A job is completed by the worker that claimed it, when its frontier is
drained: nothing queued (or the page budget spent) and nothing in progress
anywhere. Helpers leave once they have had nothing to fetch for a while.

What survives a failure:

* A worker killed outright stops renewing; its URLs and hosts expire and go
  to the other workers, and once the job lease expires another worker claims
  the job. Records are unique per key, so a URL fetched twice is recorded once.
* On SIGTERM (:meth:`Worker.stop`) no new fetch starts; fetches in flight get
  ``shutdown_grace_s`` to finish and be recorded, the rest are cancelled and
  returned to the queue, and the leases are released so other workers can
  continue at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

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

# Finish reasons of Crawler.run() after which the frontier may be drained.
_DRAINED_REASONS = frozenset({"completed", "max_pages"})

HELD_HOSTS_TTL_S = 0.5
"""How long a worker trusts its list of hosts other workers hold. A stale
list costs one returned request, never a second holder."""
MAX_HOST_RACES = 4
"""Requests one pop may take and hand back because their host was leased to
another worker in the meantime."""
HELPER_IDLE_S = 5.0
"""Seconds a helper waits without a request of its own before leaving a job."""
REJOIN_AFTER_S = 5.0
"""Seconds before a worker joins a job again that it left idle."""
POLL_INTERVAL_S = 0.5
"""How often a crawler with nothing to fetch looks at the shared frontier."""


@dataclass(frozen=True, slots=True)
class _Assignment:
    job: Job
    helper: bool
    """True when the worker joined a job that another worker holds."""


class JobFrontier:
    """The engine's CrawlStore interface, backed by one job in the service store.

    Pops take a host lease for each new host, so a host is fetched by one
    worker at a time. With ``max_pages`` they stop at the job's page budget.

    Hosts are shared out fairly: a worker leases at most its share of the
    job's hosts (hosts with work divided by the job's live workers). Over its
    share it takes no new host and releases hosts it has nothing in flight
    for, so workers that join a running job get hosts to fetch from.
    """

    def __init__(
        self,
        store: Store,
        job_id: str,
        worker_id: str,
        *,
        lease_s: float = 30.0,
        max_pages: int | None = None,
        helper: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._helper = helper
        self._job_id = job_id
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._max_pages = max_pages
        self._clock = clock
        self.hosts: set[str] = set()
        """Hosts this worker leased in the job."""
        self.host_waits: Callable[[], dict[str, float]] = dict
        """Seconds each host must still wait before its next start (the
        crawler's politeness), kept when a host is released."""
        self._in_flight: Counter[str] = Counter()
        self._confirmed: dict[str, float] = {}
        self._acquired_at: dict[str, float] = {}
        self._handing_over: set[str] = set()
        self._others: set[str] = set()
        self._share = 1_000_000
        self._read_at = float("-inf")

    async def add(self, requests: Sequence[CrawlRequest]) -> int:
        return await self._store.add_requests(self._job_id, requests)

    async def claim_key(self, key: str) -> bool:
        return await self._store.claim_key(self._job_id, key)

    async def pop(self, busy_hosts: Collection[str]) -> CrawlRequest | None:
        now = self._clock()
        if now - self._read_at >= HELD_HOSTS_TTL_S:
            await self._read_shares(now)
        excluded = set(busy_hosts) | self._others | self._handing_over
        # At its share a worker takes no new host.
        only = None
        if len(self.hosts) >= self._share:
            only = self.hosts - self._handing_over

        for _ in range(MAX_HOST_RACES):
            request = await self._store.pop_request(
                self._job_id,
                excluded,
                self._worker_id,
                lease_s=self._lease_s,
                now=now,
                max_pops=self._max_pages,
                only_hosts=only,
            )
            if request is None:
                return None
            if await self._holds(request.host, now):
                self._in_flight[request.host] += 1
                return request

            # Another worker has the host's lease, so hand the request back.
            await self._store.return_request(self._job_id, request.key, self._worker_id)
            excluded.add(request.host)
            self._others.add(request.host)
        return None

    async def _holds(self, host: str, now: float) -> bool:
        """Return True if this worker holds ``host``'s lease, taking it if free.

        A lease this worker took or confirmed less than half a lease ago is
        trusted. An older one is confirmed in the store, because renewals may
        have failed (a store outage) and another worker taken the host.
        """
        if host in self.hosts and now - self._confirmed[host] < self._lease_s / 2:
            return True
        if await self._store.acquire_host(
            self._job_id, host, self._worker_id, lease_s=self._lease_s, now=now
        ):
            if host not in self.hosts:
                self._acquired_at[host] = now
            self.hosts.add(host)
            self._confirmed[host] = now
            return True
        self.hosts.discard(host)
        return False

    async def done(self, request: CrawlRequest) -> None:
        await self._store.complete_request(self._job_id, request.key)
        host = request.host
        self._in_flight[host] -= 1
        if self._in_flight[host] > 0:
            return
        del self._in_flight[host]
        if host in self._handing_over:
            await self._hand_over([host])

    async def pending(self) -> int:
        """Requests queued or in progress anywhere; queued ones stop counting
        once the page budget is spent.

        For a helper this is never 0: before the worker
        that claimed the job has seeded it, the frontier is empty too. A helper
        leaves when it has been idle, and the claiming worker completes the
        job.
        """
        counters = await self._store.counters(self._job_id)
        pending = counters.queued + counters.in_progress
        if self._max_pages is not None and counters.popped >= self._max_pages:
            pending = counters.in_progress
        return max(pending, 1) if self._helper else pending

    async def save(self, record: PageRecord) -> None:
        await self._store.save_page(self._job_id, record)

    async def release(self, hosts: Collection[str] | None = None) -> int:
        """Release ``hosts`` (None: every host, leaving the job), each free
        again once its crawl delay has passed."""
        now = self._clock()
        free_at = {host: now + wait for host, wait in self.host_waits().items()}
        released = await self._store.release_hosts(
            self._job_id, self._worker_id, free_at, hosts=hosts
        )
        self.hosts -= self.hosts if hosts is None else set(hosts)
        return released

    async def _read_shares(self, now: float) -> None:
        """Read which hosts others hold and this worker's share, and release
        the idle hosts over the share."""
        held = await self._store.held_hosts(self._job_id, now=now)
        workers = await self._store.live_workers(self._job_id, now=now)
        queued_hosts = await self._store.queued_hosts(self._job_id)
        self._read_at = now
        self._others = {
            host for host, owner in held.items() if owner != self._worker_id
        }

        active = queued_hosts | {host for host, owner in held.items() if owner}
        worker_count = len(workers | {self._worker_id})
        self._share = max(1, math.ceil(len(active) / worker_count))

        # Hosts with nothing queued go at once when nothing is in flight
        # here. Over its share, the worker also hands hosts over: it starts no
        # new request to them and releases each once its requests are done.
        idle = sorted(host for host in self.hosts if not self._in_flight[host])
        drained = [host for host in idle if host not in queued_hosts]
        surplus = len(self.hosts) - len(drained) - self._share
        # The newest hosts go first: the worker has done the least on them.
        keep = sorted(
            (host for host in self.hosts if host not in drained),
            key=lambda host: (self._in_flight[host], -self._acquired_at[host]),
        )
        self._handing_over = set(keep[: max(0, surplus)])
        given = drained + [host for host in idle if host in self._handing_over]
        if given:
            await self._hand_over(given)

    async def _hand_over(self, hosts: list[str]) -> None:
        await self.release(hosts)
        self._handing_over.difference_update(hosts)
        self._others.update(hosts)
        logger.info(
            "Worker %s released %d hosts of job %s",
            self._worker_id,
            len(hosts),
            self._job_id,
            extra={"job_id": self._job_id},
        )


async def is_drained(store: Store, job_id: str, max_pages: int | None) -> bool:
    """Return True if the job has nothing in progress and nothing left to pop."""
    counters = await store.counters(job_id)
    if counters.in_progress:
        return False
    return counters.queued == 0 or (
        max_pages is not None and counters.popped >= max_pages
    )


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
        self._left_idle: dict[str, float] = {}
        self._helping: set[str] = set()
        """Jobs this worker runs as a helper, which a queued job may preempt."""
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pool: ParsePool | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start claiming jobs in a background task."""
        self._session = create_session(
            AddressGuard(self._settings.allow_networks),
            source_address=self._settings.source_address,
        )
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
            assignment = None
            try:
                if len(self._running) < self._settings.worker_jobs:
                    assignment = await self._next_assignment()
                elif self._helping:
                    assignment = await self._preempt_helping()
            except StoreError as exc:
                logger.warning("Claiming a job failed (%s); retrying", exc)
            if assignment is not None:
                job_id = assignment.job.id
                if assignment.helper:
                    self._helping.add(job_id)
                task = asyncio.create_task(
                    self._run_job(assignment), name=f"job-{job_id}"
                )
                self._running[job_id] = task
                task.add_done_callback(functools.partial(self._forget, job_id))
                continue
            try:
                await asyncio.wait_for(self._stopping.wait(), self._poll_interval_s)
            except TimeoutError:
                pass

    async def _next_assignment(self) -> _Assignment | None:
        """Claim a queued (or abandoned) job, else join a running one."""
        now = self._clock()
        running = set(self._running)
        job = await self._store.claim_job(
            self.worker_id,
            lease_s=self._settings.lease_s,
            now=now,
            exclude=running,
        )
        if job is not None:
            return _Assignment(job, helper=False)

        self._left_idle = {
            job_id: until for job_id, until in self._left_idle.items() if until > now
        }
        job = await self._store.join_job(
            self.worker_id, now=now, exclude=running | set(self._left_idle)
        )
        if job is None:
            return None
        logger.info(
            "Worker %s joined job %s, held by %s",
            self.worker_id,
            job.id,
            job.lease_owner,
            extra={"job_id": job.id},
        )
        return _Assignment(job, helper=True)

    async def _preempt_helping(self) -> _Assignment | None:
        """Claim a queued job in place of a job this worker only helps with.

        Without this, workers whose slots are all spent helping leave new
        jobs queued until a running one ends. The helped job's crawl stops
        taking URLs at once; until its fetches in flight end, this worker
        runs one job more than ``worker_jobs``.
        """
        job = await self._store.claim_job(
            self.worker_id,
            lease_s=self._settings.lease_s,
            now=self._clock(),
            exclude=set(self._running),
        )
        if job is None:
            return None
        helped = min(self._helping)
        self._helping.discard(helped)
        crawler = self._crawlers.get(helped)
        if crawler is not None:
            crawler.stop("preempted", cancel_in_flight=False)
        logger.info(
            "Worker %s leaves job %s for queued job %s",
            self.worker_id,
            helped,
            job.id,
            extra={"job_id": job.id},
        )
        return _Assignment(job, helper=False)

    def _forget(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._helping.discard(job_id)
        self._running.pop(job_id, None)
        self._crawlers.pop(job_id, None)

    # -- one job --------------------------------------------------------------

    async def _run_job(self, assignment: _Assignment) -> None:
        """Crawl one job until it is finished here, then settle what is left."""
        job, helper = assignment.job, assignment.helper
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

        frontier = JobFrontier(
            self._store,
            job.id,
            self.worker_id,
            lease_s=self._settings.lease_s,
            max_pages=options.max_pages,
            helper=helper,
            clock=self._clock,
        )
        try:
            if not helper:
                requeued = await self._store.requeue_in_progress(
                    job.id, expired_at=self._clock()
                )
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
                frontier,
                self._session,
                self._pool,
                seed=not helper,
                poll_interval_s=POLL_INTERVAL_S,
                idle_timeout_s=HELPER_IDLE_S if helper else None,
            )
            frontier.host_waits = crawler.host_waits
            self._crawlers[job.id] = crawler
            # Join the job's workers now, so the others count this one in
            # their share of hosts before its first renewal.
            await self._store.renew_requests(
                job.id,
                self.worker_id,
                lease_s=self._settings.lease_s,
                now=self._clock(),
            )
            logger.info(
                "Job %s started by worker %s%s",
                job.id,
                self.worker_id,
                " as a helper" if helper else "",
                extra=log_extra,
            )

            flushed: Counter[str] = Counter()
            watcher = asyncio.create_task(
                self._watch(job.id, crawler, flushed, helper=helper),
                name=f"watch-{job.id}",
            )
            try:
                stats = await crawler.run()
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await self._settle(job.id, crawler, frontier, stats, flushed, helper)
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            # The store is unreachable: the leases expire and the job is
            # picked up again once it responds.
            logger.error(
                "Job %s interrupted by a store error: %s", job.id, exc, extra=log_extra
            )
        except Exception as exc:
            logger.exception("Job %s failed", job.id, extra=log_extra)
            await self._finish(job.id, JobState.FAILED, f"{type(exc).__name__}: {exc}")

    async def _watch(
        self, job_id: str, crawler: Crawler, flushed: Counter[str], *, helper: bool
    ) -> None:
        """Renew the leases, requeue expired URLs and apply cancel, pause and
        delete requests."""
        interval = min(1.0, self._settings.lease_s / 3)
        lease_s = self._settings.lease_s
        while True:
            await asyncio.sleep(interval)
            now = self._clock()
            try:
                await self._flush_skipped(job_id, crawler.stats, flushed)
                renewed = True
                if not helper:
                    renewed = await self._store.renew_lease(
                        job_id, self.worker_id, lease_s=lease_s, now=now
                    )
                await self._store.renew_requests(
                    job_id, self.worker_id, lease_s=lease_s, now=now
                )
                await self._store.requeue_in_progress(job_id, expired_at=now)
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
            elif job.state is not JobState.RUNNING:
                crawler.stop(str(job.state))
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
        self,
        job_id: str,
        crawler: Crawler,
        frontier: JobFrontier,
        stats: CrawlStats,
        flushed: Counter[str],
        helper: bool,
    ) -> None:
        """Store the outcome of a finished run and hand back what is left."""
        await self._flush_skipped(job_id, stats, flushed)
        reason = stats.finish_reason
        log_extra = {"job_id": job_id}
        # The worker that claimed the job completes it: on the drained
        # frontier, or when the job's own time limit, which runs here, ends.
        completed = reason == "max_duration" and not helper
        if reason in _DRAINED_REASONS and not helper:
            completed = await is_drained(self._store, job_id, crawler.options.max_pages)
        if completed and await self._finish(job_id, JobState.COMPLETED, None):
            logger.info(
                "Job %s completed (%s): %d fetched, %d failed here",
                job_id,
                reason,
                stats.fetched,
                stats.failed,
                extra=log_extra,
            )
            return

        if completed:
            reason = "the job was no longer running"
        if helper:
            self._left_idle[job_id] = self._clock() + REJOIN_AFTER_S
        if reason != "deleted":
            await self._store.requeue_in_progress(job_id, owner=self.worker_id)
            await frontier.release()
        if not helper:
            await self._store.release_job(job_id, self.worker_id)
        logger.info(
            "Job %s left by worker %s (%s)",
            job_id,
            self.worker_id,
            reason,
            extra=log_extra,
        )

    async def _finish(self, job_id: str, state: JobState, error: str | None) -> bool:
        """Move a running job to ``state`` and drop this worker's leases on it.

        Returns False when the job was no longer running (deleted, cancelled
        or paused meanwhile) or the store failed.
        """
        try:
            finished = await self._store.transition(
                job_id, state, allowed_from=(JobState.RUNNING,), last_error=error
            )
            await self._store.release_job(job_id, self.worker_id)
            await self._store.release_hosts(job_id, self.worker_id, {})
        except StoreError as exc:
            logger.error(
                "Could not store the end of job %s: %s",
                job_id,
                exc,
                extra={"job_id": job_id},
            )
            return False
        return finished is not None

"""The service's storage interface: jobs, their frontiers and their page records.

One interface, two implementations: ``sqlite.py`` (the embedded default, one
host, several processes) and ``mongo.py`` (several replicas). Both
must pass the same contract tests in ``tests/crawler/store/``.

Guarantees every implementation keeps:

* Job state changes are conditional (:meth:`Store.transition` names the states
  a job may leave), so two processes never both win a conflicting change.
* A job has one lease holder, which seeds it and whose lease keeps it alive.
  :meth:`Store.claim_job` hands out a queued job, or a running one whose lease
  expired (its worker died); a reclaimed job continues from its stored
  frontier. Other workers may help with a running job (:meth:`Store.join_job`)
  without a job lease.
* Frontier entries are ``queued``, ``in_progress`` (popped, with an owner and
  a lease end) or ``done``. A worker renews the leases of the entries it
  holds; :meth:`Store.requeue_in_progress` returns expired entries (their
  worker died) to the queue, so no URL is lost.
* A host of a job is fetched by one worker at a time, the holder of its host
  lease (:meth:`Store.acquire_host`), so per-host concurrency and delay hold
  across workers and replicas. A released host records when it is free again.
* A job's ``popped`` counter (entries in progress or done by a pop) is changed
  with the pops and requeues themselves, so ``max_pages`` holds across workers.
* Page records are unique per (job, canonical key): saving a second record
  with the same key changes nothing and returns False, so a retried or
  reclaimed fetch never produces two records.
* Listing uses opaque cursors in creation order (jobs newest first, pages
  oldest first), stable while new items are added.
* Operations on a missing job change nothing: writes return 0, False or None,
  counters are zero and listings are empty.
* A schedule's runs are unique per (schedule, key), and
  :meth:`Store.advance_schedule` moves the next run time only from the due
  time the caller read, so each due time is decided and advanced once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from crawler.frontier import CrawlRequest
from crawler.records import PageRecord
from crawler.store.schedules import Schedule, ScheduleRun, ScheduleSpec, Unchanged

T = TypeVar("T")

DEFAULT_REQUEST_LEASE_S = 60.0
"""Seconds a popped request stays leased to its worker unless renewed."""


class JobState(StrEnum):
    """The stage of a job's life cycle."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class Job:
    """A crawl job as stored. Times are ISO 8601 UTC strings."""

    id: str
    state: JobState
    options: dict[str, Any]
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
    last_error: str | None = None
    schedule_id: str | None = None
    idempotency_key: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    """Epoch seconds when the lease ends; None when no worker has the job."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Links skipped by reason (out_of_scope, trap, nofollow, max_depth, ...)."""


@dataclass(frozen=True, slots=True)
class JobCounters:
    """Counts derived from the stored frontier and page records."""

    queued: int = 0
    in_progress: int = 0
    done: int = 0
    pages: int = 0
    fetched: int = 0
    """Records with an HTTP response (any status)."""
    failed: int = 0
    """Records with an error other than robots or out_of_scope."""
    errors: dict[str, int] = field(default_factory=dict)
    """Records by error kind, robots and out_of_scope included."""
    popped: int = 0
    """Frontier entries popped and not returned: in progress or done by a pop.
    Pops stop at ``max_pages``."""


@dataclass(frozen=True, slots=True)
class ResultPage(Generic[T]):
    """One page of a listing and the cursor of the next, or None at the end."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class PageFilter:
    """Filters of the page listing; None means no filter."""

    status_class: int | None = None
    """1 to 5: the hundreds digit of the status (2 is 2xx)."""
    error_kind: str | None = None
    depth: int | None = None
    errors_only: bool = False
    """Only records that carry an error (failed and skipped URLs)."""


class InvalidCursorError(ValueError):
    """A listing cursor was not made by this store for this listing."""


class Store(Protocol):
    """Everything the API, the workers and the scheduler need from storage."""

    async def ping(self) -> None:
        """Raise StoreError unless the store responds."""
        ...

    async def close(self) -> None: ...

    # -- jobs ---------------------------------------------------------------

    async def create_job(
        self,
        options: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        schedule_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Store a queued job; return it and True, or the job already created
        with the same idempotency key and False."""
        ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self,
        *,
        states: Collection[JobState] = (),
        limit: int = 50,
        cursor: str | None = None,
    ) -> ResultPage[Job]:
        """List jobs newest first; raise InvalidCursorError for a foreign cursor."""
        ...

    async def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        allowed_from: Collection[JobState],
        last_error: str | None = None,
    ) -> Job | None:
        """Move the job to ``to`` if its state is in ``allowed_from``.

        Returns the updated job, or None when the job is missing or in another
        state. Entering RUNNING sets started_at (once); entering a final state
        sets finished_at and drops the lease. Entering any other state clears
        finished_at.
        """
        ...

    async def delete_job(self, job_id: str) -> bool:
        """Delete the job, its frontier and its pages; False if it was missing."""
        ...

    async def counters(self, job_id: str) -> JobCounters: ...

    async def add_skipped(self, job_id: str, counts: Mapping[str, int]) -> None:
        """Add link-skip counts (by reason) to the job."""
        ...

    # -- leases ---------------------------------------------------------------

    async def claim_job(
        self,
        worker_id: str,
        *,
        lease_s: float,
        now: float,
        exclude: Collection[str] = (),
    ) -> Job | None:
        """Lease a queued job, or a running job whose lease expired or was
        released, except those in ``exclude``, and mark it running; None when
        there is no such job. Atomic across processes."""
        ...

    async def join_job(
        self, worker_id: str, *, now: float, exclude: Collection[str] = ()
    ) -> Job | None:
        """Return the oldest running job whose live lease another worker holds,
        except those in ``exclude``. Writes nothing."""
        ...

    async def renew_lease(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> bool:
        """Extend the lease; False if the worker no longer holds it."""
        ...

    async def release_job(self, job_id: str, worker_id: str) -> None:
        """Drop the worker's lease (the job's state is left as it is)."""
        ...

    # -- frontier -------------------------------------------------------------

    async def add_requests(self, job_id: str, requests: Sequence[CrawlRequest]) -> int:
        """Queue the requests whose key the job has not seen; return how many."""
        ...

    async def claim_key(self, job_id: str, key: str) -> bool:
        """Mark ``key`` seen (as done) without queueing; False if already seen."""
        ...

    async def pop_request(
        self,
        job_id: str,
        busy_hosts: Collection[str],
        worker_id: str,
        *,
        lease_s: float = DEFAULT_REQUEST_LEASE_S,
        now: float | None = None,
        max_pops: int | None = None,
        only_hosts: Collection[str] | None = None,
    ) -> CrawlRequest | None:
        """Mark the oldest queued request of a host not in ``busy_hosts`` as in
        progress for ``worker_id`` until ``now + lease_s`` (``now`` defaults to
        the current time) and return it; count it in the job's ``popped``.
        With ``max_pops``, return None once ``popped`` has reached it; with
        ``only_hosts``, take only requests of those hosts."""
        ...

    async def return_request(self, job_id: str, key: str, worker_id: str) -> bool:
        """Put one of the worker's in-progress requests back in its place in
        the queue and out of ``popped``; False if it is not in progress for
        that worker."""
        ...

    async def complete_request(self, job_id: str, key: str) -> None:
        """Mark an in-progress request done."""
        ...

    async def renew_requests(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> int:
        """Extend the worker's request leases, host leases and membership in
        the job to ``now + lease_s``. Return how many requests it has leased."""
        ...

    async def requeue_in_progress(
        self,
        job_id: str,
        *,
        owner: str | None = None,
        expired_at: float | None = None,
    ) -> int:
        """Return in-progress requests to the queue (and out of ``popped``):
        those of ``owner``, those whose lease ended before ``expired_at``, or
        with neither every one. Return how many."""
        ...

    # -- host leases ------------------------------------------------------------

    async def acquire_host(
        self, job_id: str, host: str, worker_id: str, *, lease_s: float, now: float
    ) -> bool:
        """Lease ``host`` to the worker until ``now + lease_s``: True if the
        worker holds it already, or no worker does and its ``free_at`` has passed."""
        ...

    async def held_hosts(self, job_id: str, *, now: float) -> dict[str, str | None]:
        """Map the job's held hosts to their holder, and the hosts waiting for
        their ``free_at`` to None."""
        ...

    async def release_hosts(
        self,
        job_id: str,
        worker_id: str,
        free_at: Mapping[str, float],
        *,
        hosts: Collection[str] | None = None,
    ) -> int:
        """Drop the worker's leases on ``hosts`` (all with None, which also
        ends its membership in the job), each free again at its ``free_at``
        entry (epoch seconds) or at once; return how many."""
        ...

    async def queued_hosts(self, job_id: str) -> set[str]:
        """Return the job's hosts that have queued requests."""
        ...

    async def live_workers(self, job_id: str, *, now: float) -> set[str]:
        """Return the workers whose membership in the job lasts past ``now``."""
        ...

    # -- pages ----------------------------------------------------------------

    async def save_page(self, job_id: str, record: PageRecord) -> bool:
        """Store the record unless one with its key exists; return True if stored."""
        ...

    async def list_pages(
        self,
        job_id: str,
        *,
        filters: PageFilter = PageFilter(),
        limit: int = 100,
        cursor: str | None = None,
    ) -> ResultPage[dict[str, Any]]:
        """List page records (as ``PageRecord.to_dict()``) in the order stored."""
        ...

    def iter_pages(
        self, job_id: str, *, filters: PageFilter = PageFilter(), batch_size: int = 500
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every matching record in stored order, ``batch_size`` at a time,
        so an export holds one batch in memory, also while the job runs."""
        ...

    # -- schedules ------------------------------------------------------------

    async def create_schedule(
        self, spec: ScheduleSpec, *, next_run_at: int | None
    ) -> Schedule:
        """Store a schedule with a random id and return it."""
        ...

    async def get_schedule(self, schedule_id: str) -> Schedule | None: ...

    async def list_schedules(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> ResultPage[Schedule]:
        """List schedules newest first, or raise InvalidCursorError for a
        foreign cursor."""
        ...

    async def update_schedule(
        self,
        schedule_id: str,
        spec: ScheduleSpec,
        *,
        next_run_at: int | Unchanged | None,
    ) -> Schedule | None:
        """Replace the schedule's spec, and its next run time unless UNCHANGED.

        Returns the updated schedule, or None when it is missing.
        """
        ...

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule and its runs, not its jobs. False if it was missing."""
        ...

    async def due_schedules(self, now: int, *, limit: int) -> list[Schedule]:
        """Return enabled schedules whose next run time is ``now`` or earlier,
        earliest first."""
        ...

    async def advance_schedule(
        self, schedule_id: str, *, due_at: int, next_run_at: int | None
    ) -> bool:
        """Set the next run time if it still is ``due_at``, and return whether it was.

        The condition makes the advance happen once however many processes
        fired the same due time. Atomic across processes.
        """
        ...

    async def record_schedule_run(self, run: ScheduleRun) -> ScheduleRun | None:
        """Store the run unless one with its (schedule, key) exists, and return
        the stored one, which decides the outcome for every process.

        Atomic across processes. Returns None, storing nothing, when the
        schedule is missing.
        """
        ...

    async def link_schedule_run(self, schedule_id: str, key: str, job_id: str) -> None:
        """Set the job that a started run created."""
        ...

    async def list_schedule_runs(
        self, schedule_id: str, *, limit: int
    ) -> list[ScheduleRun]:
        """Return the schedule's latest runs, newest due time first."""
        ...

    async def has_unfinished_jobs(
        self, schedule_id: str, *, excluding_key: str | None = None
    ) -> bool:
        """Return whether a job of the schedule is queued, running or paused,
        not counting the job whose idempotency key is ``excluding_key``."""
        ...

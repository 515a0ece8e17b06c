"""The job object that the API returns and the status pages show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crawler.options import CrawlOptions
from crawler.store.base import Job, JobCounters, Store

# Every option with its default, so a job stored with a partial mapping still
# shows its full configuration. Built without validate(), which needs seeds.
DEFAULT_OPTIONS: dict[str, Any] = CrawlOptions(seeds=()).to_mapping()


@dataclass(frozen=True, slots=True)
class JobSummary:
    """A stored job with its counters and its average fetch rate."""

    job: Job
    counters: JobCounters
    pages_per_second: float

    @property
    def options(self) -> dict[str, Any]:
        return {**DEFAULT_OPTIONS, **self.job.options}

    @property
    def progress(self) -> float:
        """Fetched pages as a fraction of max_pages, from 0 to 1."""
        max_pages = self.options["max_pages"]
        if not isinstance(max_pages, int) or max_pages <= 0:
            return 0.0
        return min(1.0, self.counters.fetched / max_pages)


async def summarize_job(
    store: Store, job: Job, *, now: datetime | None = None
) -> JobSummary:
    """Load the job's counters and compute its average rate."""
    counters = await store.counters(job.id)
    rate = pages_per_second(job, counters.fetched, now or datetime.now(UTC))
    return JobSummary(job=job, counters=counters, pages_per_second=rate)


def pages_per_second(job: Job, fetched: int, now: datetime) -> float:
    """Return fetched pages per second from started_at to finished_at (or now).

    NOTE: time spent paused counts too, so a job that was paused for a while
    shows a lower average than it fetched at while running.
    """
    if job.started_at is None:
        return 0.0
    start = _parse_time(job.started_at)
    end = _parse_time(job.finished_at) if job.finished_at else now
    elapsed = (end - start).total_seconds()
    if elapsed <= 0:
        return 0.0
    return round(fetched / elapsed, 3)


def _parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time, taking one without an offset as UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def job_to_json(summary: JobSummary) -> dict[str, Any]:
    """Return the API's job object."""
    job, counters = summary.job, summary.counters
    return {
        "id": job.id,
        "state": job.state.value,
        "options": summary.options,
        "counters": {
            "queued": counters.queued,
            "in_progress": counters.in_progress,
            "fetched": counters.fetched,
            "failed": counters.failed,
            "pages": counters.pages,
            "errors": dict(counters.errors),
            "skipped": dict(job.skipped),
        },
        "pages_per_second": summary.pages_per_second,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "last_error": job.last_error,
        "schedule_id": job.schedule_id,
        "worker": job.lease_owner,
    }

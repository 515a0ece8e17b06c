"""Storage for the crawl service: one interface, an embedded SQLite default."""

from crawler.store.base import (
    FINAL_STATES,
    InvalidCursorError,
    Job,
    JobCounters,
    JobState,
    PageFilter,
    ResultPage,
    Store,
)

__all__ = [
    "FINAL_STATES",
    "InvalidCursorError",
    "Job",
    "JobCounters",
    "JobState",
    "PageFilter",
    "ResultPage",
    "Store",
]

"""URL paths that handlers, templates and the OpenAPI document share."""

from __future__ import annotations

API_PREFIX = "/api/v1"


def job_api_path(job_id: str) -> str:
    return f"{API_PREFIX}/jobs/{job_id}"


def job_page_path(job_id: str) -> str:
    return f"/jobs/{job_id}"


def schedule_api_path(schedule_id: str) -> str:
    return f"{API_PREFIX}/schedules/{schedule_id}"


def schedule_page_path(schedule_id: str) -> str:
    return f"/schedules/{schedule_id}"

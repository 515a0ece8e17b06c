"""The status page's schedule form: its fields, and the schedule body they make.

The form shows the common crawl options as fields of their own, like the start
form on the jobs page, and every other option of the job template as a JSON
object in ``other_options``. Editing a schedule therefore keeps options that
the API set, such as selectors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crawler.errors import InvalidOptionError, InvalidScheduleError
from crawler.schedule import DEFAULT_TIMEZONE
from crawler.store.schedules import Missed, Overlap, Schedule
from web.api.body import check_text
from web.job_summary import DEFAULT_OPTIONS
from web.problems import MalformedJsonError

INTEGER_OPTIONS = ("max_pages", "max_depth", "concurrency")
FORM_OPTIONS = ("seeds", *INTEGER_OPTIONS, "scope", "allowed_domains")
"""Crawl options that have a field of their own. The rest go in other_options."""
FORM_FIELDS = (
    "name",
    "cron",
    "timezone",
    "enabled",
    "overlap",
    "missed",
    *FORM_OPTIONS,
    "other_options",
)
OTHER_OPTIONS_EXAMPLE = '{"include": ["/docs/"], "per_host_delay_s": 1}'


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def default_form() -> dict[str, str]:
    """Return the values of an empty form for a new schedule."""
    return {
        "name": "",
        "cron": "",
        "timezone": DEFAULT_TIMEZONE,
        "enabled": "on",
        "overlap": Overlap.SKIP.value,
        "missed": Missed.RUN_ONCE.value,
        "seeds": "",
        **{name: str(DEFAULT_OPTIONS[name]) for name in INTEGER_OPTIONS},
        "scope": DEFAULT_OPTIONS["scope"],
        "allowed_domains": "",
        "other_options": "",
    }


def form_from_schedule(schedule: Schedule) -> dict[str, str]:
    """Return the form's values for editing ``schedule``."""
    job = schedule.job
    other = {
        name: value
        for name, value in job.items()
        if name not in FORM_OPTIONS and value != DEFAULT_OPTIONS.get(name)
    }
    return {
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "enabled": "on" if schedule.enabled else "",
        "overlap": schedule.overlap.value,
        "missed": schedule.missed.value,
        "seeds": "\n".join(job.get("seeds", [])),
        **{name: str(job.get(name, DEFAULT_OPTIONS[name])) for name in INTEGER_OPTIONS},
        "scope": str(job.get("scope", DEFAULT_OPTIONS["scope"])),
        "allowed_domains": "\n".join(job.get("allowed_domains", [])),
        "other_options": json.dumps(other, indent=2) if other else "",
    }


def schedule_body_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """Build the API's schedule body from the form's fields.

    An unticked ``enabled`` box sends nothing, so a missing field means false.
    Raises InvalidScheduleError or InvalidOptionError naming the field at
    fault (``job.NAME`` for an option), as the API would.
    """
    job = _other_options(form.get("other_options", ""))
    job["seeds"] = _lines(form.get("seeds", ""))
    for name in INTEGER_OPTIONS:
        raw = form.get(name, "").strip()
        if not raw:
            continue
        try:
            job[name] = int(raw)
        except ValueError:
            raise InvalidOptionError(
                f"job.{name}", f"{name} must be a whole number, got {raw!r}"
            ) from None
    scope = form.get("scope", "").strip()
    if scope:
        job["scope"] = scope
    domains = _lines(form.get("allowed_domains", ""))
    if domains:
        job["allowed_domains"] = domains

    return {
        "name": form.get("name", ""),
        "cron": form.get("cron", ""),
        "timezone": form.get("timezone", "").strip() or DEFAULT_TIMEZONE,
        "enabled": "enabled" in form,
        "overlap": form.get("overlap", Overlap.SKIP.value),
        "missed": form.get("missed", Missed.RUN_ONCE.value),
        "job": job,
    }


def _other_options(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise InvalidScheduleError(
            "other_options",
            f"Other options must be a JSON object such as {OTHER_OPTIONS_EXAMPLE}; "
            f"this is not valid JSON: {exc}",
        ) from exc
    if not isinstance(options, dict):
        raise InvalidScheduleError(
            "other_options",
            f"Other options must be a JSON object such as {OTHER_OPTIONS_EXAMPLE}",
        )
    try:
        check_text(options)
    except MalformedJsonError as exc:
        raise InvalidScheduleError("other_options", exc.detail) from None
    own_field = sorted(set(options) & set(FORM_OPTIONS))
    if own_field:
        raise InvalidScheduleError(
            "other_options",
            f"Set {own_field[0]} in its own field, not in other options",
        )
    return options


def form_field_of(error_field: str) -> str:
    """Return the form field that shows an error of the API field ``error_field``.

    ``job.max_pages`` is shown at max_pages, and an option without a field
    of its own at other_options.
    """
    if error_field.startswith("job."):
        option = error_field.removeprefix("job.")
        return option if option in FORM_OPTIONS else "other_options"
    if error_field == "job":
        return "other_options"
    return error_field

"""Cron timetables and schedule validation, daylight-saving changes included.

Expected instants are written out in UTC, not computed with the library
under test, so a change in cronsim's behaviour fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crawler.errors import InvalidOptionError, InvalidScheduleError
from crawler.schedule import Timetable, parse_schedule_spec
from crawler.store.schedules import Missed, Overlap, ScheduleSpec

NEW_YORK = "America/New_York"
VALID: dict[str, Any] = {
    "name": "nightly docs",
    "cron": "30 2 * * *",
    "timezone": NEW_YORK,
    "job": {"seeds": ["http://docs.test/"]},
}


def epoch(text: str) -> int:
    """Return the epoch seconds of an ISO 8601 UTC time such as 2025-03-09T07:00Z."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def utc(instants: list[int]) -> list[str]:
    return [
        datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%MZ")
        for instant in instants
    ]


def rejected(data: dict[str, Any], current: ScheduleSpec | None = None) -> Exception:
    with pytest.raises((InvalidScheduleError, InvalidOptionError)) as caught:
        parse_schedule_spec(data, current=current)
    return caught.value


def field_of(error: Exception) -> str:
    if isinstance(error, InvalidScheduleError):
        return error.field
    assert isinstance(error, InvalidOptionError)
    return error.option


# -- daylight-saving changes ---------------------------------------------------


def test_spring_forward_fixed_time_runs_once() -> None:
    timetable = Timetable.parse("30 2 * * *", NEW_YORK)

    times = timetable.upcoming(epoch("2025-03-07T17:00"), 4)

    # 2025-03-09 02:30 does not exist in New York: it runs at 03:00 EDT.
    assert utc(times) == [
        "2025-03-08T07:30Z",
        "2025-03-09T07:00Z",
        "2025-03-10T06:30Z",
        "2025-03-11T06:30Z",
    ]


def test_fall_back_fixed_time_runs_once() -> None:
    timetable = Timetable.parse("30 1 * * *", NEW_YORK)

    times = timetable.upcoming(epoch("2025-10-31T16:00"), 4)

    # 2025-11-02 01:30 happens at 05:30Z (EDT) and 06:30Z (EST): the first only.
    assert utc(times) == [
        "2025-11-01T05:30Z",
        "2025-11-02T05:30Z",
        "2025-11-03T06:30Z",
        "2025-11-04T06:30Z",
    ]


def test_fall_back_from_second_pass() -> None:
    timetable = Timetable.parse("45 1 * * *", NEW_YORK)

    # 06:40Z is 01:40 EST, the second pass; 01:45 EDT (05:45Z) already ran.
    following = timetable.next_after(epoch("2025-11-02T06:40"))

    assert utc([following or 0]) == ["2025-11-03T06:45Z"]


def test_hourly_follows_elapsed_time() -> None:
    timetable = Timetable.parse("@hourly", NEW_YORK)

    fall = timetable.upcoming(epoch("2025-11-02T04:00"), 25)
    spring = timetable.upcoming(epoch("2025-03-09T05:00"), 23)

    assert fall == [epoch("2025-11-02T04:00") + 3600 * n for n in range(1, 26)]
    assert spring == [epoch("2025-03-09T05:00") + 3600 * n for n in range(1, 24)]


def test_half_hour_offset_zone() -> None:
    timetable = Timetable.parse("0 9 * * *", "Asia/Kolkata")

    assert utc(timetable.upcoming(epoch("2025-03-09T00:00"), 2)) == [
        "2025-03-09T03:30Z",
        "2025-03-10T03:30Z",
    ]


def test_next_after_is_strictly_later() -> None:
    timetable = Timetable.parse("*/15 * * * *", "UTC")

    assert timetable.next_after(epoch("2025-01-01T10:15")) == epoch("2025-01-01T10:30")
    assert timetable.next_after(epoch("2025-01-01T10:15") - 0.5) == epoch(
        "2025-01-01T10:15"
    )


def test_count_due_includes_both_ends() -> None:
    timetable = Timetable.parse("0 * * * *", "UTC")
    first = epoch("2025-01-01T10:00")

    assert timetable.count_due(first, epoch("2025-01-01T13:00"), 1000) == 4
    assert timetable.count_due(first, epoch("2025-01-01T12:59"), 1000) == 3
    assert timetable.count_due(first, epoch("2025-02-01T10:00"), 50) == 50


def test_aliases_expand() -> None:
    start = epoch("2025-01-01T10:10")
    expected = {
        "@hourly": "2025-01-01T11:00Z",
        "@daily": "2025-01-02T00:00Z",
        "@midnight": "2025-01-02T00:00Z",
        "@weekly": "2025-01-05T00:00Z",
        "@monthly": "2025-02-01T00:00Z",
        "@yearly": "2026-01-01T00:00Z",
        "@ANNUALLY": "2026-01-01T00:00Z",
    }

    for alias, first in expected.items():
        timetable = Timetable.parse(alias, "UTC")
        assert utc([timetable.next_after(start) or 0]) == [first], alias


def test_describe_in_english() -> None:
    assert Timetable.parse("30 2 * * *", "UTC").describe() == "At 02:30 every day"


# -- cron and time zone errors -------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("61 * * * *", "Bad minute"),
        ("0 24 * * *", "Bad hour"),
        ("0 0 32 * *", "Bad day-of-month"),
        ("0 0 30 2 *", "Bad day-of-month"),
        ("0 0 * 13 *", "Bad month"),
        ("0 0 * * 8", "Bad day-of-week"),
        ("*/0 * * * *", "Bad minute"),
        ("5-1 * * * *", "Bad minute"),
        ("* * * *", "has 4 fields, not 5"),
        ("0 * * * * *", "has 6 fields, not 5"),
        ("", "must not be empty"),
        ("@reboot", "nickname '@reboot' is not supported"),
        ("@every 5m", "is not supported"),
        ("x" * 201, "at most 200 characters"),
    ],
)
def test_bad_cron_named(cron: str, words: str) -> None:
    error = rejected({**VALID, "cron": cron})

    assert isinstance(error, InvalidScheduleError)
    assert error.field == "cron"
    assert words in error.message
    assert "'30 2 * * *'" in error.message or "characters" in error.message


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus", "localtime", "../etc/passwd", "", "utc+2"]
)
def test_bad_timezone_named(timezone: str) -> None:
    error = rejected({**VALID, "timezone": timezone})

    assert isinstance(error, InvalidScheduleError)
    assert error.field == "timezone"
    assert repr(timezone) in error.message
    assert "Europe/Berlin" in error.message


# -- schedule bodies -----------------------------------------------------------


def test_spec_defaults() -> None:
    spec = parse_schedule_spec({k: v for k, v in VALID.items() if k != "timezone"})

    assert spec.timezone == "UTC"
    assert spec.enabled is True
    assert spec.overlap is Overlap.SKIP
    assert spec.missed is Missed.RUN_ONCE
    assert spec.job["seeds"] == ["http://docs.test/"]
    assert spec.job["max_pages"] == 10_000


def test_spec_strips_name_and_cron() -> None:
    spec = parse_schedule_spec({**VALID, "name": "  docs  ", "cron": " @daily "})

    assert spec.name == "docs"
    assert spec.cron == "@daily"


def test_spec_takes_every_field() -> None:
    spec = parse_schedule_spec(
        {**VALID, "enabled": False, "overlap": "allow", "missed": "skip"}
    )

    assert spec.enabled is False
    assert spec.overlap is Overlap.ALLOW
    assert spec.missed is Missed.SKIP


@pytest.mark.parametrize("field", ["name", "cron", "job"])
def test_required_field_named(field: str) -> None:
    error = rejected({k: v for k, v in VALID.items() if k != field})

    assert field_of(error) == field
    assert "is required, for example" in str(error)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"nmae": "x"}, "nmae", "unknown field 'nmae'"),
        ({"name": 5}, "name", "name must be a string"),
        ({"name": "   "}, "name", "must not be blank"),
        ({"name": "a" * 201}, "name", "at most 200"),
        ({"name": "two\nlines"}, "name", "control characters"),
        ({"cron": 30}, "cron", "cron must be a string"),
        ({"cron": None}, "cron", "cron must be a string"),
        ({"timezone": 1}, "timezone", "must be an IANA time zone name"),
        ({"job": ["http://docs.test/"]}, "job", "job must be an object"),
        ({"job": "http://docs.test/"}, "job", "job must be an object"),
        ({"enabled": "yes"}, "enabled", "enabled must be true or false"),
        ({"enabled": 1}, "enabled", "enabled must be true or false"),
        ({"overlap": "never"}, "overlap", "'skip' or 'allow', got 'never'"),
        ({"overlap": None}, "overlap", "'skip' or 'allow', got None"),
        ({"missed": "catch_up"}, "missed", "'run_once' or 'skip'"),
        ({"missed": ["skip"]}, "missed", "'run_once' or 'skip'"),
    ],
)
def test_bad_field_named(changes: dict[str, Any], field: str, words: str) -> None:
    error = rejected({**VALID, **changes})

    assert isinstance(error, InvalidScheduleError)
    assert error.field == field
    assert words in error.message


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"seeds": ["http://docs.test/"], "max_pages": 0}, "job.max_pages"),
        ({"seeds": ["ftp://docs.test/"]}, "job.seeds"),
        ({"seeds": ["http://docs.test/"], "max_page": 3}, "job.max_page"),
        ({"max_pages": 3}, "job.seeds"),
        ({"seeds": "http://docs.test/"}, "job.seeds"),
        ({"seeds": ["http://docs.test/"], "obey_robots": "no"}, "job.obey_robots"),
    ],
)
def test_bad_job_option_named(job: dict[str, Any], field: str) -> None:
    error = rejected({**VALID, "job": job})

    assert isinstance(error, InvalidOptionError)
    assert error.option == field


def test_changes_keep_other_fields() -> None:
    current = parse_schedule_spec({**VALID, "overlap": "allow"})

    changed = parse_schedule_spec({"cron": "@hourly"}, current=current)

    assert changed.cron == "@hourly"
    assert changed.name == current.name
    assert changed.timezone == NEW_YORK
    assert changed.overlap is Overlap.ALLOW
    assert changed.job == current.job


def test_changes_validated_like_new() -> None:
    current = parse_schedule_spec(VALID)

    error = rejected({"timezone": "Nowhere/Land"}, current=current)

    assert field_of(error) == "timezone"

"""Cron schedules: validating what a client sends, and computing when one is due.

Cron expressions are parsed and stepped by cronsim, never by hand. cronsim
follows Debian's cron, daylight-saving changes included:

* A schedule whose minute and hour fields are fixed (``30 2 * * *``) keeps
  to wall-clock time. When the clocks spring forward past its time, it runs
  at the first minute after the jump: ``30 2 * * *`` in America/New_York on
  2025-03-09 runs at 03:00 EDT (07:00 UTC). When the clocks fall back and its
  time happens twice, it runs at the first occurrence only: ``30 1 * * *`` on
  2025-11-02 runs at 01:30 EDT (05:30 UTC), not again at 01:30 EST.
* A schedule whose minute or hour field starts with ``*`` (``@hourly``,
  ``*/15 * * * *``) follows elapsed time. The repeated hour runs twice, and
  the skipped hour not at all, so ``@hourly`` runs 25 times on the fall-back
  day and 23 times on the spring-forward day.

:class:`Timetable` returns due times as whole epoch seconds, so a stored next
run time is an exact instant in UTC.
"""

from __future__ import annotations

import functools
import math
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cronsim import CronSim, CronSimError

from crawler.errors import InvalidOptionError, InvalidScheduleError
from crawler.options import CrawlOptions
from crawler.store.schedules import Missed, Overlap, ScheduleSpec

CRON_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
"""The nicknames of cron(5), with the five fields each one stands for."""

SCHEDULE_FIELDS = ("name", "cron", "timezone", "job", "enabled", "overlap", "missed")
REQUIRED_FIELDS = ("name", "cron", "job")
DEFAULT_TIMEZONE = "UTC"
MAX_NAME_CHARS = 200
MAX_CRON_CHARS = 200

CRON_HELP = (
    "use five fields, minute hour day-of-month month day-of-week, such as "
    "'30 2 * * *' (02:30 every day) or '0 9 * * MON-FRI', or one of "
    "@hourly, @daily, @weekly, @monthly"
)
EXAMPLES = {
    "name": "'nightly docs crawl'",
    "cron": "'30 2 * * *'",
    "timezone": "'Europe/Berlin' or 'UTC'",
    "job": '{"seeds": ["https://docs.example.org/"], "max_pages": 500}',
    "enabled": "true",
    "overlap": "'skip' or 'allow'",
    "missed": "'run_once' or 'skip'",
}

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


_NOT_ZONE_NAMES = frozenset({"localtime", "posixrules"})
"""Files that zoneinfo.available_timezones() lists on Debian but that name no
IANA zone. 'localtime' is the host's own zone, which can differ between
replicas."""


@functools.cache
def zone_names() -> tuple[str, ...]:
    """Return every IANA zone name that the system's or tzdata's database has,
    sorted."""
    return tuple(sorted(zoneinfo.available_timezones() - _NOT_ZONE_NAMES))


@functools.cache
def _zone_name_set() -> frozenset[str]:
    return frozenset(zone_names())


def parse_timezone(value: object) -> zoneinfo.ZoneInfo:
    """Return the zone that an IANA name names, or raise InvalidScheduleError."""
    if not isinstance(value, str):
        raise InvalidScheduleError(
            "timezone",
            f"timezone must be an IANA time zone name as a string, such as "
            f"{EXAMPLES['timezone']}, got {value!r}",
        )
    # The name list, not ZoneInfo() alone, because ZoneInfo opens any file
    # under the zone folders, such as 'localtime'.
    if value not in _zone_name_set():
        raise InvalidScheduleError(
            "timezone",
            f"timezone {value!r} is not an IANA time zone name; use one such as "
            f"{EXAMPLES['timezone']}",
        )
    return zoneinfo.ZoneInfo(value)


def cron_fields(value: object) -> str:
    """Return the five fields that ``value`` stands for.

    Raises InvalidScheduleError unless it is a valid five-field expression or
    a known nickname.
    """
    if not isinstance(value, str):
        raise InvalidScheduleError(
            "cron", f"cron must be a string, got {value!r}; {CRON_HELP}"
        )
    text = value.strip()
    if not text:
        raise InvalidScheduleError("cron", f"cron must not be empty; {CRON_HELP}")
    if len(text) > MAX_CRON_CHARS:
        raise InvalidScheduleError(
            "cron",
            f"cron must be at most {MAX_CRON_CHARS} characters, got {len(text)}",
        )

    if text.startswith("@"):
        expression = CRON_ALIASES.get(text.lower())
        if expression is None:
            raise InvalidScheduleError(
                "cron", f"cron nickname {text!r} is not supported; {CRON_HELP}"
            )
        return expression

    count = len(text.split())
    if count != 5:
        raise InvalidScheduleError(
            "cron",
            f"cron {text!r} has {count} fields, not 5; {CRON_HELP}",
        )
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        # cronsim names the field at fault, as in "Bad day-of-month".
        raise InvalidScheduleError(
            "cron", f"cron {text!r} is invalid ({exc}); {CRON_HELP}"
        ) from exc
    return text


@dataclass(frozen=True, slots=True)
class Timetable:
    """When a schedule is due: its cron fields in its time zone."""

    expression: str
    zone: zoneinfo.ZoneInfo

    @classmethod
    def parse(cls, cron: object, timezone: object) -> Timetable:
        """Validate both values. InvalidScheduleError names the one at fault."""
        return cls(cron_fields(cron), parse_timezone(timezone))

    def next_after(self, instant: float) -> int | None:
        """Return the first due time strictly after ``instant``, in epoch
        seconds, or None when the expression matches nothing in 50 years."""
        start = datetime.fromtimestamp(math.floor(instant), self.zone)
        times = CronSim(self.expression, start)
        # cronsim steps a fixed-time schedule in local wall time, so from an
        # instant in the second pass of a repeated hour it can return that
        # hour's first pass, which is earlier. Skipping those keeps each
        # instant once, and ends within one repeated hour of matches.
        while True:
            try:
                candidate = next(times)
            except StopIteration:
                return None
            due_at = int(candidate.timestamp())
            if due_at > instant:
                return due_at

    def upcoming(self, after: float, count: int) -> list[int]:
        """Return up to ``count`` due times strictly after ``after``."""
        times: list[int] = []
        instant = after
        while len(times) < count:
            due_at = self.next_after(instant)
            if due_at is None:
                break
            times.append(due_at)
            instant = due_at
        return times

    def count_due(self, first: int, until: float, cap: int) -> int:
        """Count the due times from ``first`` to ``until``, both included, up
        to ``cap``; ``first`` must be a due time."""
        count = 1
        instant: float = first
        while count < cap:
            due_at = self.next_after(instant)
            if due_at is None or due_at > until:
                break
            count += 1
            instant = due_at
        return count

    def local_time(self, instant: int) -> datetime:
        return datetime.fromtimestamp(instant, self.zone)

    def describe(self) -> str:
        """Return the expression in English, such as 'At 02:30 every day'."""
        return CronSim(self.expression, datetime(2000, 1, 1)).explain()


def parse_schedule_spec(
    data: Mapping[str, Any], *, current: ScheduleSpec | None = None
) -> ScheduleSpec:
    """Validate a schedule body: a whole one, or changes to ``current``.

    Without ``current``, name, cron and job are required. The job template is
    validated as POST /api/v1/jobs validates options, and stored with every
    default filled in. Raises InvalidScheduleError naming the field, or
    InvalidOptionError naming ``job.OPTION`` for a bad crawl option.
    """
    unknown = sorted(set(data) - set(SCHEDULE_FIELDS))
    if unknown:
        raise InvalidScheduleError(
            unknown[0],
            f"unknown field {unknown[0]!r}; a schedule has the fields "
            + ", ".join(SCHEDULE_FIELDS),
        )
    if current is None:
        for name in REQUIRED_FIELDS:
            if name not in data:
                raise InvalidScheduleError(
                    name, f"{name} is required, for example {EXAMPLES[name]}"
                )

    name = _parse_name(data["name"]) if "name" in data else _current(current).name
    cron = data["cron"] if "cron" in data else _current(current).cron
    timezone = (
        data["timezone"]
        if "timezone" in data
        else DEFAULT_TIMEZONE
        if current is None
        else current.timezone
    )
    Timetable.parse(cron, timezone)
    job = _parse_job(data["job"]) if "job" in data else _current(current).job

    return ScheduleSpec(
        name=name,
        cron=cron.strip(),
        timezone=timezone,
        job=job,
        enabled=_parse_boolean(
            "enabled", data, True if current is None else current.enabled
        ),
        overlap=Overlap(
            _parse_choice(
                "overlap", data, Overlap, current.overlap if current else Overlap.SKIP
            )
        ),
        missed=Missed(
            _parse_choice(
                "missed", data, Missed, current.missed if current else Missed.RUN_ONCE
            )
        ),
    )


def _current(current: ScheduleSpec | None) -> ScheduleSpec:
    if current is None:
        raise AssertionError("a required field was not checked")
    return current


def _parse_name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidScheduleError(
            "name",
            f"name must be a string, such as {EXAMPLES['name']}, got {value!r}",
        )
    name = value.strip()
    if not name:
        raise InvalidScheduleError(
            "name", f"name must not be blank; use one such as {EXAMPLES['name']}"
        )
    if len(name) > MAX_NAME_CHARS:
        raise InvalidScheduleError(
            "name",
            f"name must be at most {MAX_NAME_CHARS} characters, got {len(name)}",
        )
    if _CONTROL_CHARACTERS.search(name):
        raise InvalidScheduleError(
            "name", "name must be one line without control characters"
        )
    return name


def _parse_job(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidScheduleError(
            "job",
            "job must be an object with the crawl options that POST /api/v1/jobs "
            f"takes, for example {EXAMPLES['job']}",
        )
    try:
        options = CrawlOptions.from_mapping(value)
    except InvalidOptionError as exc:
        raise InvalidOptionError(f"job.{exc.option}", exc.message) from exc
    return options.to_mapping()


def _parse_boolean(name: str, data: Mapping[str, Any], default: bool) -> bool:
    if name not in data:
        return default
    value = data[name]
    if not isinstance(value, bool):
        raise InvalidScheduleError(name, f"{name} must be true or false, got {value!r}")
    return value


def _parse_choice(
    name: str,
    data: Mapping[str, Any],
    choices: type[Overlap] | type[Missed],
    default: str,
) -> str:
    if name not in data:
        return default
    value = data[name]
    allowed = [choice.value for choice in choices]
    if value not in allowed:
        raise InvalidScheduleError(
            name,
            f"{name} must be {' or '.join(repr(a) for a in allowed)}, got {value!r}",
        )
    return str(value)

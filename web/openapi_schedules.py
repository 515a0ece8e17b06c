"""The schedules' part of the OpenAPI document: schemas, parameters and paths.

:func:`web.openapi.build_openapi_document` merges these into the document,
so ``tests/web/test_openapi.py`` checks them like every other route.
"""

from __future__ import annotations

from typing import Any

from crawler.schedule import DEFAULT_TIMEZONE, MAX_NAME_CHARS
from crawler.store.base import JobState
from crawler.store.schedules import Missed, Overlap, RunOutcome, RunTrigger
from web.api.schedules import DEFAULT_SCHEDULES_LIMIT, MAX_SCHEDULES_LIMIT
from web.openapi import (
    _NEXT_CURSOR,
    _SEE_OTHER,
    _TIME,
    _html,
    _json,
    _json_body,
    _nullable,
    _operation,
    _param,
    _problem,
    _ref,
)
from web.paths import API_PREFIX
from web.schedule_view import NEXT_RUNS, RUNS_SHOWN

_CRON = {
    "type": "string",
    "description": "Five cron fields (minute hour day-of-month month "
    "day-of-week, as in Debian's cron, with names such as MON and JAN, L and "
    "#) or @hourly, @daily, @weekly, @monthly, @yearly. A fixed-time schedule "
    "that a daylight-saving change skips runs at the first minute after the "
    "change, and one that the change repeats runs once.",
    "examples": ["30 2 * * *", "@hourly"],
}

_SPEC_PROPERTIES: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS},
    "cron": _CRON,
    "timezone": {
        "type": "string",
        "description": "IANA time zone name that the cron fields are read in.",
        "default": DEFAULT_TIMEZONE,
        "examples": ["Europe/Berlin"],
    },
    "enabled": {"type": "boolean", "default": True},
    "overlap": {
        "type": "string",
        "enum": [choice.value for choice in Overlap],
        "default": Overlap.SKIP.value,
        "description": "skip: a due time passes without a job while an earlier "
        "job of the schedule is queued, running or paused. allow: it starts one.",
    },
    "missed": {
        "type": "string",
        "enum": [choice.value for choice in Missed],
        "default": Missed.RUN_ONCE.value,
        "description": "What due times do that no scheduler saw within 60 s, "
        "as after downtime. run_once: one job starts at once for all of them. "
        "skip: they are recorded as missed and the next due time waits.",
    },
}

_RUN = {
    "type": "object",
    "description": "The decision for one due time, or one run now request.",
    "properties": {
        "due_at": {**_TIME, "description": "In the schedule's time zone."},
        "decided_at": _TIME,
        "trigger": {"type": "string", "enum": [t.value for t in RunTrigger]},
        "outcome": {"type": "string", "enum": [o.value for o in RunOutcome]},
        "missed_count": {
            "type": "integer",
            "minimum": 0,
            "description": "Due times that passed without a scheduler, this "
            "one included; 0 for a run on time.",
        },
        "job_id": _nullable({"type": "string"}),
        "job_state": _nullable(
            {"type": "string", "enum": [state.value for state in JobState]}
        ),
    },
    "required": [
        "due_at",
        "decided_at",
        "trigger",
        "outcome",
        "missed_count",
        "job_id",
        "job_state",
    ],
    "additionalProperties": False,
}

_SCHEDULE_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "cron": {"type": "string"},
    "description": {
        "type": "string",
        "description": "The cron expression in English.",
    },
    "timezone": {"type": "string"},
    "job": _ref("CrawlOptions"),
    "enabled": {"type": "boolean"},
    "overlap": _SPEC_PROPERTIES["overlap"],
    "missed": _SPEC_PROPERTIES["missed"],
    "next_run_at": _nullable(_TIME),
    "next_runs": {
        "type": "array",
        "items": _TIME,
        "maxItems": NEXT_RUNS,
        "description": "The next due times in the schedule's time zone, "
        "starting with next_run_at; empty while disabled.",
    },
    "last_run": _nullable(_ref("ScheduleRun")),
    "created_at": _TIME,
    "updated_at": _TIME,
}


def schedule_schemas() -> dict[str, Any]:
    input_properties = {**_SPEC_PROPERTIES, "job": _ref("CrawlOptionsInput")}
    return {
        "ScheduleInput": {
            "type": "object",
            "description": "A new schedule. job takes what POST /api/v1/jobs "
            "takes; errors in it name job.OPTION.",
            "properties": input_properties,
            "required": ["name", "cron", "job"],
            "additionalProperties": False,
        },
        "ScheduleUpdate": {
            "type": "object",
            "description": "The fields to change; job replaces the whole template.",
            "properties": input_properties,
            "additionalProperties": False,
        },
        "ScheduleRun": _RUN,
        "Schedule": {
            "type": "object",
            "properties": _SCHEDULE_PROPERTIES,
            "required": list(_SCHEDULE_PROPERTIES),
            "additionalProperties": False,
        },
        "ScheduleDetail": {
            "type": "object",
            "description": "A schedule with its latest runs.",
            "properties": {
                **_SCHEDULE_PROPERTIES,
                "runs": {
                    "type": "array",
                    "items": _ref("ScheduleRun"),
                    "maxItems": RUNS_SHOWN,
                    "description": "The latest runs, newest due time first.",
                },
            },
            "required": [*_SCHEDULE_PROPERTIES, "runs"],
            "additionalProperties": False,
        },
        "ScheduleList": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": _ref("Schedule")},
                "next_cursor": _NEXT_CURSOR,
            },
            "required": ["items", "next_cursor"],
            "additionalProperties": False,
        },
        "ScheduleForm": {
            "type": "object",
            "description": "The status page's schedule form. enabled is a "
            "checkbox: sent means true. Crawl options without a field of their "
            "own go in other_options as a JSON object.",
            "properties": {
                "name": {"type": "string"},
                "cron": {"type": "string"},
                "timezone": {"type": "string"},
                "enabled": {"type": "string"},
                "overlap": {"type": "string"},
                "missed": {"type": "string"},
                "seeds": {"type": "string", "description": "One URL per line."},
                "max_pages": {"type": "string"},
                "max_depth": {"type": "string"},
                "concurrency": {"type": "string"},
                "scope": {"type": "string"},
                "allowed_domains": {"type": "string"},
                "other_options": {"type": "string"},
            },
            "required": ["name", "cron"],
        },
    }


def schedule_parameters() -> dict[str, Any]:
    return {
        "ScheduleId": {
            "name": "schedule_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
        },
        "SchedulesLimit": {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_SCHEDULES_LIMIT,
                "default": DEFAULT_SCHEDULES_LIMIT,
            },
        },
    }


_SCHEDULE_LOCATION = {
    "description": "The schedule's URL.",
    "schema": {"type": "string", "examples": [f"{API_PREFIX}/schedules/abc123"]},
}
_JOB_LOCATION = {
    "description": "The job's URL.",
    "schema": {"type": "string", "examples": [f"{API_PREFIX}/jobs/abc123"]},
}
_BODY_ERRORS = {
    "400": _problem("BadRequest"),
    "403": _problem("Forbidden"),
    "413": _problem("ContentTooLarge"),
    "415": _problem("UnsupportedMediaType"),
    "422": _problem("UnprocessableContent"),
}


def _enabled_operation(enabled: bool) -> dict[str, Any]:
    action = "enable" if enabled else "disable"
    description = (
        "Sets the next run time to the first due time after now."
        if enabled
        else "Clears the next run time; due times while disabled are not missed."
    )
    return {
        "post": _operation(
            f"{action}Schedule",
            f"{action.capitalize()} a schedule",
            "schedules",
            {
                "200": _json("The schedule.", _ref("ScheduleDetail")),
                "403": _problem("Forbidden"),
                "404": _problem("NotFound"),
            },
            description=f"{description} Does nothing to a schedule that is "
            f"{action}d already.",
            parameters=[_param("ScheduleId")],
        )
    }


def schedule_api_paths() -> dict[str, Any]:
    base = f"{API_PREFIX}/schedules"
    return {
        base: {
            "post": _operation(
                "createSchedule",
                "Create a schedule",
                "schedules",
                {
                    "201": _json(
                        "The new schedule.",
                        _ref("ScheduleDetail"),
                        Location=_SCHEDULE_LOCATION,
                    ),
                    **_BODY_ERRORS,
                },
                description="Its first run is the first due time after now. "
                "Every invalid field gets a 422 problem whose field names it: "
                "invalid-schedule for the schedule's own fields, invalid-option "
                "with field job.OPTION for the job template. An Idempotency-Key "
                "header gets a 400 problem: schedules are not created "
                "idempotently, so a retry after a timeout should list them first.",
                request_body=_json_body("ScheduleInput"),
            ),
            "get": _operation(
                "listSchedules",
                "List schedules, newest first",
                "schedules",
                {
                    "200": _json("A page of schedules.", _ref("ScheduleList")),
                    "400": _problem("BadRequest"),
                },
                parameters=[_param("SchedulesLimit"), _param("Cursor")],
            ),
        },
        f"{base}/{{schedule_id}}": {
            "get": _operation(
                "getSchedule",
                "Read a schedule with its next run times and latest runs",
                "schedules",
                {
                    "200": _json("The schedule.", _ref("ScheduleDetail")),
                    "404": _problem("NotFound"),
                },
                parameters=[_param("ScheduleId")],
            ),
            "patch": _operation(
                "updateSchedule",
                "Change some fields of a schedule",
                "schedules",
                {
                    "200": _json("The updated schedule.", _ref("ScheduleDetail")),
                    "404": _problem("NotFound"),
                    **_BODY_ERRORS,
                },
                description="A new cron, timezone or enabled value sets the "
                "next run time to the first due time after now; other changes "
                "keep it.",
                parameters=[_param("ScheduleId")],
                request_body=_json_body("ScheduleUpdate"),
            ),
            "delete": _operation(
                "deleteSchedule",
                "Delete a schedule and its runs",
                "schedules",
                {
                    "204": {"description": "Deleted."},
                    "403": _problem("Forbidden"),
                    "404": _problem("NotFound"),
                },
                description="The jobs it started stay, with their schedule_id.",
                parameters=[_param("ScheduleId")],
            ),
        },
        f"{base}/{{schedule_id}}/enable": _enabled_operation(True),
        f"{base}/{{schedule_id}}/disable": _enabled_operation(False),
        f"{base}/{{schedule_id}}/run": {
            "post": _operation(
                "runSchedule",
                "Start a job from the schedule now",
                "schedules",
                {
                    "201": _json("The new job.", _ref("Job"), Location=_JOB_LOCATION),
                    "200": _json(
                        "The job an earlier request with the same "
                        "Idempotency-Key started.",
                        _ref("Job"),
                        Location=_JOB_LOCATION,
                    ),
                    "400": _problem("BadRequest"),
                    "403": _problem("Forbidden"),
                    "404": _problem("NotFound"),
                    "422": _problem("UnprocessableContent"),
                },
                description="Works on a disabled schedule too, and ignores the "
                "overlap policy. The next run time stays as it is. Takes no "
                "body (an empty JSON object is accepted): the job uses the "
                "schedule's template.",
                parameters=[_param("ScheduleId"), _param("IdempotencyKey")],
            )
        },
    }


def _page_action(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "post": _operation(
            operation_id,
            summary,
            "html",
            {
                "303": _SEE_OTHER,
                "403": _problem("HtmlError"),
                "404": _problem("HtmlError"),
            },
            parameters=[_param("ScheduleId")],
        )
    }


def schedule_page_paths() -> dict[str, Any]:
    form_body = {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _ref("ScheduleForm")}
        },
    }
    return {
        "/schedules": {
            "get": _operation(
                "schedulesPage",
                "Status page: schedules and the form to create one",
                "html",
                {"200": _html("The page.")},
                parameters=[_param("Cursor")],
            ),
            "post": _operation(
                "createScheduleForm",
                "Create a schedule from the status page's form",
                "html",
                {
                    "303": _SEE_OTHER,
                    "403": _problem("HtmlError"),
                    "422": _html("The form again, with the error next to its field."),
                },
                request_body=form_body,
            ),
        },
        "/schedules/{schedule_id}": {
            "get": _operation(
                "schedulePage",
                "A schedule's status page, with its edit form",
                "html",
                {"200": _html("The page."), "404": _problem("HtmlError")},
                parameters=[_param("ScheduleId")],
            ),
            "post": _operation(
                "updateScheduleForm",
                "Replace a schedule with the edit form's values",
                "html",
                {
                    "303": _SEE_OTHER,
                    "403": _problem("HtmlError"),
                    "404": _problem("HtmlError"),
                    "422": _html("The page again, with the error next to its field."),
                },
                parameters=[_param("ScheduleId")],
                request_body=form_body,
            ),
        },
        "/schedules/{schedule_id}/enable": _page_action(
            "enableScheduleForm", "Enable a schedule from its status page"
        ),
        "/schedules/{schedule_id}/disable": _page_action(
            "disableScheduleForm", "Disable a schedule from its status page"
        ),
        "/schedules/{schedule_id}/run": _page_action(
            "runScheduleForm", "Start a job from a schedule and show the job's page"
        ),
        "/schedules/{schedule_id}/delete": _page_action(
            "deleteScheduleForm", "Delete a schedule from its status page"
        ),
    }

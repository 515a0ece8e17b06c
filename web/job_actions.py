"""Job state changes requested by a client: cancel, pause and resume.

The API and the status page's buttons share these rules. The store applies
each change only if the job is still in one of the allowed states, so a
request that races with the worker either wins or gets a 409 naming the
state the job is in now.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from crawler.store.base import Job, JobState, Store
from web.problems import InvalidStateError, NotFoundError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobAction:
    """A client request that moves a job to ``target`` from one of ``allowed_from``."""

    name: str
    target: JobState
    allowed_from: frozenset[JobState]


JOB_ACTIONS: dict[str, JobAction] = {
    action.name: action
    for action in (
        JobAction(
            "cancel",
            JobState.CANCELLED,
            frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSED}),
        ),
        JobAction(
            "pause", JobState.PAUSED, frozenset({JobState.QUEUED, JobState.RUNNING})
        ),
        JobAction("resume", JobState.QUEUED, frozenset({JobState.PAUSED})),
    )
}


def job_not_found(job_id: str) -> NotFoundError:
    return NotFoundError(
        f"No job has id {job_id!r}; list jobs with GET /api/v1/jobs.",
        field="job_id",
    )


async def apply_job_action(
    store: Store, job_id: str, action: JobAction, *, request_id: str
) -> Job:
    """Apply the action and return the updated job.

    Raises NotFoundError for an unknown job and InvalidStateError when the
    job's current state does not allow the action.
    """
    job = await store.transition(
        job_id, action.target, allowed_from=action.allowed_from
    )
    if job is not None:
        logger.info(
            "job %s: %s -> %s (request_id=%s)",
            job_id,
            action.name,
            job.state,
            request_id,
        )
        return job

    current = await store.get_job(job_id)
    if current is None:
        raise job_not_found(job_id)
    allowed = ", ".join(sorted(state.value for state in action.allowed_from))
    raise InvalidStateError(
        f"Cannot {action.name} job {job_id} because it is {current.state.value}; "
        f"{action.name} works only on a job that is {allowed}.",
        extra={"state": current.state.value},
    )

"""The course agent's handler of a bulk enrolment job's chunk (the `enrollment_job` course
command, from POST /api/v1/courses/{courseId}/enrollments/batch; domain/jobs.py).

Each row is one enrolment, decided and staged exactly as a single enrolment is
(enrollment_handlers.enrol), in file order, with an input id derived from the job and
the row. The job's record in the table ("#job:<job id>") keeps the counts and the next
row to apply, in the same unit as the rows' effects: a chunk sent again, or redelivered
after a crash, applies no row twice, and a crash between chunks loses none (the chunks
not yet applied are still on course-commands). The chunk's outcomes go to the job
progress topic for the mirror (the job routes read it); the first chunk is answered.
"""

from __future__ import annotations

import logging
from typing import Any

from course_management.domain.commands import CourseCommand
from course_management.domain.enrollment import EnrollInput
from course_management.domain.jobs import (
    JobRecord,
    job_view,
    new_job,
    outcome_of,
    row_input_id,
)
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind, Reply
from course_management.domain.times import rfc3339
from course_management.infra.metrics import JOB_ROWS
from course_management.messages import job_progress
from course_management.streams.batch import Batch
from course_management.streams.enrollment_handlers import enrol
from course_management.streams.inputs import Input, message_of, stage_answer
from course_management.streams.marks import marks_after
from course_management.tables.keys import job_key

log = logging.getLogger(__name__)


async def enrollment_job(batch: Batch, item: Input) -> None:
    command = message_of(item, CourseCommand)
    payload: dict[str, Any] = command.payload
    job_id, course_id = str(payload["job_id"]), command.course_id
    at = rfc3339(command.occurred_at)
    found: JobRecord | None = batch.get(job_key(job_id))
    job: JobRecord = found or new_job(
        job_id, course_id, command.actor.id, int(payload["total"]), at, str(payload["job_hash"])
    )
    if job["payload_hash"] != payload["job_hash"] or job["creator"] != command.actor.id:
        refusal = Refusal(
            RefusalKind.INVALID,
            "this Idempotency-Key names another job",
            ({"field": "Idempotency-Key", "message": "used before for another file"},),
        )
        stage_answer(batch, item, Reply.refusing(refusal))
        return
    first = int(payload["first_row"])
    outcomes: list[dict[str, Any]] = []
    counts = dict(job["counts"])
    next_row = job["next_row"]
    for offset, (user_id, invalid) in enumerate(payload["rows"]):
        row = first + offset
        if row < next_row:  # applied before: a chunk sent again, or redelivered
            continue
        outcome: str
        problem: str | None
        if invalid:
            outcome, problem = "invalid", "validation"
        else:
            enroll = EnrollInput(
                row_input_id(job_id, row), course_id, str(user_id), command.occurred_at, "job"
            )
            try:
                outcome, problem = outcome_of(await enrol(batch, enroll))
            except Exception:  # a bug deciding one row: that row only (it staged nothing)
                log.exception("a job's row failed", extra={"job_id": job_id, "row": row})
                outcome, problem = "refused", RefusalKind.FAILED.value
        counts[outcome] += 1
        JOB_ROWS.labels(outcome).inc()
        outcomes.append(
            {"row": row, "user_id": str(user_id), "outcome": outcome, "problem_type": problem}
        )
        next_row = row + 1
    if outcomes or found is None:
        job = {**job, "counts": counts, "next_row": next_row}
        if next_row > job["total"] and job["finished_at"] is None:
            job["finished_at"] = at
        batch.put(job_key(job_id), job)
        record = job_progress.encode(job, outcomes)
        batch.stage_records([(job_progress.TOPIC, course_id, job_progress.SUBJECT, record)])
    reply = Reply(Outcome.CREATED if found is None else Outcome.UNCHANGED, job_view(job))
    stage_answer(batch, item, reply, marks_after(batch, course_id))

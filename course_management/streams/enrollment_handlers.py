"""The course agent's handlers for enrollment inputs: user_enrolled, item_progress, and
the cancel_enrollment command (from the DELETE route).

Each decides (pure domain) against the batch's view of the table, next to the course,
one at a time (so seats are exact under any concurrency), and stages the effects: the
enrollment events (enrollment-events), the course's catalog entry when the seat count
changed, the enrollment and seats records, the seat count and enrollment for Redis, the
reply with its consistency marks, and, for a refused input from another service, its
dead letter.
"""

from __future__ import annotations

from dataclasses import replace

from course_management.domain.commands import CourseCommand
from course_management.domain.enrollment import (
    CancelInput,
    EnrollInput,
    EnrollmentDecision,
    ProgressInput,
)
from course_management.domain.outcomes import Reply
from course_management.domain.records import course_of
from course_management.domain.reports import decide_progress
from course_management.domain.seats import decide_cancel, decide_enroll, wants_admission
from course_management.domain.timers import learner_dues
from course_management.infra.dead_letters import REFUSED
from course_management.streams.batch import Batch
from course_management.streams.enrollment_effects import stage_enrollment_change
from course_management.streams.inputs import Input, message_of, stage_answer
from course_management.streams.marks import marks_after
from course_management.streams.timer import stage_due
from course_management.streams.waitlist import fill_seats, position_of


async def user_enrolled(batch: Batch, item: Input) -> None:
    enroll = message_of(item, EnrollInput)
    enroll = replace(enroll, occurred_at=item.moment(enroll.occurred_at))
    decision = await enrol(batch, enroll)
    await _stage_refused(batch, item, decision)
    if item.from_request:  # a record from another service: nobody waits for an answer
        marks = marks_after(batch, enroll.course_id, enroll.user_id)
        stage_answer(batch, item, _reply(decision), marks)


async def enrol(batch: Batch, enroll: EnrollInput) -> EnrollmentDecision:
    """One enrolment, decided and staged: the rules of every enrolment, from another
    service, the API or a bulk job's row (streams/job_handlers.py)."""
    course_id = enroll.course_id
    course = course_of(batch.course_record(course_id))
    if wants_admission(course, batch.seats(course_id)):  # those waiting go first
        await fill_seats(batch, course_id, enroll.event_id, enroll.occurred_at)
    required = (course or {}).get("prerequisite_course_ids") or ()
    record = batch.enrollment(course_id, enroll.user_id)
    waits = (record or {}).get("status") == "waitlisted"
    ticket = (record or {}).get("wait_ticket") if waits else None
    decision = decide_enroll(
        course,
        batch.seats(course_id),
        record,
        enroll,
        await batch.completed_courses(enroll.user_id, required),
        None if ticket is None else position_of(batch, course_id, int(ticket)),
    )
    stage_enrollment_change(batch, course_id, enroll.user_id, decision)
    if decision.events and decision.enrollment is not None and course is not None:
        for due in learner_dues(course, decision.enrollment, enroll.occurred_at):
            stage_due(batch, due)
    return decision


async def item_progress(batch: Batch, item: Input) -> None:
    progress = message_of(item, ProgressInput)
    progress = replace(progress, occurred_at=item.moment(progress.occurred_at))
    course = course_of(batch.course_record(progress.course_id))
    decision = decide_progress(
        course, batch.enrollment(progress.course_id, progress.user_id), progress
    )
    stage_enrollment_change(batch, progress.course_id, progress.user_id, decision)
    await _stage_refused(batch, item, decision)
    if item.from_request:
        marks = marks_after(batch, progress.course_id, progress.user_id)
        stage_answer(batch, item, _reply(decision, progress_only=True), marks)


async def cancel_enrollment(batch: Batch, item: Input) -> None:
    """A `cancel_enrollment` course command (from the DELETE route)."""
    command = message_of(item, CourseCommand)
    cancel = CancelInput(
        event_id=command.command_id,
        course_id=command.course_id,
        user_id=str(command.payload.get("user_id", "")),
        occurred_at=command.occurred_at,
    )
    decision = decide_cancel(
        course_of(batch.course_record(cancel.course_id)),
        batch.seats(cancel.course_id),
        batch.enrollment(cancel.course_id, cancel.user_id),
        cancel,
    )
    stage_enrollment_change(batch, cancel.course_id, cancel.user_id, decision)
    await fill_seats(batch, cancel.course_id, cancel.event_id, cancel.occurred_at)
    stage_answer(
        batch, item, _reply(decision), marks_after(batch, cancel.course_id, cancel.user_id)
    )


async def _stage_refused(batch: Batch, item: Input, decision: EnrollmentDecision) -> None:
    """A refused input from another service is kept on its source topic's dead-letter
    topic, as it was there (CONTRACT §4), under the reason code `refused`. A refused
    request of this service's API is not: its caller has the answer (a 409)."""
    if decision.refusal is None or item.from_request:
        return
    kind = decision.refusal.kind.value
    await batch.stage_dead_letter(
        item.source_topic, item.key, item.raw, f"{kind}: {decision.refusal.detail}", REFUSED
    )


def _reply(decision: EnrollmentDecision, progress_only: bool = False) -> Reply:
    if decision.refusal is not None:
        return Reply.refusing(decision.refusal)
    assert decision.outcome is not None
    body = decision.reply_enrollment
    if progress_only and body is not None:
        body = body["progress"]
    return Reply(decision.outcome, body)

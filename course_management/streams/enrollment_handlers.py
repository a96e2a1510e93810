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
    decide_cancel,
    decide_enroll,
    decide_progress,
    seat_change,
)
from course_management.domain.outcomes import Reply
from course_management.domain.records import course_of
from course_management.domain.timers import learner_dues
from course_management.infra.dead_letters import REFUSED
from course_management.infra.metrics import ENROLLMENTS_APPLIED, MILESTONES
from course_management.messages import completion_entry, enrollment_event, learner_milestone
from course_management.streams.batch import Batch
from course_management.streams.inputs import Input, message_of, stage_answer
from course_management.streams.marks import marks_after
from course_management.streams.timer import stage_due

_APPLIED = {  # the counter of each event type, looked up once
    kind: ENROLLMENTS_APPLIED.labels(kind)
    for kind in (
        "enrollment_created",
        "enrollment_cancelled",
        "progress_updated",
        "course_completed",
    )
}


async def user_enrolled(batch: Batch, item: Input) -> None:
    enroll = message_of(item, EnrollInput)
    enroll = replace(enroll, occurred_at=item.moment(enroll.occurred_at))
    course = course_of(batch.course_record(enroll.course_id))
    required = (course or {}).get("prerequisite_course_ids") or ()
    decision = decide_enroll(
        course,
        batch.seats(enroll.course_id)["count"],
        batch.enrollment(enroll.course_id, enroll.user_id),
        enroll,
        await batch.completed_courses(enroll.user_id, required),
    )
    stage_enrollment_change(batch, enroll.course_id, enroll.user_id, decision)
    if decision.enrollment is not None and course is not None:  # the learner's own days
        for due in learner_dues(course, decision.enrollment, enroll.occurred_at):
            stage_due(batch, due)
    await _stage_refused(batch, item, decision)
    if item.from_request:  # a record from another service: nobody waits for an answer
        marks = marks_after(batch, enroll.course_id, enroll.user_id)
        stage_answer(batch, item, _reply(decision), marks)


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
        batch.seats(cancel.course_id)["count"],
        batch.enrollment(cancel.course_id, cancel.user_id),
        cancel,
    )
    stage_enrollment_change(batch, cancel.course_id, cancel.user_id, decision)
    stage_answer(
        batch, item, _reply(decision), marks_after(batch, cancel.course_id, cancel.user_id)
    )


def stage_enrollment_change(
    batch: Batch, course_id: str, user_id: str, decision: EnrollmentDecision
) -> None:
    """The events and milestones, the table writes, the seat count and (seats changed)
    the catalog."""
    topic, subject = enrollment_event.TOPIC, enrollment_event.SUBJECT
    batch.stage_records(
        [(topic, course_id, subject, enrollment_event.encode(e)) for e in decision.events]
    )
    for event in decision.events:
        _APPLIED[event["event_type"]].inc()
    for milestone in decision.milestones:
        MILESTONES.labels(milestone["event_type"]).inc()
    if decision.enrollment is not None and any(
        e["event_type"] == "course_completed" for e in decision.events
    ):  # for enrolments elsewhere that require this course (decision 57)
        entry = completion_entry.CompletionEntry(
            user_id, course_id, str(decision.enrollment["completed_at"])
        )
        encoded = completion_entry.encode(entry)
        batch.stage_records(
            [(completion_entry.TOPIC, entry.key, completion_entry.SUBJECT, encoded)]
        )
    batch.stage_records(
        [
            (learner_milestone.TOPIC, course_id, learner_milestone.SUBJECT, m)
            for m in map(learner_milestone.encode, decision.milestones)
        ]
    )
    if decision.seats_taken is not None:
        batch.stage_seats(course_id, seat_change(batch.seats(course_id), decision.seats_taken))
        batch.stage_catalog(course_id)
    if decision.enrollment is not None:
        course = course_of(batch.course_record(course_id))
        view = decision.new_view
        drawn = (int(course["version"]), view) if course is not None and view is not None else None
        batch.stage_enrollment(course_id, user_id, decision.enrollment, drawn)
    batch.stage_course_state(course_id)


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

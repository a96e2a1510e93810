"""The course agent's handlers for course commands: create, update, delete, and ratings.

Each decides (pure domain) against the batch's view of the tables and stages the effects:
the course event and the catalog entry (course-events, course-management-catalog), the
course record, the course's state for Redis, a rating's totals on the seats record and
its entry for the ratings list (course-management-ratings), and the reply with its
consistency marks.
"""

from __future__ import annotations

from collections.abc import Callable

from course_management.domain.commands import (
    CourseCommand,
    CourseDecision,
    decide_create,
    decide_delete,
    decide_update,
)
from course_management.domain.events import CourseEvent
from course_management.domain.outcomes import Reply
from course_management.domain.ratings import as_read, decide_rating
from course_management.domain.records import CourseRecord, EnrollmentRecord, course_of
from course_management.domain.timers import lock_changes
from course_management.infra.metrics import COMMANDS_APPLIED
from course_management.messages import course_event, rating_entry
from course_management.streams.batch import Batch
from course_management.streams.inputs import Input, message_of, stage_answer
from course_management.streams.marks import marks_after
from course_management.streams.timer import stage_due
from course_management.streams.waitlist import drain_queue, fill_seats


def _as_read(batch: Batch, course_id: str, reply: Reply) -> Reply:
    """A reply whose body is the course, as readers see it: its true seat count and
    rating (the table's course keeps neither: both change without a course version)."""
    body = reply.body
    if body is None or "enrollment_count" not in body:
        return reply
    return Reply(
        reply.outcome, as_read(body, batch.course_record(course_id), batch.seats(course_id))
    )


async def create_course(batch: Batch, item: Input) -> None:
    await _course_command(batch, item, decide_create)


async def update_course(batch: Batch, item: Input) -> None:
    await _course_command(batch, item, decide_update)


async def delete_course(batch: Batch, item: Input) -> None:
    await _course_command(batch, item, decide_delete)


async def _course_command(
    batch: Batch,
    item: Input,
    decide: Callable[[CourseRecord | None, CourseCommand], CourseDecision],
) -> None:
    """Decide a course command, stage its event, record and catalog entry, and answer."""
    command = message_of(item, CourseCommand)
    before = batch.course_record(command.course_id)
    decision = decide(before, command)
    if decision.event is not None and decision.record is not None:
        stage_course_change(batch, command.course_id, decision.event)
        after = course_of(decision.record)
        if after is not None:  # the time locks this change asks the timer to look at
            for due in lock_changes(course_of(before), after, command.occurred_at):
                stage_due(batch, due)
    if decision.record is not None:
        batch.stage_course_record(command.course_id, decision.record)
        COMMANDS_APPLIED.labels(command.command_type).inc()
        # a capacity raised (or a waitlist opened) frees seats for those waiting; a
        # deleted course's queue is emptied
        last = course_of(before)
        if decision.record.get("deleted") and last is not None:
            await drain_queue(
                batch, command.course_id, last, command.command_id, command.occurred_at
            )
        else:
            await fill_seats(batch, command.course_id, command.command_id, command.occurred_at)
    batch.stage_course_state(command.course_id)
    reply = _as_read(batch, command.course_id, decision.reply)
    stage_answer(batch, item, reply, marks_after(batch, command.course_id))


async def rate_course(batch: Batch, item: Input) -> None:
    """A rating: the seats record's totals, the enrollment's stars, the ratings list's
    entry and the catalog's (no course version, no course event: domain.ratings)."""
    command = message_of(item, CourseCommand)
    course_id, user_id = command.course_id, command.actor.id
    decision = decide_rating(
        batch.course_record(course_id),
        batch.seats(course_id),
        batch.enrollment(course_id, user_id),
        command,
    )
    if decision.record is not None:
        batch.stage_course_record(course_id, decision.record)
    if decision.seats is not None:
        batch.stage_seats(course_id, decision.seats)
        batch.stage_catalog(course_id)
    if decision.enrollment is not None:
        batch.stage_enrollment(course_id, user_id, decision.enrollment)
        stage_rating_entry(batch, course_id, decision.enrollment)
        COMMANDS_APPLIED.labels(command.command_type).inc()
    batch.stage_course_state(command.course_id)
    # The ratings list's mark only for a rating this command made (an unchanged one was
    # made by an earlier command, at an earlier seats seq: its answer's token waits for it).
    made = decision.seats is not None
    stage_answer(batch, item, decision.reply, marks_after(batch, course_id, user_id, rating=made))


def stage_rating_entry(batch: Batch, course_id: str, enrollment: EnrollmentRecord) -> None:
    """The student's rating as it is now, for the ratings list (the mirror's sink),
    ordered among the course's by (course version, seats seq)."""
    rating = enrollment.get("rating")
    course = (batch.course_record(course_id) or {}).get("course")
    if rating is None or course is None:
        return
    entry = rating_entry.RatingEntry(
        course_id=course_id,
        user_id=enrollment["user_id"],
        course_version=int(course["version"]),
        seq=int(batch.seats(course_id)["seq"]),
        stars=rating["stars"],
        review=rating.get("review"),
        rated_at=rating["rated_at"],
    )
    encoded = rating_entry.encode(entry)
    batch.stage_records([(rating_entry.TOPIC, entry.key, rating_entry.SUBJECT, encoded)])


def stage_course_change(batch: Batch, course_id: str, event: CourseEvent) -> None:
    """A course's event and (at the end of the batch) its catalog entry. The event's
    snapshot is the course as readers see it then (seats taken and rating)."""
    course = event["course"]
    if course is not None:
        shown = as_read(course, batch.course_record(course_id), batch.seats(course_id))
        event = {**event, "course": shown}
    encoded = course_event.encode(event)
    batch.stage_records([(course_event.TOPIC, course_id, course_event.SUBJECT, encoded)])
    batch.stage_catalog(course_id)

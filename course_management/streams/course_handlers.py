"""The course agent's handlers for course commands: create, update, delete, and ratings.

Each decides (pure domain) against the batch's view of the tables and stages the effects:
the course event and the catalog entry (course-events, course-management-catalog), the
`courses` table record, the course's state for Redis, and the reply.
"""

from __future__ import annotations

from typing import Any

from course_management.catalog.feed import catalog_entry, catalog_record
from course_management.domain.commands import decide
from course_management.domain.ratings import decide_rating
from course_management.infra.metrics import COMMANDS_APPLIED
from course_management.streams.batch import Batch
from course_management.streams.inputs import Input, required_command, stage_answer
from course_management.tables.records import CourseRecord
from course_management.topology import COURSE_EVENTS, spec


async def course_command(batch: Batch, item: Input) -> None:
    """create_course, update_course, delete_course (and any command type not known:
    `decide` refuses it)."""
    command = required_command(item)
    decision = decide(batch.course_record(command.course_id), command)
    if decision.event is not None and decision.record is not None:
        stage_course_change(batch, command.course_id, decision.event, decision.record)
    if decision.record is not None:
        batch.stage_course_record(command.course_id, decision.record)
        COMMANDS_APPLIED.labels(command.command_type).inc()
    batch.stage_course_state(command.course_id)
    batch.stage_seat_count(command.course_id)
    stage_answer(batch, item, decision.reply)


async def rate_course(batch: Batch, item: Input) -> None:
    """A rating: the course record first, then the enrollment (see domain.ratings)."""
    command = required_command(item)
    course_id, user_id = command.course_id, command.actor.id
    decision = decide_rating(
        batch.course_record(course_id), batch.enrollment(course_id, user_id), command
    )
    if decision.event is not None and decision.record is not None:
        stage_course_change(batch, course_id, decision.event, decision.record)
    if decision.record is not None:
        batch.stage_course_record(course_id, decision.record)  # first: see domain.ratings
    if decision.enrollment is not None:
        batch.stage_enrollment(course_id, user_id, decision.enrollment)
    batch.stage_course_state(command.course_id)
    stage_answer(batch, item, decision.reply)


def stage_course_change(
    batch: Batch, course_id: str, event: dict[str, Any], record: CourseRecord
) -> None:
    """A course's event and its catalog entry, sent together (before any table write)."""
    outgoing = [(COURSE_EVENTS, course_id, spec(COURSE_EVENTS).subject, event)]
    entry = catalog_entry(course_id, record, batch.seats(course_id))
    if entry is not None:
        outgoing.append(catalog_record(entry))
    batch.stage_records(outgoing)

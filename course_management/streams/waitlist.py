"""The waitlist in the course agent (domain/seats.py): the queue's head, a learner's
place, and the seats freed given to the head in the same unit.

The queue's entries are table keys of the course's partition ("<course>#wait:<ticket>"):
read through the batch, so an entry put or taken earlier in the same batch counts.
"""

from __future__ import annotations

from datetime import datetime

from course_management.domain.records import Course, WaitEntry, course_of
from course_management.domain.seats import decide_admission, take_off, wants_admission
from course_management.domain.timers import learner_dues
from course_management.streams.batch import Batch
from course_management.streams.enrollment_effects import stage_enrollment_change
from course_management.streams.timer import stage_due
from course_management.tables.keys import wait_key

# The heads one decision looks at, at most, and the bytes its promotions may stage (an
# input's effects go into one unit: tables/units.py): past either, the rest of the queue
# is decided at the course's next input (an enrolment, a cancellation, a change).
MAX_ADMISSIONS = 1000
FILL_BUDGET_BYTES = 4 * 1024 * 1024


def head_of_queue(batch: Batch, course_id: str) -> tuple[int, WaitEntry] | None:
    """The lowest ticket still waiting, with its entry (None: nobody waits). The tickets
    of learners who left from the middle of the queue are passed over once: the decision
    on the head moves `wait_head` past them."""
    seats = batch.seats(course_id)
    ticket, end = seats.get("wait_head", 1), seats.get("wait_next", 1)
    while ticket < end:
        entry: WaitEntry | None = batch.get(wait_key(course_id, ticket))
        if entry is not None:
            return ticket, entry
        ticket += 1
    return None


def position_of(batch: Batch, course_id: str, ticket: int) -> int:
    """A waiting learner's place: 1 + the learners who wait ahead of `ticket`. Its cost
    grows with the tickets ahead (one table read each)."""
    seats = batch.seats(course_id)
    ahead = sum(
        1
        for t in range(seats.get("wait_head", ticket), ticket)
        if batch.get(wait_key(course_id, t)) is not None
    )
    return ahead + 1


async def fill_seats(batch: Batch, course_id: str, cause_id: str, now: datetime) -> None:
    """Give the course's free seats to the head of its queue, one learner at a time: each
    promoted, or taken off when a rule no longer holds (then the next)."""
    start = batch.staged_bytes
    for _ in range(MAX_ADMISSIONS):
        if batch.staged_bytes - start > FILL_BUDGET_BYTES:
            return
        course = course_of(batch.course_record(course_id))
        seats = batch.seats(course_id)
        if course is None or not wants_admission(course, seats):
            return
        head = head_of_queue(batch, course_id)
        if head is None:  # the count says someone waits, but no ticket: set it right
            batch.stage_seats(course_id, {**seats, "waiting": 0, "seq": seats["seq"] + 1})
            return
        ticket, entry = head
        record = batch.enrollment(course_id, entry["user_id"])
        required = course.get("prerequisite_course_ids") or ()
        completed = await batch.completed_courses(entry["user_id"], required)
        decision = decide_admission(course, seats, record, ticket, cause_id, now, completed)
        stage_enrollment_change(batch, course_id, entry["user_id"], decision)
        if decision.events and decision.enrollment is not None:  # promoted: their own days
            for due in learner_dues(course, decision.enrollment, now):
                stage_due(batch, due)


async def drain_queue(
    batch: Batch, course_id: str, course: Course, cause_id: str, now: datetime
) -> None:
    """A deleted course's queue: everyone taken off, `course-not-found` (as many as one
    decision's budget holds; `course` is its last snapshot)."""
    start = batch.staged_bytes
    while batch.staged_bytes - start <= FILL_BUDGET_BYTES:
        head = head_of_queue(batch, course_id)
        if head is None:
            return
        ticket, entry = head
        record = batch.enrollment(course_id, entry["user_id"])
        decision = take_off(course, batch.seats(course_id), record, ticket, cause_id, now)
        stage_enrollment_change(batch, course_id, entry["user_id"], decision)

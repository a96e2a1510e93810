"""Who holds a seat in a course: enrolling, cancelling, and the waitlist (CONTRACT §5.2).
Pure.

The queue is first come first served. Each learner who waits holds a ticket: the
course's seats record hands them out in order (`wait_next`), counts those waiting
(`waiting`) and remembers the lowest ticket that may still wait (`wait_head`); each
ticket is its own table entry ("<course>#wait:<ticket>", tables/keys.py), so a long queue
never makes one record large. A seat freed (a cancellation, a capacity raised) goes to
the head in the same unit: the handler (streams/waitlist.py) takes the head's entry and
`decide_admission` checks every rule of an enrolment again at that moment, promoting the
learner or taking them off the queue with the problem type as `cancel_reason`.

Waiting is not an enrolment: a learner who waits has no event on enrollment-events
(milestones `waitlisted` and `waitlist_left` on learner-milestones tell of the queue),
and their record's `version` does not move (the versions of enrollment-events stay one
by one); `wait_changes` orders their Redis entries instead (infra/cache.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from course_management.domain.commands import derived_id
from course_management.domain.enrollment import (
    CancelInput,
    EnrollInput,
    EnrollmentDecision,
    admission_refusal,
    admit,
    applied,
    event_of,
    has_free_seat,
    refused,
    seat_change,
    with_transition,
)
from course_management.domain.events import LearnerMilestone
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind
from course_management.domain.progress import public_view
from course_management.domain.records import (
    Course,
    EnrollmentRecord,
    SeatsRecord,
    WaitEntry,
)
from course_management.domain.times import rfc3339

PROMOTED = "promoted"  # the `reason` of the waitlist_left milestone of a promotion
LEFT = "cancelled"  # of a learner who took themselves off the queue


def decide_enroll(
    course: Course | None,
    seats: SeatsRecord,
    record: EnrollmentRecord | None,
    enroll: EnrollInput,
    completed_courses: Collection[str] = (),
    position: int | None = None,
) -> EnrollmentDecision:
    """Enrol, or enrol again: a cancelled enrollment is reactivated with its progress,
    completion and rating (one enrollment per course and learner, ever). A full course
    with room on its waitlist queues the learner (domain/waitlist.py); a seat is free for
    a newcomer only when nobody waits for it.
    `completed_courses`: those of the course's prerequisites the learner completed;
    `position`: the learner's place in the queue, when they wait."""
    if course is None:
        return refused(RefusalKind.COURSE_NOT_FOUND, f"no course {enroll.course_id}")
    if record is not None and (
        applied(record, enroll.event_id)
        or record["status"] in ("active", "completed", "waitlisted")
    ):
        return EnrollmentDecision(
            Outcome.UNCHANGED,
            None,
            None,
            (),
            reply_enrollment=public_view(record, course, enroll.occurred_at, position),
        )
    refusal = admission_refusal(course, enroll.occurred_at, completed_courses)
    if refusal is not None:
        return EnrollmentDecision(None, None, None, (), refusal)
    if not has_free_seat(course, seats) or seats.get("waiting", 0) > 0:
        return join_waitlist(course, seats, record, enroll)
    return admit(
        course, seats, record, enroll.user_id, enroll.event_id, enroll.occurred_at, enroll.source
    )


def decide_cancel(
    course: Course | None,
    seats: SeatsRecord,
    record: EnrollmentRecord | None,
    cancel: CancelInput,
) -> EnrollmentDecision:
    """Cancel an enrollment (its seat is then free for the waitlist's head), or take a
    waiting learner off the queue."""
    if course is None:
        return refused(RefusalKind.COURSE_NOT_FOUND, f"no course {cancel.course_id}")
    if applied(record, cancel.event_id):
        return EnrollmentDecision(Outcome.REMOVED, None, None, ())
    if record is None or record["status"] == "cancelled":
        return refused(RefusalKind.NOT_ENROLLED, f"{cancel.user_id} is not enrolled")
    if record["status"] == "waitlisted":
        return leave_waitlist(course, seats, record, cancel.event_id, cancel.occurred_at, LEFT)
    cancelled = with_transition(record, "cancelled", rfc3339(cancel.occurred_at), cancel.event_id)
    view = public_view(cancelled, course, cancel.occurred_at)
    return EnrollmentDecision(
        Outcome.REMOVED,
        cancelled,
        seat_change(seats, max(0, seats["count"] - 1)),
        (event_of(cancel.event_id, "enrollment_cancelled", cancelled, view, cancel.occurred_at),),
        view=view,
    )


def waitlist_milestone(
    input_id: str,
    kind: str,
    course_id: str,
    user_id: str,
    at: datetime,
    version: int,
    position: int | None = None,
    reason: str | None = None,
) -> LearnerMilestone:
    """`version`: the learner's enrollment version at that moment (waiting changes none)."""
    return {
        "event_id": derived_id(input_id, f"{kind}:{user_id}"),
        "event_type": kind,
        "occurred_at": at,
        "course_id": course_id,
        "user_id": user_id,
        "module_id": None,
        "waitlist_position": position,
        "reason": reason,
        "enrollment_version": version,
    }


def _waiting_change(
    record: EnrollmentRecord, status: str, at: str, event_id: str
) -> EnrollmentRecord:
    """A change of status made by the queue alone: in the history (a repeat of its input
    is found there), without a new version (no enrollment event tells of it)."""
    return {
        **with_transition(record, status, at, event_id),
        "version": record.get("version", 0),
        "wait_changes": record.get("wait_changes", 0) + 1,
    }


def _off_queue(seats: SeatsRecord, ticket: int) -> SeatsRecord:
    """The seats record with `ticket` off the queue."""
    head = seats.get("wait_head", ticket)
    return {
        **seats,
        "waiting": max(0, seats.get("waiting", 0) - 1),
        "wait_head": ticket + 1 if ticket == head else head,
        "seq": seats["seq"] + 1,
    }


def join_waitlist(
    course: Course, seats: SeatsRecord, record: EnrollmentRecord | None, enroll: EnrollInput
) -> EnrollmentDecision:
    """Queue a learner who qualifies for a full course, if its waitlist has room."""
    room, waiting = course.get("waitlist_capacity") or 0, seats.get("waiting", 0)
    if waiting >= room:
        places = f", and the waitlist's {room} places" if room else ""
        return refused(
            RefusalKind.COURSE_FULL, f"all {course.get('capacity')} seats are taken{places}"
        )
    at, ticket = rfc3339(enroll.occurred_at), seats.get("wait_next", 1)
    base: EnrollmentRecord = record or {
        "course_id": enroll.course_id,
        "user_id": enroll.user_id,
        "enrolled_at": at,
        "source": enroll.source,
        "items": {},
        "completed_at": None,
        "version": 0,
        "history": [],
        "enrolled": False,
    }
    waiting_record = _waiting_change(base, "waitlisted", at, enroll.event_id)
    waiting_record["wait_ticket"] = ticket
    waiting_record.pop("cancel_reason", None)
    new_seats: SeatsRecord = {
        **seats,
        "waiting": waiting + 1,
        "wait_next": ticket + 1,
        "wait_head": seats.get("wait_head", ticket) if waiting else ticket,
        "seq": seats["seq"] + 1,
    }
    position = waiting + 1
    entry: WaitEntry = {"user_id": enroll.user_id, "joined_at": at, "event_id": enroll.event_id}
    milestone = waitlist_milestone(
        enroll.event_id,
        "waitlisted",
        enroll.course_id,
        enroll.user_id,
        enroll.occurred_at,
        int(waiting_record.get("version", 0)),
        position=position,
    )
    return EnrollmentDecision(
        Outcome.CREATED,
        waiting_record,
        new_seats,
        (),
        reply_enrollment=public_view(waiting_record, course, enroll.occurred_at, position),
        milestones=(milestone,),
        queue=((ticket, entry),),
    )


def leave_waitlist(
    course: Course,
    seats: SeatsRecord,
    record: EnrollmentRecord,
    event_id: str,
    now: datetime,
    reason: str,
) -> EnrollmentDecision:
    """Off the queue: back to `cancelled` (`cancel_reason`: why they were taken off; none
    when they left themselves). Those behind move up."""
    ticket = int(record.get("wait_ticket", 0))
    left = _waiting_change(record, "cancelled", rfc3339(now), event_id)
    left.pop("wait_ticket", None)
    if reason != LEFT:
        left["cancel_reason"] = reason
    new_seats = _off_queue(seats, ticket)
    milestone = waitlist_milestone(
        event_id,
        "waitlist_left",
        record["course_id"],
        record["user_id"],
        now,
        int(record.get("version", 0)),
        reason=reason,
    )
    return EnrollmentDecision(
        Outcome.REMOVED,
        left,
        new_seats,
        (),
        view=public_view(left, course, now),
        milestones=(milestone,),
        queue=((ticket, None),),
    )


def decide_admission(
    course: Course,
    seats: SeatsRecord,
    record: EnrollmentRecord | None,
    ticket: int,
    cause_id: str,
    now: datetime,
    completed_courses: Collection[str] = (),
) -> EnrollmentDecision:
    """The head of the queue (`ticket`) when a seat is free: promoted, if every rule of an
    enrolment holds at `now`, else taken off the queue. The ids derive from the input that
    freed the seat (`cause_id`) and the learner, so a redelivery decides the same."""
    user_id = (record or {}).get("user_id", "")
    admission_id = derived_id(cause_id, f"admit:{user_id}:{ticket}")
    if record is None or not _waits_on(record, ticket):
        return _dropped(seats, ticket)
    refusal: Refusal | None = admission_refusal(course, now, completed_courses)
    if refusal is not None:
        return _taken_off(course, seats, record, ticket, admission_id, now, refusal.kind.value)
    # `ticket` is the lowest still waiting: the head moves past the gaps before it too
    promoted = admit(
        course,
        {**_off_queue(seats, ticket), "wait_head": ticket + 1},
        record,
        user_id,
        admission_id,
        now,
        str(record.get("source", "")),
    )
    left = waitlist_milestone(
        admission_id,
        "waitlist_left",
        course["id"],
        user_id,
        now,
        int(record.get("version", 0)) if record else 0,
        reason=PROMOTED,
    )
    return replace(promoted, milestones=(left,), queue=((ticket, None),))


def take_off(
    course: Course,
    seats: SeatsRecord,
    record: EnrollmentRecord | None,
    ticket: int,
    cause_id: str,
    now: datetime,
) -> EnrollmentDecision:
    """The head of the queue of a deleted course (`course`: its last snapshot), taken off:
    `course-not-found`."""
    if record is None or not _waits_on(record, ticket):
        return _dropped(seats, ticket)
    off_id = derived_id(cause_id, f"off:{record['user_id']}:{ticket}")
    return _taken_off(
        course, seats, record, ticket, off_id, now, RefusalKind.COURSE_NOT_FOUND.value
    )


def _waits_on(record: EnrollmentRecord, ticket: int) -> bool:
    return record.get("status") == "waitlisted" and record.get("wait_ticket") == ticket


def _dropped(seats: SeatsRecord, ticket: int) -> EnrollmentDecision:
    """No learner waits on this head ticket (nothing to tell): it is dropped."""
    dropped: SeatsRecord = {**_off_queue(seats, ticket), "wait_head": ticket + 1}
    return EnrollmentDecision(Outcome.APPLIED, None, dropped, (), queue=((ticket, None),))


def _taken_off(
    course: Course,
    seats: SeatsRecord,
    record: EnrollmentRecord,
    ticket: int,
    input_id: str,
    now: datetime,
    reason: str,
) -> EnrollmentDecision:
    """The head taken off the queue (`reason`): the head moves past it."""
    off = leave_waitlist(course, seats, record, input_id, now, reason)
    assert off.seats is not None
    return replace(off, seats={**off.seats, "wait_head": ticket + 1})


def wants_admission(course: Course | None, seats: SeatsRecord) -> bool:
    """Is a seat free while learners wait (the queue's head is to be decided)?"""
    return course is not None and seats.get("waiting", 0) > 0 and has_free_seat(course, seats)

"""The aggregate's records as the `course-state` table holds them, typed. Pure: no Faust,
no I/O.

The course agent's decisions (domain/) read and return these; the tables store them as
JSON (so every field is a JSON value), and their changelogs replay them. A `Course` is
the snapshot of CONTRACT §3 (built and validated by domain/course.py).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

Course = dict[str, Any]


class RememberedReply(TypedDict, total=False):
    """A command's answer kept for its repeats (`recent`)."""

    command_id: str
    outcome: str
    body: dict[str, Any] | None  # the answer itself, or
    course_version: int  # for an answer that is the course: the version it made


class CreateFingerprint(TypedDict):
    """What the create that made the course was (an Idempotency-Key repeat is compared)."""

    payload_hash: str
    reply: Course


class CourseRecord(TypedDict, total=False):
    """`course-state`: course id -> this."""

    course: Course | None
    deleted: bool
    create: CreateFingerprint
    recent: list[RememberedReply]  # the last RECENT_COMMANDS_KEPT commands
    rating_sum: int  # before decision 52 only (the totals are on the seats record now)


class ItemState(TypedDict, total=False):
    """One item's progress: the join of every report of it (domain.enrollment.merge_report),
    so a report applied twice, or out of order, changes nothing."""

    status: str  # started | failed | completed (never back)
    score: float | None  # the best any report carried
    best_completed: float  # the best score of its `completed` reports (min_score rules)
    scored: list[str]  # [at, event id] of that report (orders reports with equal times)
    at: str  # RFC 3339, the latest report
    first_at: str  # RFC 3339, the earliest report (records before 2026-12-07 lack it)
    completed_at: str | None  # the earliest report of completion
    event_id: str  # of the latest report applied


class RatingRecord(TypedDict):
    stars: int
    review: str | None
    rated_at: str


class Transition(TypedDict):
    """A change of an enrollment's status (its history: enrolled, cancelled, completed)."""

    status: str
    at: str
    event_id: str  # of the input that made it (a repeat of it changes nothing)


class EnrollmentRecord(TypedDict, total=False):
    """`course-state`: "<course id>:<user id>" -> this. One per course and learner, ever:
    cancelling and enrolling again change its status; progress, completion and rating stay."""

    course_id: str
    user_id: str
    status: str  # active | cancelled | completed | waitlisted (never in an event)
    enrolled_at: str
    source: str
    items: dict[str, ItemState]
    completed_at: str | None
    version: int
    history: list[Transition]  # the last status changes (HISTORY_KEPT), oldest first
    rating: RatingRecord
    opened: list[
        str
    ]  # modules ever open for the learner (their milestone sent, or open at enrolment)
    wait_ticket: int  # while `waitlisted`: their place in the queue (WaitEntry)
    wait_changes: int  # changes made by the queue alone (no version: domain/seats.py)
    enrolled: bool  # False: waited, never enrolled (absent: True)
    cancel_reason: str  # the problem type of the rule that took them off the queue


class SeatsRecord(TypedDict):
    """`course-state`: "<course id>#seats" -> this: what readers see of a course beside
    what its authors wrote (domain.enrollment.seat_change, domain.ratings.decide_rating).
    The rating totals are absent until the course's first rating since decision 52 (they
    were on the course record before: domain.ratings.rating_totals)."""

    count: int  # seats taken: the course's active and completed enrollments
    seq: int  # grows with every change of `count` or of the rating
    rating_sum: NotRequired[int]  # the stars of every rating, summed
    rating_count: NotRequired[int]
    # the waitlist (domain/waitlist.py): learners waiting, the next ticket to hand out,
    # and the lowest ticket that may still be waiting (absent: no one ever waited)
    waiting: NotRequired[int]
    wait_next: NotRequired[int]
    wait_head: NotRequired[int]


class WaitEntry(TypedDict):
    """`course-state`: "<course id>#wait:<ticket>" -> this: a learner in the queue."""

    user_id: str
    joined_at: str
    event_id: str  # of the input that put them there


def course_of(record: CourseRecord | None) -> Course | None:
    """The visible course in a table record (None when absent or deleted)."""
    if not record or record.get("deleted"):
        return None
    return record.get("course")

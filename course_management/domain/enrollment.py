"""Enrollment: who may join a course, seats, cancelling, and the progress snapshot. Pure.

Every decision is deterministic in its input (ids derive from the input's `event_id`,
times are the input's `occurred_at`), like course commands, so a redelivery after a
crash decides the same thing again. Repeats change nothing, exactly (no window of recent
ids): a status change is found in the enrollment's history by its event id, and an item's
progress is a join of its reports (`merge_report`). Replays of whole source topics are
skipped earlier, by their source offsets (streams/tracking.py).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from course_management.domain.commands import derived_id
from course_management.domain.events import EnrollmentEvent, LearnerMilestone
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind
from course_management.domain.paths import (
    PathState,
    path_state,
)
from course_management.domain.progress import completed_ids, public_view
from course_management.domain.records import (
    Course,
    EnrollmentRecord,
    SeatsRecord,
    Transition,
    WaitEntry,
)
from course_management.domain.times import rfc3339

# Ids and names in inputs from other services: longer ones are refused (dead-lettered),
# since they are copied into events, table records and the mirror.
MAX_TEXT_LENGTH = 200


def malformed_input(value: dict[str, Any], required: tuple[str, ...]) -> str | None:
    """Why an input record from another service cannot be processed, or None."""
    missing = [name for name in required if not value.get(name)]
    if missing:
        return f"empty {', '.join(missing)}"
    too_long = sorted(
        name for name, v in value.items() if isinstance(v, str) and len(v) > MAX_TEXT_LENGTH
    )
    if too_long:
        return f"{', '.join(too_long)} over {MAX_TEXT_LENGTH} characters"
    with_nul = sorted(name for name, v in value.items() if isinstance(v, str) and "\x00" in v)
    if with_nul:  # PostgreSQL cannot store it
        return f"{', '.join(with_nul)} with a NUL character"
    return None


@dataclass(frozen=True)
class EnrollInput:
    event_id: str
    course_id: str
    user_id: str
    occurred_at: datetime
    source: str


@dataclass(frozen=True)
class CancelInput:
    event_id: str
    course_id: str
    user_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class ProgressInput:
    event_id: str
    course_id: str
    user_id: str
    item_id: str
    status: str  # started | completed
    score: float | None
    occurred_at: datetime


@dataclass(frozen=True)
class EnrollmentDecision:
    outcome: Outcome | None  # None: refused (see `refusal`)
    enrollment: EnrollmentRecord | None  # the new enrollment record (None: unchanged)
    seats: SeatsRecord | None  # the course's new seats record (None: unchanged)
    events: tuple[EnrollmentEvent, ...]  # to publish, in order
    refusal: Refusal | None = None  # why it was refused
    reply_enrollment: dict[str, Any] | None = None  # the answer: the enrollment's view
    view: dict[str, Any] | None = None  # the new record's public view, when not the answer
    milestones: tuple[LearnerMilestone, ...] = ()  # to publish after the events
    queue: tuple[tuple[int, WaitEntry | None], ...] = ()  # waitlist tickets put or taken

    @property
    def new_view(self) -> dict[str, Any] | None:
        """The public view of `enrollment` (drawn once, with the decision)."""
        if self.enrollment is None:
            return None
        return self.view if self.view is not None else self.reply_enrollment

    @property
    def seats_taken(self) -> int | None:
        return None if self.seats is None else self.seats["count"]


def event_of(
    input_id: str,
    kind: str,
    record: EnrollmentRecord,
    view: dict[str, Any],
    at: datetime,
    reactivated: bool | None = None,
    item: tuple[str, str | None] | None = None,
) -> EnrollmentEvent:
    """The event of a change; `view` is the record's public view (drawn once per change);
    `item`: the (item, its module) whose report made the change."""
    return {
        "event_id": derived_id(input_id, kind),
        "event_type": kind,
        "occurred_at": at,
        "course_id": record["course_id"],
        "user_id": record["user_id"],
        "version": record["version"],
        "enrollment": {**view, "completed_item_ids": completed_ids(record)},
        "reactivated": reactivated,
        "item_id": item[0] if item else None,
        "module_id": item[1] if item else None,
    }


def applied(record: EnrollmentRecord | None, event_id: str) -> bool:
    """Did this input already change the record's status (among the HISTORY_KEPT last)?"""
    return record is not None and any(t["event_id"] == event_id for t in record.get("history", []))


# The status changes a record keeps: the last HISTORY_KEPT, for a repeated input's event
# id and the last cancellation's date (about 80 KB at most). The whole history is in
# enrollment-events and the mirror; a record that kept every one grew without bound (an
# account cancelling and enrolling again ten thousand times made it larger than a Kafka
# record, and its batch could never be applied: issue 24). A repeat of an input older
# than the last thousand status changes of the same learner in the same course would be
# applied again: the bound is that far out so that no real learner reaches it.
HISTORY_KEPT = 1000


def with_transition(
    record: EnrollmentRecord, status: str, at: str, event_id: str
) -> EnrollmentRecord:
    change: Transition = {"status": status, "at": at, "event_id": event_id}
    history = [*record.get("history", []), change]
    return {
        **record,
        "status": status,
        "version": record.get("version", 0) + 1,
        "history": history[-HISTORY_KEPT:],
    }


def refused(kind: RefusalKind, detail: str) -> EnrollmentDecision:
    return EnrollmentDecision(None, None, None, (), Refusal(kind, detail))


def cancelled_refusal(record: EnrollmentRecord, doing: str) -> EnrollmentDecision:
    since = next(
        (t["at"] for t in reversed(record.get("history", [])) if t["status"] == "cancelled"), None
    )
    when = f" on {since}" if since else ""
    return refused(
        RefusalKind.ENROLLMENT_CANCELLED,
        f"the enrollment of {record['user_id']} was cancelled{when}; enrol again to {doing}",
    )


def admission_refusal(
    course: Course, at: datetime, completed_courses: Collection[str]
) -> Refusal | None:
    """Why a learner may not be admitted to the course at `at` (seats aside): the rules
    of an enrolment, and of a promotion from the waitlist (CONTRACT §5.2)."""
    if course["status"] != "published":
        return Refusal(
            RefusalKind.COURSE_NOT_PUBLISHED, "only a published course takes enrollments"
        )
    stamp = rfc3339(at)
    opens, closes = course.get("enrollment_opens_at"), course.get("enrollment_closes_at")
    if (opens and stamp < opens) or (closes and stamp >= closes):
        return Refusal(RefusalKind.ENROLLMENT_CLOSED, "the course's enrollment window is not open")
    missing = [c for c in course.get("prerequisite_course_ids") or () if c not in completed_courses]
    if missing:
        return Refusal(
            RefusalKind.PREREQUISITES_NOT_MET,
            f"complete {', '.join(missing)} first (this course's prerequisites)",
        )
    return None


def has_free_seat(course: Course, seats: SeatsRecord) -> bool:
    capacity = course.get("capacity")
    return capacity is None or seats["count"] < capacity


def admit(
    course: Course,
    seats: SeatsRecord,
    record: EnrollmentRecord | None,
    user_id: str,
    event_id: str,
    now: datetime,
    source: str,
) -> EnrollmentDecision:
    """Take a seat (the rules were checked): a new enrollment, or one reactivated."""
    at = rfc3339(now)
    base: EnrollmentRecord = record or {
        "course_id": course["id"],
        "user_id": user_id,
        "enrolled_at": at,
        "source": source,
        "items": {},
        "completed_at": None,
        "version": 0,
        "history": [],
    }
    reactivated = record is not None and record.get("enrolled", True)
    if not reactivated:  # a first enrolment (perhaps after waiting): it starts now
        base = {**base, "enrolled_at": at, "source": source}
    base = {**base, "enrolled": True}
    base.pop("wait_ticket", None)
    base.pop("cancel_reason", None)
    status = "completed" if base.get("completed_at") else "active"
    new_record = with_transition(base, status, at, event_id)
    # the modules open at enrolment send no milestone (CONTRACT §5.1), now or later
    path = path_state(course, new_record["enrolled_at"], new_record.get("items", {}), now)
    new_record["opened"] = sorted(set(base.get("opened", ())) | open_modules(path))
    view = public_view(new_record, course, now)
    event = event_of(event_id, "enrollment_created", new_record, view, now, reactivated)
    return EnrollmentDecision(
        Outcome.CREATED,
        new_record,
        seat_change(seats, seats["count"] + 1),
        (event,),
        reply_enrollment=view,
    )


def open_modules(path: PathState) -> set[str]:
    return {m.module_id for m in path.modules if m.state != "locked"}


# Seats: one record per course in the course-state table, beside its enrollments: a
# batch writes it with them in one unit (decision 49), so the count always equals the
# active enrollments the table holds. `seq` grows with every change (the catalog's and
# the cache's versions of the seats).

EMPTY_SEATS: SeatsRecord = {"count": 0, "seq": 0}


def seat_change(seats: SeatsRecord, new_count: int) -> SeatsRecord:
    """The seats record after a change to `new_count`."""
    return {**seats, "count": new_count, "seq": seats["seq"] + 1}

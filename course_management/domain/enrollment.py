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
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind, invalid
from course_management.domain.paths import (
    PathState,
    item_of,
    lock_reason,
    newly_unlocked,
    path_state,
    report_status,
    score_error,
)
from course_management.domain.progress import completed_ids, public_view, view_of_path
from course_management.domain.records import (
    Course,
    EnrollmentRecord,
    ItemState,
    SeatsRecord,
    Transition,
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
    seats_taken: int | None  # the course's new count of seats taken (None: unchanged)
    events: tuple[EnrollmentEvent, ...]  # to publish, in order
    refusal: Refusal | None = None  # why it was refused
    reply_enrollment: dict[str, Any] | None = None  # the answer: the enrollment's view
    view: dict[str, Any] | None = None  # the new record's public view, when not the answer
    milestones: tuple[LearnerMilestone, ...] = ()  # to publish after the events

    @property
    def new_view(self) -> dict[str, Any] | None:
        """The public view of `enrollment` (drawn once, with the decision)."""
        if self.enrollment is None:
            return None
        return self.view if self.view is not None else self.reply_enrollment


def _event(
    input_id: str, kind: str, record: EnrollmentRecord, view: dict[str, Any], at: datetime
) -> EnrollmentEvent:
    """The event of a change; `view` is the record's public view (drawn once per change)."""
    return {
        "event_id": derived_id(input_id, kind),
        "event_type": kind,
        "occurred_at": at,
        "course_id": record["course_id"],
        "user_id": record["user_id"],
        "version": record["version"],
        "enrollment": {**view, "completed_item_ids": completed_ids(record)},
    }


def _applied(record: EnrollmentRecord | None, event_id: str) -> bool:
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


def _with_transition(
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


def _refused(kind: RefusalKind, detail: str) -> EnrollmentDecision:
    return EnrollmentDecision(None, None, None, (), Refusal(kind, detail))


def _cancelled_refusal(record: EnrollmentRecord, doing: str) -> EnrollmentDecision:
    since = next(
        (t["at"] for t in reversed(record.get("history", [])) if t["status"] == "cancelled"), None
    )
    when = f" on {since}" if since else ""
    return _refused(
        RefusalKind.ENROLLMENT_CANCELLED,
        f"the enrollment of {record['user_id']} was cancelled{when}; enrol again to {doing}",
    )


def decide_enroll(
    course: Course | None,
    seats_taken: int,
    record: EnrollmentRecord | None,
    enroll: EnrollInput,
    completed_courses: Collection[str] = (),
) -> EnrollmentDecision:
    """Enrol, or enrol again: a cancelled enrollment is reactivated with its progress,
    completion and rating (one enrollment per course and learner, ever).
    `completed_courses`: those of the course's prerequisites the learner completed."""
    if course is None:
        return _refused(RefusalKind.COURSE_NOT_FOUND, f"no course {enroll.course_id}")
    if record is not None and (
        _applied(record, enroll.event_id) or record["status"] in ("active", "completed")
    ):
        return EnrollmentDecision(
            Outcome.UNCHANGED,
            None,
            None,
            (),
            reply_enrollment=public_view(record, course, enroll.occurred_at),
        )
    if course["status"] != "published":
        return _refused(
            RefusalKind.COURSE_NOT_PUBLISHED, "only a published course takes enrollments"
        )
    at = rfc3339(enroll.occurred_at)
    opens, closes = course.get("enrollment_opens_at"), course.get("enrollment_closes_at")
    if (opens and at < opens) or (closes and at >= closes):
        return _refused(RefusalKind.ENROLLMENT_CLOSED, "the course's enrollment window is not open")
    missing = [c for c in course.get("prerequisite_course_ids") or () if c not in completed_courses]
    if missing:
        return _refused(
            RefusalKind.PREREQUISITES_NOT_MET,
            f"complete {', '.join(missing)} first (this course's prerequisites)",
        )
    capacity = course.get("capacity")
    if capacity is not None and seats_taken >= capacity:
        return _refused(RefusalKind.COURSE_FULL, f"all {capacity} seats are taken")
    base: EnrollmentRecord = record or {
        "course_id": enroll.course_id,
        "user_id": enroll.user_id,
        "enrolled_at": at,
        "source": enroll.source,
        "items": {},
        "completed_at": None,
        "version": 0,
        "history": [],
    }
    status = "completed" if base.get("completed_at") else "active"
    new_record = _with_transition(base, status, at, enroll.event_id)
    # the modules open at enrolment send no milestone (CONTRACT §5.1), now or later
    path = path_state(
        course, new_record["enrolled_at"], new_record.get("items", {}), enroll.occurred_at
    )
    new_record["opened"] = sorted(set(base.get("opened", ())) | _open_modules(path))
    view = public_view(new_record, course, enroll.occurred_at)
    return EnrollmentDecision(
        Outcome.CREATED,
        new_record,
        seats_taken + 1,
        (_event(enroll.event_id, "enrollment_created", new_record, view, enroll.occurred_at),),
        reply_enrollment=view,
    )


def decide_cancel(
    course: Course | None,
    seats_taken: int,
    record: EnrollmentRecord | None,
    cancel: CancelInput,
) -> EnrollmentDecision:
    if course is None:
        return _refused(RefusalKind.COURSE_NOT_FOUND, f"no course {cancel.course_id}")
    if _applied(record, cancel.event_id):
        return EnrollmentDecision(Outcome.REMOVED, None, None, ())
    if record is None or record["status"] == "cancelled":
        return _refused(RefusalKind.NOT_ENROLLED, f"{cancel.user_id} is not enrolled")
    cancelled = _with_transition(record, "cancelled", rfc3339(cancel.occurred_at), cancel.event_id)
    view = public_view(cancelled, course, cancel.occurred_at)
    return EnrollmentDecision(
        Outcome.REMOVED,
        cancelled,
        max(0, seats_taken - 1),
        (_event(cancel.event_id, "enrollment_cancelled", cancelled, view, cancel.occurred_at),),
        view=view,
    )


_RANK = {"started": 1, "failed": 2, "completed": 3}


def merge_report(
    current: ItemState | None, report: ProgressInput, item: dict[str, Any] | None = None
) -> ItemState:
    """An item's state with one more report joined in. The join is idempotent, commutative
    and associative, so the state is the same whatever the order of the reports and however
    often each arrives: the status is the highest any report made (started < failed <
    completed: never back), the score the best any report had (CONTRACT §5.1), the
    completion time the earliest of the reports that completed it, activity the latest
    report's. On a `min_score` item (`item`) a `completed` report completes it only with
    a score reaching `min_score`, else leaves it `failed` (domain.paths.report_status);
    the best score of its `completed` reports is kept for a rule relaxed later."""
    at = rfc3339(report.occurred_at)
    state: ItemState = {**(current or {})}
    best = state.get("score")
    if report.score is not None and (best is None or report.score > best):
        state["score"] = report.score
    else:
        state.setdefault("score", None)
    if report.status == "completed" and report.score is not None:
        best_completed = state.get("best_completed")
        if best_completed is None or report.score > best_completed:
            state["best_completed"] = report.score
    status = report_status(item or {}, report.status, report.score)
    if _RANK[status] > _RANK.get(state.get("status", ""), 0):
        state["status"] = status
    if status == "completed":
        earliest = state.get("completed_at")
        state["completed_at"] = at if earliest is None else min(earliest, at)
    else:
        state.setdefault("completed_at", None)
    if [at, report.event_id] > [state.get("at", ""), state.get("event_id", "")]:
        state["at"] = at
        state["event_id"] = report.event_id
    return state


def _open_modules(path: PathState) -> set[str]:
    return {m.module_id for m in path.modules if m.state != "locked"}


def module_unlocked(course_id: str, user_id: str, module_id: str, at: datetime) -> LearnerMilestone:
    """The milestone of a module opening for a learner: its id derives from the three ids
    alone, so every decision that sends it (a completion, the timer, a repeat) sends the
    same record, and consumers drop a second copy by its id."""
    return {
        "event_id": derived_id(f"{course_id}:{user_id}", f"module_unlocked:{module_id}"),
        "event_type": "module_unlocked",
        "occurred_at": at,
        "course_id": course_id,
        "user_id": user_id,
        "module_id": module_id,
        "waitlist_position": None,
        "reason": None,
    }


def decide_progress(
    course: Course | None, record: EnrollmentRecord | None, progress: ProgressInput
) -> EnrollmentDecision:
    """Record an item's progress; the enrollment completes (once, ever) when every item is
    done. A report already applied, or older than what it would change, changes nothing."""
    if course is None:
        return _refused(RefusalKind.COURSE_NOT_FOUND, f"no course {progress.course_id}")
    if record is None:
        return _refused(RefusalKind.NOT_ENROLLED, f"{progress.user_id} is not enrolled")
    if record["status"] == "cancelled":
        return _cancelled_refusal(record, "report progress")
    item = item_of(course, progress.item_id)
    if item is None:
        return EnrollmentDecision(
            None, None, None, (), invalid([("item_id", "not an item of this course")])
        )
    wrong_score = score_error(item, progress.score)
    if wrong_score is not None:
        return EnrollmentDecision(None, None, None, (), invalid([("score", wrong_score)]))
    now, enrolled_at = progress.occurred_at, record["enrolled_at"]
    items_before = record.get("items", {})
    before = path_state(course, enrolled_at, items_before, now)
    if progress.item_id in before.locked:
        why = lock_reason(course, enrolled_at, items_before, now, progress.item_id)
        return _refused(RefusalKind.ITEM_LOCKED, f"item {progress.item_id} {why}")
    current = items_before.get(progress.item_id)
    state = merge_report(current, progress, item)
    if state == current:
        return EnrollmentDecision(
            Outcome.UNCHANGED, None, None, (), reply_enrollment=public_view(record, course, now)
        )
    at = rfc3339(now)
    items: dict[str, ItemState] = {**items_before, progress.item_id: state}
    after = path_state(course, enrolled_at, items, now)
    opened = record.get("opened", [])
    unlocked = newly_unlocked(before, after, opened)
    changed: EnrollmentRecord = {**record, "items": items, "version": record["version"] + 1}
    if unlocked:
        changed["opened"] = sorted({*opened, *unlocked})
    view = _view_at(changed, course, after)
    events = [_event(progress.event_id, "progress_updated", changed, view, now)]
    if record.get("completed_at") is None and after.completed:
        changed = _with_transition(
            {**changed, "completed_at": at}, "completed", at, progress.event_id
        )
        view = _view_at(changed, course, after)
        events.append(_event(progress.event_id, "course_completed", changed, view, now))
    milestones = tuple(
        module_unlocked(progress.course_id, progress.user_id, m, now) for m in unlocked
    )
    return EnrollmentDecision(
        Outcome.APPLIED, changed, None, tuple(events), reply_enrollment=view, milestones=milestones
    )


def _view_at(record: EnrollmentRecord, course: Course, path: PathState) -> dict[str, Any]:
    return {
        "course_id": record["course_id"],
        "user_id": record["user_id"],
        "status": record["status"],
        "enrolled_at": record["enrolled_at"],
        "progress": view_of_path(course, record.get("items", {}), record.get("completed_at"), path),
    }


# Seats: one record per course in the course-state table, beside its enrollments: a
# batch writes it with them in one unit (decision 49), so the count always equals the
# active enrollments the table holds. `seq` grows with every change (the catalog's and
# the cache's versions of the seats).

EMPTY_SEATS: SeatsRecord = {"count": 0, "seq": 0}


def seat_change(seats: SeatsRecord, new_count: int) -> SeatsRecord:
    """The seats record after a change to `new_count`."""
    return {**seats, "count": new_count, "seq": seats["seq"] + 1}

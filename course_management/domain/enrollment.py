"""Enrollment: who may join a course, seats, cancelling, and the progress snapshot. Pure.

Every decision is deterministic in its input (ids derive from the input's `event_id`,
times are the input's `occurred_at`), like course commands, so a redelivery after a
crash decides the same thing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from course_management.domain.commands import derived_id
from course_management.domain.course import rfc3339
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind, invalid
from course_management.tables.records import (
    Course,
    EnrollmentRecord,
    ItemState,
    SeatsRecord,
)

SEEN_EVENTS_KEPT = 32
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
    events: tuple[dict[str, Any], ...]  # the EnrollmentEvents to publish, in order
    refusal: Refusal | None = None  # why it was refused
    reply_enrollment: dict[str, Any] | None = None


def item_ids_in_order(course: Course) -> list[str]:
    return [item["id"] for module in course["modules"] for item in module["items"]]


def progress_of(
    course: Course, items: dict[str, ItemState], completed_at: str | None
) -> dict[str, Any]:
    """Totals over the course's current items; completed stays completed (`completed_at`)."""
    order = item_ids_in_order(course)
    done = [i for i in order if items.get(i, {}).get("status") == "completed"]
    total = len(order)
    last = max((s.get("at", "") for s in items.values()), default="") or None
    next_item = next((i for i in order if items.get(i, {}).get("status") != "completed"), None)
    return {
        "completed_items": len(done),
        "total_items": total,
        "percent": round(100.0 * len(done) / total, 2) if total else 0.0,
        "completed_at": completed_at,
        "last_activity_at": last,
        "next_item_id": next_item,
    }


def public_view(record: EnrollmentRecord, course: Course) -> dict[str, Any]:
    """The Enrollment of CONTRACT §3 from the stored record."""
    return {
        "course_id": record["course_id"],
        "user_id": record["user_id"],
        "status": record["status"],
        "enrolled_at": record["enrolled_at"],
        "progress": progress_of(course, record.get("items", {}), record.get("completed_at")),
    }


def _event(
    input_id: str, kind: str, record: EnrollmentRecord, course: Course, at: datetime
) -> dict[str, Any]:
    return {
        "event_id": derived_id(input_id, kind),
        "event_type": kind,
        "occurred_at": at,
        "course_id": record["course_id"],
        "user_id": record["user_id"],
        "version": record["version"],
        "enrollment": {**public_view(record, course), "completed_item_ids": completed_ids(record)},
    }


def completed_ids(record: EnrollmentRecord) -> list[str]:
    return sorted(i for i, s in record.get("items", {}).items() if s.get("status") == "completed")


def current_view(snapshot: dict[str, Any], course: Course | None) -> dict[str, Any]:
    """A mirrored enrollment snapshot with its progress recomputed against the course now.

    Snapshots carry the completed item ids (since EnrollmentEvent gained them); older ones
    do not, and keep the progress they were written with.
    """
    view = {k: v for k, v in snapshot.items() if k != "completed_item_ids"}
    done = snapshot.get("completed_item_ids")
    if course is None or done is None:
        return view
    stored = snapshot["progress"]
    progress = progress_of(
        course, {i: {"status": "completed"} for i in done}, stored.get("completed_at")
    )
    progress["last_activity_at"] = stored.get("last_activity_at")
    return {**view, "progress": progress}


def _seen(record: EnrollmentRecord | None, event_id: str) -> bool:
    return record is not None and event_id in record.get("seen", [])


def _remember(record: EnrollmentRecord, event_id: str) -> EnrollmentRecord:
    return {**record, "seen": [*record.get("seen", []), event_id][-SEEN_EVENTS_KEPT:]}


def _refused(kind: RefusalKind, detail: str) -> EnrollmentDecision:
    return EnrollmentDecision(None, None, None, (), Refusal(kind, detail))


def decide_enroll(
    course: Course | None,
    seats_taken: int,
    record: EnrollmentRecord | None,
    enroll: EnrollInput,
) -> EnrollmentDecision:
    if course is None:
        return _refused(RefusalKind.COURSE_NOT_FOUND, f"no course {enroll.course_id}")
    active = record is not None and record["status"] in ("active", "completed")
    if _seen(record, enroll.event_id) or active:
        assert record is not None
        remembered = None if _seen(record, enroll.event_id) else _remember(record, enroll.event_id)
        return EnrollmentDecision(
            Outcome.UNCHANGED, remembered, None, (), reply_enrollment=public_view(record, course)
        )
    if course["status"] != "published":
        return _refused(
            RefusalKind.COURSE_NOT_PUBLISHED, "only a published course takes enrollments"
        )
    at = rfc3339(enroll.occurred_at)
    opens, closes = course.get("enrollment_opens_at"), course.get("enrollment_closes_at")
    if (opens and at < opens) or (closes and at >= closes):
        return _refused(RefusalKind.ENROLLMENT_CLOSED, "the course's enrollment window is not open")
    capacity = course.get("capacity")
    if capacity is not None and seats_taken >= capacity:
        return _refused(RefusalKind.COURSE_FULL, f"all {capacity} seats are taken")
    new_record = _remember(
        {
            "course_id": enroll.course_id,
            "user_id": enroll.user_id,
            "status": "active",
            "enrolled_at": at,
            "source": enroll.source,
            "items": {},
            "completed_at": None,
            "version": (record or {}).get("version", 0) + 1,
            "seen": (record or {}).get("seen", []),
        },
        enroll.event_id,
    )
    return EnrollmentDecision(
        Outcome.CREATED,
        new_record,
        seats_taken + 1,
        (_event(enroll.event_id, "enrollment_created", new_record, course, enroll.occurred_at),),
        reply_enrollment=public_view(new_record, course),
    )


def decide_cancel(
    course: Course | None,
    seats_taken: int,
    record: EnrollmentRecord | None,
    cancel: CancelInput,
) -> EnrollmentDecision:
    if course is None:
        return _refused(RefusalKind.COURSE_NOT_FOUND, f"no course {cancel.course_id}")
    if _seen(record, cancel.event_id):
        assert record is not None
        return EnrollmentDecision(Outcome.REMOVED, None, None, ())
    if record is None or record["status"] == "cancelled":
        return _refused(RefusalKind.NOT_ENROLLED, f"{cancel.user_id} is not enrolled")
    cancelled = _remember(
        {**record, "status": "cancelled", "version": record["version"] + 1}, cancel.event_id
    )
    return EnrollmentDecision(
        Outcome.REMOVED,
        cancelled,
        max(0, seats_taken - 1),
        (_event(cancel.event_id, "enrollment_cancelled", cancelled, course, cancel.occurred_at),),
    )


def decide_progress(
    course: Course | None, record: EnrollmentRecord | None, progress: ProgressInput
) -> EnrollmentDecision:
    """Record an item's progress; the enrollment completes (once) when every item is done."""
    if course is None:
        return _refused(RefusalKind.COURSE_NOT_FOUND, f"no course {progress.course_id}")
    if record is None or record["status"] == "cancelled":
        return _refused(RefusalKind.NOT_ENROLLED, f"{progress.user_id} is not enrolled")
    if progress.item_id not in item_ids_in_order(course):
        return EnrollmentDecision(
            None, None, None, (), invalid([("item_id", "not an item of this course")])
        )
    if _seen(record, progress.event_id):
        return EnrollmentDecision(
            Outcome.UNCHANGED, None, None, (), reply_enrollment=public_view(record, course)
        )
    at = rfc3339(progress.occurred_at)
    current: ItemState = record.get("items", {}).get(progress.item_id, {})
    state: ItemState
    if current.get("status") == "completed" and progress.status == "started":
        state = {**current, "at": max(current.get("at", ""), at)}  # never back to started
    else:
        state = {"status": progress.status, "score": progress.score, "at": at}
        if progress.score is None and current.get("score") is not None:
            state["score"] = current["score"]
    items: dict[str, ItemState] = {**record.get("items", {}), progress.item_id: state}
    changed = _remember(
        {**record, "items": items, "version": record["version"] + 1}, progress.event_id
    )
    events = [_event(progress.event_id, "progress_updated", changed, course, progress.occurred_at)]
    view = progress_of(course, items, None)
    if (
        record.get("completed_at") is None
        and view["total_items"]
        and view["completed_items"] == view["total_items"]
    ):
        changed = {
            **changed,
            "status": "completed",
            "completed_at": at,
            "version": changed["version"] + 1,
        }
        events.append(
            _event(progress.event_id, "course_completed", changed, course, progress.occurred_at)
        )
    return EnrollmentDecision(
        Outcome.APPLIED, changed, None, tuple(events), reply_enrollment=public_view(changed, course)
    )


# Seats: one record per course in the enrollments table (same changelog partition as the
# course's enrollment records, so after a crash the table holds a prefix of the writes).
# A seat change writes the seats record first, marked pending with the enrollment it
# belongs to, then that enrollment (carrying the same `seat_seq`). If a crash keeps the
# first write but not the second, the next decision on the course sees the mark and undoes
# the count; the redelivered input then applies it again, once.

EMPTY_SEATS: SeatsRecord = {"count": 0, "seq": 0, "pending": None}


def settle_seats(seats: SeatsRecord, pending_record: EnrollmentRecord | None) -> SeatsRecord:
    """Seats with no pending mark: kept if its enrollment was written, else undone."""
    pending = seats.get("pending")
    if not pending:
        return seats
    written = pending_record is not None and pending_record.get("seat_seq") == seats["seq"]
    count = seats["count"] if written else seats["count"] - pending["delta"]
    return {"count": max(0, count), "seq": seats["seq"], "pending": None}


def seat_change(seats: SeatsRecord, user_id: str, new_count: int) -> tuple[SeatsRecord, int]:
    """The seats record for a change to `new_count` by `user_id`, and the seq it takes."""
    seq = seats["seq"] + 1
    return {
        "count": new_count,
        "seq": seq,
        "pending": {"user_id": user_id, "delta": new_count - seats["count"]},
    }, seq

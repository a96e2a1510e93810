"""Enrollment decisions: seats, windows, duplicates, cancelling, progress. Pure."""

import uuid
from datetime import UTC, datetime, timedelta

from course_management.domain.enrollment import (
    CancelInput,
    EnrollInput,
    decide_cancel,
    decide_enroll,
    progress_of,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def course(**overrides) -> dict:
    base = {
        "id": "c-1",
        "status": "published",
        "capacity": 2,
        "enrollment_opens_at": None,
        "enrollment_closes_at": None,
        "modules": [
            {"id": "m1", "position": 0, "items": [{"id": "i1"}, {"id": "i2"}]},
            {"id": "m2", "position": 1, "items": [{"id": "i3"}]},
        ],
    }
    return {**base, **overrides}


def enroll(user: str = "u1", event_id: str | None = None, at: datetime = T0) -> EnrollInput:
    return EnrollInput(event_id or str(uuid.uuid4()), "c-1", user, at, "test")


def test_a_first_enrollment_takes_a_seat_and_publishes_enrollment_created() -> None:
    decision = decide_enroll(course(), 0, None, enroll())
    assert decision.status == 201
    assert decision.seats_taken == 1
    assert decision.event["event_type"] == "enrollment_created"
    assert decision.reply_enrollment["status"] == "active"
    assert decision.reply_enrollment["progress"]["total_items"] == 3
    assert decision.reply_enrollment["progress"]["next_item_id"] == "i1"


def test_the_same_event_twice_enrolls_once() -> None:
    first = decide_enroll(course(), 0, None, enroll(event_id="e-1"))
    again = decide_enroll(course(), 1, first.enrollment, enroll(event_id="e-1"))
    assert again.status == 200
    assert (again.enrollment, again.seats_taken, again.event) == (None, None, None)


def test_enrolling_again_while_enrolled_is_200_without_a_seat() -> None:
    first = decide_enroll(course(), 0, None, enroll())
    again = decide_enroll(course(), 1, first.enrollment, enroll())
    assert again.status == 200 and again.seats_taken is None and again.event is None


def test_a_full_course_refuses_with_course_full() -> None:
    decision = decide_enroll(course(capacity=1), 1, None, enroll("u2"))
    assert decision.status == 409
    assert decision.problem.type.endswith("/course-full")
    assert decision.enrollment is None and decision.event is None


def test_a_draft_or_closed_course_refuses() -> None:
    assert decide_enroll(course(status="draft"), 0, None, enroll()).problem.type.endswith(
        "/course-not-published"
    )
    closed = course(enrollment_closes_at="2026-11-27T11:00:00.000Z")
    assert decide_enroll(closed, 0, None, enroll()).problem.type.endswith("/enrollment-closed")
    later = course(enrollment_opens_at="2026-11-28T00:00:00.000Z")
    assert decide_enroll(later, 0, None, enroll()).problem.type.endswith("/enrollment-closed")


def test_an_unknown_course_is_404() -> None:
    assert decide_enroll(None, 0, None, enroll()).status == 404


def test_cancelling_frees_the_seat_and_enrolling_again_works() -> None:
    first = decide_enroll(course(capacity=1), 0, None, enroll())
    cancel = decide_cancel(
        course(capacity=1), 1, first.enrollment, CancelInput("x", "c-1", "u1", T0)
    )
    assert cancel.status == 204 and cancel.seats_taken == 0
    assert cancel.event["event_type"] == "enrollment_cancelled"
    again = decide_enroll(
        course(capacity=1), 0, cancel.enrollment, enroll(at=T0 + timedelta(hours=1))
    )
    assert again.status == 201 and again.seats_taken == 1
    assert again.enrollment["version"] == 3


def test_a_replayed_enroll_after_a_cancel_does_not_re_enroll() -> None:
    first = decide_enroll(course(), 0, None, enroll(event_id="e-1"))
    cancel = decide_cancel(course(), 1, first.enrollment, CancelInput("x", "c-1", "u1", T0))
    replay = decide_enroll(course(), 0, cancel.enrollment, enroll(event_id="e-1"))
    assert replay.status == 200 and replay.enrollment is None and replay.seats_taken is None


def test_cancelling_without_an_enrollment_is_404() -> None:
    assert decide_cancel(course(), 0, None, CancelInput("x", "c-1", "u1", T0)).status == 404


def test_progress_counts_the_courses_current_items() -> None:
    items = {
        "i1": {"status": "completed", "at": "2026-11-27T12:00:00.000Z"},
        "i2": {"status": "started", "at": "2026-11-27T12:05:00.000Z"},
        "gone": {"status": "completed", "at": "2026-11-27T11:00:00.000Z"},
    }
    progress = progress_of(course(), items, None)
    assert progress["completed_items"] == 1 and progress["total_items"] == 3
    assert progress["percent"] == 33.33
    assert progress["next_item_id"] == "i2"
    assert progress["last_activity_at"] == "2026-11-27T12:05:00.000Z"

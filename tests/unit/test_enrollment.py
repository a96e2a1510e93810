"""Enrollment decisions: seats, windows, duplicates, cancelling, progress. Pure."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from course_management.domain.enrollment import (
    CancelInput,
    EnrollInput,
)
from course_management.domain.outcomes import Outcome, RefusalKind
from course_management.domain.progress import progress_of, public_view
from course_management.domain.seats import decide_cancel, decide_enroll

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def course(**overrides) -> dict:
    base = {
        "id": "c-1",
        "status": "published",
        "capacity": 2,
        "enrollment_opens_at": None,
        "enrollment_closes_at": None,
        "modules": [
            {
                "id": "m1",
                "position": 0,
                "items": [{"id": "i1", "type": "quiz", "max_score": 10}, {"id": "i2"}],
            },
            {"id": "m2", "position": 1, "items": [{"id": "i3"}]},
        ],
    }
    return {**base, **overrides}


def enroll(user: str = "u1", event_id: str | None = None, at: datetime = T0) -> EnrollInput:
    return EnrollInput(event_id or str(uuid.uuid4()), "c-1", user, at, "test")


def test_a_first_enrollment_takes_a_seat_and_publishes_enrollment_created() -> None:
    decision = decide_enroll(course(), {"count": 0, "seq": 0}, None, enroll())
    assert decision.outcome is Outcome.CREATED
    assert decision.seats_taken == 1
    assert decision.events[0]["event_type"] == "enrollment_created"
    assert decision.reply_enrollment["status"] == "active"
    assert decision.reply_enrollment["progress"]["total_items"] == 3
    assert decision.reply_enrollment["progress"]["next_item_id"] == "i1"


def test_the_same_event_twice_enrolls_once() -> None:
    first = decide_enroll(course(), {"count": 0, "seq": 0}, None, enroll(event_id="e-1"))
    again = decide_enroll(
        course(), {"count": 1, "seq": 0}, first.enrollment, enroll(event_id="e-1")
    )
    assert again.outcome is Outcome.UNCHANGED
    assert (again.enrollment, again.seats_taken, again.events) == (None, None, ())


def test_enrolling_again_while_enrolled_is_200_without_a_seat() -> None:
    first = decide_enroll(course(), {"count": 0, "seq": 0}, None, enroll())
    again = decide_enroll(course(), {"count": 1, "seq": 0}, first.enrollment, enroll())
    assert again.outcome is Outcome.UNCHANGED and again.seats_taken is None and again.events == ()


def test_a_full_course_refuses_with_course_full() -> None:
    decision = decide_enroll(course(capacity=1), {"count": 1, "seq": 0}, None, enroll("u2"))
    assert decision.refusal.kind is RefusalKind.COURSE_FULL
    assert decision.refusal.kind.value == "course-full"  # the problem type callers see
    assert decision.enrollment is None and decision.events == ()


def test_a_draft_or_closed_course_refuses() -> None:
    draft = decide_enroll(course(status="draft"), {"count": 0, "seq": 0}, None, enroll())
    assert draft.refusal.kind is RefusalKind.COURSE_NOT_PUBLISHED
    closed = course(enrollment_closes_at="2026-11-27T11:00:00.000Z")
    assert (
        decide_enroll(closed, {"count": 0, "seq": 0}, None, enroll()).refusal.kind
        is RefusalKind.ENROLLMENT_CLOSED
    )
    later = course(enrollment_opens_at="2026-11-28T00:00:00.000Z")
    assert (
        decide_enroll(later, {"count": 0, "seq": 0}, None, enroll()).refusal.kind
        is RefusalKind.ENROLLMENT_CLOSED
    )


def test_an_unknown_course_is_refused() -> None:
    assert (
        decide_enroll(None, {"count": 0, "seq": 0}, None, enroll()).refusal.kind
        is RefusalKind.COURSE_NOT_FOUND
    )


def test_cancelling_frees_the_seat_and_enrolling_again_works() -> None:
    first = decide_enroll(course(capacity=1), {"count": 0, "seq": 0}, None, enroll())
    cancel = decide_cancel(
        course(capacity=1),
        {"count": 1, "seq": 0},
        first.enrollment,
        CancelInput("x", "c-1", "u1", T0),
    )
    assert cancel.outcome is Outcome.REMOVED and cancel.seats_taken == 0
    assert cancel.events[0]["event_type"] == "enrollment_cancelled"
    again = decide_enroll(
        course(capacity=1),
        {"count": 0, "seq": 0},
        cancel.enrollment,
        enroll(at=T0 + timedelta(hours=1)),
    )
    assert again.outcome is Outcome.CREATED and again.seats_taken == 1
    assert again.enrollment["version"] == 3


def test_a_replayed_enroll_after_a_cancel_does_not_re_enroll() -> None:
    first = decide_enroll(course(), {"count": 0, "seq": 0}, None, enroll(event_id="e-1"))
    cancel = decide_cancel(
        course(), {"count": 1, "seq": 0}, first.enrollment, CancelInput("x", "c-1", "u1", T0)
    )
    replay = decide_enroll(
        course(), {"count": 0, "seq": 0}, cancel.enrollment, enroll(event_id="e-1")
    )
    assert (
        replay.outcome is Outcome.UNCHANGED
        and replay.enrollment is None
        and replay.seats_taken is None
    )


def test_cancelling_without_an_enrollment_is_404() -> None:
    assert (
        decide_cancel(
            course(), {"count": 0, "seq": 0}, None, CancelInput("x", "c-1", "u1", T0)
        ).refusal.kind
        is RefusalKind.NOT_ENROLLED
    )


def test_progress_counts_the_courses_current_items() -> None:
    items = {
        "i1": {"status": "completed", "at": "2026-11-27T12:00:00.000Z"},
        "i2": {"status": "started", "at": "2026-11-27T12:05:00.000Z"},
        "gone": {"status": "completed", "at": "2026-11-27T11:00:00.000Z"},
    }
    progress = progress_of(course(), items, None, "2026-11-27T12:00:00.000Z", T0)
    assert progress["completed_items"] == 1 and progress["total_items"] == 3
    assert progress["percent"] == 33.33
    assert progress["next_item_id"] == "i2"
    assert progress["last_activity_at"] == "2026-11-27T12:05:00.000Z"


def progress(
    item: str,
    status: str = "completed",
    event_id: str | None = None,
    score: float | None = None,
    minute: int = 1,
):
    from course_management.domain.enrollment import ProgressInput

    return ProgressInput(
        event_id or str(uuid.uuid4()),
        "c-1",
        "u1",
        item,
        status,
        score,
        T0 + timedelta(minutes=minute),
    )


def enrolled() -> dict:
    return decide_enroll(course(), {"count": 0, "seq": 0}, None, enroll()).enrollment


def test_scores_are_checked_against_the_item_and_the_best_counts() -> None:
    """Issue 25, item 2: a score on a lesson, below 0 or above max_score is refused
    naming `score` (422 over HTTP, a dead letter from Kafka), changing nothing; the best
    score counts, whatever the order of the reports."""
    from course_management.domain.reports import decide_progress

    for item_id, score, message in (
        ("i2", 3.0, "a lesson takes no score"),
        ("i1", 10.5, "must be 0..10 (the item's max_score)"),
        ("i1", -1.0, "must be 0..10 (the item's max_score)"),
    ):
        refused = decide_progress(course(), enrolled(), progress(item_id, score=score))
        assert refused.enrollment is None and refused.events == ()
        assert refused.refusal is not None and refused.refusal.kind is RefusalKind.INVALID
        assert refused.refusal.errors == ({"field": "score", "message": message},)
    record = enrolled()
    for score in (9.0, 4.0, 10.0, 2.0):
        record = decide_progress(course(), record, progress("i1", score=score)).enrollment or record
    assert record["items"]["i1"]["score"] == 10.0
    worse = decide_progress(course(), record, progress("i1", score=1.0, minute=9))
    assert (worse.enrollment or record)["items"]["i1"]["score"] == 10.0  # never taken back


def test_progress_updates_and_next_item_moves_on() -> None:
    from course_management.domain.reports import decide_progress

    decision = decide_progress(course(), enrolled(), progress("i1", score=8.5))
    assert decision.outcome is Outcome.APPLIED
    assert [e["event_type"] for e in decision.events] == ["progress_updated"]
    view = decision.reply_enrollment["progress"]
    assert (view["completed_items"], view["next_item_id"]) == (1, "i2")
    assert decision.enrollment["items"]["i1"]["score"] == 8.5


def test_completing_every_item_completes_once() -> None:
    from course_management.domain.reports import decide_progress

    record = enrolled()
    for minute, item in enumerate(["i1", "i2"], start=1):
        record = decide_progress(course(), record, progress(item, minute=minute)).enrollment
    last = decide_progress(course(), record, progress("i3", minute=5))
    assert [e["event_type"] for e in last.events] == ["progress_updated", "course_completed"]
    assert last.enrollment["status"] == "completed"
    assert last.reply_enrollment["progress"]["completed_at"] == "2026-11-27T12:05:00.000Z"
    again = decide_progress(course(), last.enrollment, progress("i3", minute=6))
    assert [e["event_type"] for e in again.events] == ["progress_updated"]


def test_started_never_undoes_completed() -> None:
    from course_management.domain.reports import decide_progress

    done = decide_progress(course(), enrolled(), progress("i1")).enrollment
    after = decide_progress(course(), done, progress("i1", status="started", minute=2)).enrollment
    assert after["items"]["i1"]["status"] == "completed"


def test_progress_refusals() -> None:
    from course_management.domain.reports import decide_progress

    assert decide_progress(course(), None, progress("i1")).refusal.kind is RefusalKind.NOT_ENROLLED
    assert (
        decide_progress(None, enrolled(), progress("i1")).refusal.kind
        is RefusalKind.COURSE_NOT_FOUND
    )
    unknown = decide_progress(course(), enrolled(), progress("nope"))
    assert (
        unknown.refusal.kind is RefusalKind.INVALID
        and unknown.refusal.errors[0]["field"] == "item_id"
    )


def test_a_duplicate_progress_event_changes_nothing() -> None:
    from course_management.domain.reports import decide_progress

    first = decide_progress(course(), enrolled(), progress("i1", event_id="p-1"))
    again = decide_progress(course(), first.enrollment, progress("i1", event_id="p-1"))
    assert (again.enrollment, again.events) == (None, ())


def test_a_structure_change_moves_totals_but_a_completed_enrollment_stays_completed() -> None:
    from course_management.domain.reports import decide_progress

    record = enrolled()
    for minute, item in enumerate(["i1", "i2", "i3"], start=1):
        record = decide_progress(course(), record, progress(item, minute=minute)).enrollment
    bigger = course(
        modules=[*course()["modules"], {"id": "m3", "position": 2, "items": [{"id": "i4"}]}]
    )
    view = public_view(record, bigger, T0)
    assert view["status"] == "completed"
    assert (view["progress"]["completed_items"], view["progress"]["total_items"]) == (3, 4)
    assert view["progress"]["percent"] == 75.0
    assert view["progress"]["next_item_id"] == "i4"
    smaller = course(modules=[course()["modules"][0]])
    assert public_view(record, smaller, T0)["progress"]["total_items"] == 2


def test_a_seat_change_moves_the_count_and_always_grows_the_sequence() -> None:
    from course_management.domain.enrollment import EMPTY_SEATS, seat_change

    taken = seat_change(EMPTY_SEATS, 1)
    assert taken == {"count": 1, "seq": 1}
    assert seat_change(taken, 0) == {"count": 0, "seq": 2}


def test_a_mirror_batch_keeps_the_newest_event_of_each_enrollment() -> None:
    from course_management.infra.enrollment_mirror import newest_per_enrollment

    def event(user: str, version: int) -> dict[str, Any]:
        return {"course_id": "c", "user_id": user, "version": version}

    batch = [event("a", 1), event("b", 1), event("a", 3), event("a", 2), event("b", 1)]
    newest = {e["user_id"]: e["version"] for e in newest_per_enrollment(batch)}
    assert newest == {"a": 3, "b": 1}
    assert len(newest_per_enrollment(batch)) == 2


def test_inputs_from_other_services_that_cannot_be_stored_are_malformed() -> None:
    from course_management.domain.enrollment import malformed_input

    required = ("event_id", "course_id", "user_id")
    good = {"event_id": "e", "course_id": "c", "user_id": "u", "source": None}
    assert malformed_input(good, required) is None
    assert malformed_input({**good, "user_id": ""}, required) == "empty user_id"
    assert malformed_input({**good, "user_id": "u" * 201}, required) == (
        "user_id over 200 characters"
    )
    assert malformed_input({**good, "user_id": "a\x00b"}, required) == (
        "user_id with a NUL character"
    )


def test_a_record_keeps_a_bounded_history_through_ten_thousand_reenrolments() -> None:
    """Issue 24, item 13: the record kept every status change; ten thousand cycles of
    cancel and enrol again made it larger than a Kafka record may be."""
    import json

    from course_management.domain.enrollment import HISTORY_KEPT

    record = decide_enroll(course(), {"count": 0, "seq": 0}, None, enroll()).enrollment
    sizes = []
    for n in range(5000):
        cancel = CancelInput(f"c-{n}", "c-1", "u1", T0)
        record = decide_cancel(course(), {"count": 1, "seq": 0}, record, cancel).enrollment
        record = decide_enroll(
            course(), {"count": 0, "seq": 0}, record, enroll(event_id=f"e-{n}")
        ).enrollment
        if n in (2000, 4999):
            sizes.append(len(json.dumps(record)))
    assert len(record["history"]) == HISTORY_KEPT
    assert sizes[1] < sizes[0] * 1.1 < 256 * 1024  # flat once full (ids grow a digit)
    assert record["history"][-1]["event_id"] == "e-4999"
    # a repeat of a recent input is still recognised by its event id
    again = decide_enroll(course(), {"count": 1, "seq": 0}, record, enroll(event_id="e-4999"))
    assert again.enrollment is None and again.events == ()

"""Ratings: enrolled students only, one each, replacements exact, redelivery harmless, and
no course version (decision 52)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from course_management.domain.commands import Actor, CourseCommand
from course_management.domain.enrollment import EMPTY_SEATS
from course_management.domain.outcomes import RefusalKind
from course_management.domain.ratings import as_read, course_rating, decide_rating
from tests.unit.decisions import decide

OWNER = Actor("instructor-1", "Ada", ("instructor",))
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MODULE = {"title": "M", "position": 0, "items": [{"type": "lesson", "title": "L", "position": 0}]}


def command(kind: str, payload: dict, actor: Actor, at: int = 1) -> CourseCommand:
    return CourseCommand(
        command_id=str(uuid.uuid4()),
        command_type=kind,
        course_id="c-1",
        occurred_at=T0 + timedelta(minutes=at),
        actor=actor,
        payload=payload,
        payload_hash="h",
    )


def published() -> dict:
    decision = decide(
        None,
        command(
            "create_course",
            {"title": "Kafka", "status": "published", "modules": [MODULE]},
            OWNER,
            0,
        ),
    )
    assert decision.record is not None
    return decision.record


def student(name: str) -> Actor:
    return Actor(name, name, ("student",))


def enrolled(name: str) -> dict:
    return {"course_id": "c-1", "user_id": name, "status": "active", "version": 1}


def test_only_enrolled_students_rate() -> None:
    record = published()
    refused = decide_rating(
        record, EMPTY_SEATS, None, command("rate_course", {"stars": 5}, student("s"))
    )
    assert refused.reply.outcome == RefusalKind.NOT_ENROLLED and refused.record is None
    cancelled = {**enrolled("s"), "status": "cancelled"}
    rate = command("rate_course", {"stars": 5}, student("s"))
    assert (
        decide_rating(record, EMPTY_SEATS, cancelled, rate).reply.outcome
        == RefusalKind.ENROLLMENT_CANCELLED
    )
    gone = {**record, "deleted": True}
    assert (
        decide_rating(gone, EMPTY_SEATS, enrolled("s"), rate).reply.outcome
        == RefusalKind.COURSE_NOT_FOUND
    )


def test_replacements_keep_the_average_exact_and_make_no_course_version() -> None:
    record = published()
    seats = {"count": 2, "seq": 7}
    enrollments = {"a": enrolled("a"), "b": enrolled("b")}
    for user, stars, average, count in [
        ("a", 5, 5.0, 1),
        ("b", 2, 3.5, 2),
        ("a", 3, 2.5, 2),  # replaces a's 5
        ("b", 4, 3.5, 2),
        ("a", 3, 3.5, 2),  # the same again: nothing changes
    ]:
        decision = decide_rating(
            record,
            seats,
            enrollments[user],
            command("rate_course", {"stars": stars}, student(user)),
        )
        assert decision.reply.refusal is None
        assert decision.reply.body["course_rating"] == {"average": average, "count": count}
        if decision.record is not None:
            assert decision.record["course"] == record["course"]  # the command remembered only
            record = decision.record
        if decision.seats is not None:
            assert decision.seats["seq"] == seats["seq"] + 1  # the catalog's and cache's version
            seats = decision.seats
        if decision.enrollment is not None:
            enrollments[user] = decision.enrollment
    assert course_rating(record, seats) == {"average": 3.5, "count": 2}
    assert seats == {"count": 2, "seq": 11, "rating_sum": 7, "rating_count": 2}
    assert record["course"]["version"] == 1  # authored once; four ratings made no version
    shown = as_read(record["course"], record, seats)
    assert shown["rating"] == {"average": 3.5, "count": 2} and shown["enrollment_count"] == 2


def test_a_course_rated_before_decision_52_keeps_its_totals() -> None:
    """The totals were on the course record: the first rating since carries them over."""
    record = published()
    legacy = {
        **record,
        "rating_sum": 9,
        "course": {**record["course"], "rating": {"average": 4.5, "count": 2}},
    }
    assert course_rating(legacy, EMPTY_SEATS) == {"average": 4.5, "count": 2}
    rate = command("rate_course", {"stars": 3}, student("c"))
    decision = decide_rating(legacy, EMPTY_SEATS, enrolled("c"), rate)
    assert decision.seats == {"count": 0, "seq": 1, "rating_sum": 12, "rating_count": 3}
    assert course_rating(legacy, decision.seats) == {"average": 4.0, "count": 3}


def test_a_redelivered_rating_is_answered_as_the_first_time() -> None:
    record = published()
    rate = command("rate_course", {"stars": 4, "review": "good"}, student("a"))
    first = decide_rating(record, EMPTY_SEATS, enrolled("a"), rate)
    assert first.seats is not None and first.record is not None and first.enrollment is not None
    again = decide_rating(first.record, first.seats, first.enrollment, rate)
    assert again.seats is None and again.record is None and again.enrollment is None
    assert again.reply == first.reply


def test_stars_and_review_are_validated() -> None:
    record = published()
    for payload in (
        {"stars": 0},
        {"stars": 6},
        {"stars": "5"},
        {"stars": 4, "review": "x" * 2001},
        {"stars": 4, "mood": "x"},
    ):
        decision = decide_rating(
            record, EMPTY_SEATS, enrolled("a"), command("rate_course", payload, student("a"))
        )
        assert decision.reply.outcome == RefusalKind.INVALID, payload

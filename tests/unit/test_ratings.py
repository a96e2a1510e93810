"""Ratings: enrolled students only, one each, replacements exact, redelivery harmless."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from course_management.domain.commands import Actor, CourseCommand
from course_management.domain.outcomes import RefusalKind
from course_management.domain.ratings import decide_rating
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
    refused = decide_rating(record, None, command("rate_course", {"stars": 5}, student("s")))
    assert refused.reply.outcome == RefusalKind.NOT_ENROLLED and refused.record is None
    cancelled = {**enrolled("s"), "status": "cancelled"}
    assert (
        decide_rating(
            record, cancelled, command("rate_course", {"stars": 5}, student("s"))
        ).reply.outcome
        == RefusalKind.ENROLLMENT_CANCELLED
    )
    gone = {**record, "deleted": True}
    assert (
        decide_rating(
            gone, enrolled("s"), command("rate_course", {"stars": 5}, student("s"))
        ).reply.outcome
        == RefusalKind.COURSE_NOT_FOUND
    )


def test_replacements_keep_the_average_exact() -> None:
    record = published()
    enrollments = {"a": enrolled("a"), "b": enrolled("b")}
    for user, stars, average, count in [
        ("a", 5, 5.0, 1),
        ("b", 2, 3.5, 2),
        ("a", 3, 2.5, 2),  # replaces a's 5
        ("b", 4, 3.5, 2),
        ("a", 3, 3.5, 2),  # the same again: nothing changes
    ]:
        decision = decide_rating(
            record, enrollments[user], command("rate_course", {"stars": stars}, student(user))
        )
        assert decision.reply.refusal is None
        assert decision.reply.body["course_rating"] == {"average": average, "count": count}
        if decision.record is not None:
            record = decision.record
        if decision.enrollment is not None:
            enrollments[user] = decision.enrollment
    assert record["course"]["rating"] == {"average": 3.5, "count": 2}
    assert record["course"]["version"] == 5  # created, then four real changes


def test_a_redelivered_rating_is_applied_once_and_finishes_its_second_write() -> None:
    record = published()
    rate = command("rate_course", {"stars": 4, "review": "good"}, student("a"))
    first = decide_rating(record, enrolled("a"), rate)
    assert first.event is not None and first.record is not None and first.enrollment is not None
    # The crash came after the course record was written, before the enrollment was.
    again = decide_rating(first.record, enrolled("a"), rate)
    assert again.event is None and again.record is None
    assert again.enrollment == first.enrollment  # the second write, idempotent
    assert again.reply == first.reply
    done = decide_rating(first.record, first.enrollment, rate)
    assert done.enrollment is None and done.record is None


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
            record, enrolled("a"), command("rate_course", payload, student("a"))
        )
        assert decision.reply.outcome == RefusalKind.INVALID, payload

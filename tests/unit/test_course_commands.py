"""The pure decision of a create command: deterministic, idempotent, validated."""

import uuid
from datetime import UTC, datetime

from course_management.domain.commands import Actor, CourseCommand
from course_management.domain.course import json_size
from course_management.domain.outcomes import Outcome, RefusalKind
from tests.unit.decisions import decide

ACTOR = Actor("instructor-1", "Ada", ("instructor",))
WHEN = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def create(
    payload: dict, *, command_id: str | None = None, payload_hash: str = "h1"
) -> CourseCommand:
    return CourseCommand(
        command_id=command_id or str(uuid.uuid4()),
        command_type="create_course",
        course_id="c-1",
        occurred_at=WHEN,
        actor=ACTOR,
        payload=payload,
        payload_hash=payload_hash,
    )


def test_create_makes_version_1_with_the_instructor_from_the_token() -> None:
    decision = decide(None, create({"title": "Kafka", "description": "streams"}))
    assert decision.reply.outcome == Outcome.CREATED
    course = decision.reply.body
    assert course["version"] == 1
    assert course["instructor"] == {"id": "instructor-1", "name": "Ada"}
    assert course["status"] == "draft"
    assert course["created_at"] == "2026-11-27T10:00:00.000Z"
    assert decision.event["event_type"] == "course_created"
    assert decision.event["course"] == course
    assert decision.record["course"] == course


def test_the_same_command_decides_the_same_thing_twice() -> None:
    command = create({"title": "Kafka", "modules": [{"title": "M", "position": 0}]})
    first, again = decide(None, command), decide(None, command)
    assert first.event == again.event
    assert first.reply == again.reply


def test_a_redelivered_command_changes_nothing_and_publishes_nothing() -> None:
    command = create({"title": "Kafka"})
    applied = decide(None, command)
    repeat = decide(applied.record, command)
    assert repeat.record is None
    assert repeat.event is None
    assert repeat.reply == applied.reply


def test_a_repeated_create_with_the_same_body_returns_the_first_result() -> None:
    applied = decide(None, create({"title": "Kafka"}))
    repeat = decide(applied.record, create({"title": "Kafka"}))
    assert (repeat.record, repeat.event) == (None, None)
    assert repeat.reply.outcome == Outcome.CREATED
    assert repeat.reply.body == applied.reply.body


def test_a_repeated_create_with_another_body_is_refused() -> None:
    applied = decide(None, create({"title": "Kafka"}))
    other = decide(applied.record, create({"title": "Other"}, payload_hash="h2"))
    assert other.reply.outcome == RefusalKind.INVALID
    assert other.reply.body["errors"][0]["field"] == "Idempotency-Key"
    assert (other.record, other.event) == (None, None)


def test_an_invalid_payload_changes_nothing() -> None:
    decision = decide(None, create({"title": ""}))
    assert decision.reply.outcome == RefusalKind.INVALID
    assert decision.reply.body["errors"][0]["field"] == "title"
    assert (decision.record, decision.event) == (None, None)


def test_modules_and_items_get_server_ids_and_come_back_in_order() -> None:
    payload = {
        "title": "T",
        "modules": [
            {"title": "second", "position": 1},
            {
                "title": "first",
                "position": 0,
                "items": [
                    {"type": "quiz", "title": "q", "position": 1, "max_score": 5},
                    {"type": "lesson", "title": "l", "position": 0},
                ],
            },
        ],
    }
    course = decide(None, create(payload)).reply.body
    assert [m["title"] for m in course["modules"]] == ["first", "second"]
    assert [i["type"] for i in course["modules"][0]["items"]] == ["lesson", "quiz"]
    ids = [m["id"] for m in course["modules"]] + [i["id"] for i in course["modules"][0]["items"]]
    assert len(set(ids)) == 4


def _items(n: int) -> list[dict]:
    return [{"type": "lesson", "title": f"Lesson {i}", "position": i} for i in range(n)]


def _modules(count: int, items: int) -> list[dict]:
    return [{"title": f"M{m}", "position": m, "items": _items(items)} for m in range(count)]


def test_a_course_too_large_for_one_kafka_record_is_refused_naming_modules() -> None:
    decision = decide(None, create({"title": "Huge", "modules": _modules(20, 100)}))
    assert decision.reply.outcome == RefusalKind.INVALID
    assert [e["field"] for e in decision.reply.body["errors"]] == ["modules"]
    assert (decision.record, decision.event) == (None, None)


def test_an_update_that_would_make_a_course_too_large_is_refused() -> None:
    applied = decide(None, create({"title": "Growing", "modules": _modules(2, 100)}))
    update = CourseCommand(
        command_id=str(uuid.uuid4()),
        command_type="update_course",
        course_id="c-1",
        occurred_at=WHEN,
        actor=ACTOR,
        payload={"modules": _modules(20, 100)},
    )
    refused = decide(applied.record, update)
    assert refused.reply.outcome == RefusalKind.INVALID
    assert [e["field"] for e in refused.reply.body["errors"]] == ["modules"]
    assert refused.record is None


def test_remembered_replies_keep_the_course_version_not_a_copy() -> None:
    record = decide(None, create({"title": "Kept", "modules": _modules(4, 100)})).record
    size_after_create = json_size(record)
    for n in range(20):
        update = CourseCommand(
            command_id=f"u-{n}",
            command_type="update_course",
            course_id="c-1",
            occurred_at=WHEN,
            actor=ACTOR,
            payload={"title": f"Kept {n}"},
        )
        record = decide(record, update).record
    assert json_size(record) < size_after_create * 1.1  # 16 replies kept, no course copies
    # A repeat of a remembered update answers with the course as it is now.
    repeat = decide(record, CourseCommand("u-19", "update_course", "c-1", WHEN, ACTOR, {}))
    assert repeat.reply.refusal is None
    assert repeat.reply.body == record["course"]
    assert repeat.record is None

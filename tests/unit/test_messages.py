"""Every wire message round-trips through its real Avro schema (schemas/*.avsc, written
and read with fastavro as the codec does): encode, write, read, decode gives the value
back. So a field added to a message and not to its schema, or the reverse, fails here."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from course_management.domain.commands import Actor, CourseCommand, decide_create
from course_management.domain.enrollment import (
    EnrollInput,
    ProgressInput,
)
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind, Reply
from course_management.domain.reports import decide_progress
from course_management.domain.seats import decide_enroll
from course_management.infra.avro import load_schema_text
from course_management.messages import (
    catalog_entry,
    command_reply,
    course_command,
    course_event,
    enrollment_event,
    item_progress,
    rating_entry,
    user_enrolled,
)

WHEN = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
ACTOR = Actor("instructor-1", "Ada", ("instructor",))
MODULES = [
    {"title": "M", "position": 0, "items": [{"type": "lesson", "title": "L", "position": 0}]}
]


def _through(schema_file: str, record: dict[str, Any]) -> dict[str, Any]:
    schema = fastavro.parse_schema(json.loads(load_schema_text(schema_file)))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    read: dict[str, Any] = fastavro.schemaless_reader(buffer, schema, schema)  # type: ignore[call-arg,assignment]
    # as infra/avro.AvroCodec.decode hands them on: ids as text
    return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in read.items()}


def _created() -> Any:
    command = CourseCommand(
        str(uuid.uuid4()),
        "create_course",
        "c-1",
        WHEN,
        ACTOR,
        {"title": "Kafka", "status": "published", "modules": MODULES},
        "h",
    )
    return decide_create(None, command)


def test_course_command() -> None:
    command = CourseCommand(
        str(uuid.uuid4()), "update_course", "c-1", WHEN, ACTOR, {"title": "é"}, "h", 3
    )
    sent = course_command.SentCommand(command, "course-management-replies-w1")
    assert (
        course_command.decode(_through("course_command.avsc", course_command.encode(sent))) == sent
    )


@pytest.mark.parametrize(
    "reply",
    [
        Reply(Outcome.CREATED, {"id": "c-1"}, "token"),
        Reply(Outcome.APPLIED, None, None),
        Reply.refusing(Refusal(RefusalKind.COURSE_FULL, "no seat")),
    ],
)
def test_command_reply(reply: Reply) -> None:
    answer = command_reply.CommandReply(str(uuid.uuid4()), reply)
    record = _through("command_reply.avsc", command_reply.encode(answer))
    assert record["status"] == 0  # superseded, see the module
    assert command_reply.decode(record) == answer


def test_a_reply_of_a_worker_before_outcome_is_read_by_its_status() -> None:
    old = {"command_id": "x", "status": 409, "body_json": '{"type": "/problems/course-full"}'}
    decoded = command_reply.decode({**old, "outcome": None, "consistency_token": None})
    assert decoded.reply.outcome == "course-full"


def test_user_enrolled() -> None:
    enroll = EnrollInput(str(uuid.uuid4()), "c-1", "u-1", WHEN, "api")
    assert (
        user_enrolled.decode(_through("user_enrolled.avsc", user_enrolled.encode(enroll))) == enroll
    )


def test_item_progress() -> None:
    for score in (None, 7.5):
        progress = ProgressInput(str(uuid.uuid4()), "c-1", "u-1", "i-1", "completed", score, WHEN)
        record = _through("item_progress.avsc", item_progress.encode(progress))
        assert item_progress.decode(record) == progress


def test_an_input_without_its_ids_is_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="course_id"):
        user_enrolled.decode({"event_id": "e", "course_id": "", "user_id": "u"})
    with pytest.raises(ValueError, match="item_id"):
        item_progress.check({"event_id": "e", "course_id": "c", "user_id": "u", "item_id": ""})


def test_rating_entry() -> None:
    entry = rating_entry.RatingEntry("c-1", "u-1", 4, 7, 5, None, "2026-12-06T10:00:00.000Z")
    assert rating_entry.decode(_through("rating_entry.avsc", rating_entry.encode(entry))) == entry
    assert entry.key == "c-1:u-1"


def test_catalog_entry() -> None:
    listed: catalog_entry.CatalogEntry = {
        "course_id": "c-1",
        "catalog_version": 7,
        "listed": True,
        "document": {"title": "Kafka", "tags": ["x"]},
    }
    gone: catalog_entry.CatalogEntry = {**listed, "listed": False, "document": None}
    for entry in (listed, gone):
        record = _through("catalog_entry.avsc", catalog_entry.encode(entry))
        assert catalog_entry.decode(record) == entry


def test_course_event() -> None:
    event = _created().event
    assert event is not None
    back = course_event.decode(_through("course_event.avsc", course_event.encode(event)))
    assert back == event


def test_enrollment_event() -> None:
    course = _created().record["course"]
    item_id = course["modules"][0]["items"][0]["id"]
    enrolled = decide_enroll(
        course, {"count": 0, "seq": 0}, None, EnrollInput("e-1", "c-1", "u-1", WHEN, "api")
    )
    progressed = decide_progress(
        course,
        enrolled.enrollment,
        ProgressInput("e-2", "c-1", "u-1", item_id, "completed", None, WHEN),
    )
    events = [*enrolled.events, *progressed.events]
    assert [e["event_type"] for e in events] == [
        "enrollment_created",
        "progress_updated",
        "course_completed",
    ]
    for event in events:
        record = _through("enrollment_event.avsc", enrollment_event.encode(event))
        assert enrollment_event.decode(record) == event


def test_an_event_without_a_field_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="actor_id"):
        course_event.decode({"event_id": "e", "event_type": "course_created"})

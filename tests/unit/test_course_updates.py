"""Updates and deletes: partial changes, stable ids, transitions, ownership, versions."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from course_management.domain.commands import Actor, CourseCommand
from course_management.domain.outcomes import Outcome, RefusalKind
from tests.unit.decisions import decide

OWNER = Actor("instructor-1", "Ada", ("instructor",))
OTHER = Actor("instructor-2", "Bob", ("instructor",))
ADMIN = Actor("admin-1", "Root", ("admin",))
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def command(
    kind: str,
    payload: dict | None = None,
    actor: Actor = OWNER,
    version: int | None = None,
    at: int = 1,
) -> CourseCommand:
    return CourseCommand(
        command_id=str(uuid.uuid4()),
        command_type=kind,
        course_id="c-1",
        occurred_at=T0 + timedelta(minutes=at),
        actor=actor,
        payload=payload or {},
        payload_hash="h",
        expected_version=version,
    )


LESSON = {"type": "lesson", "title": "Intro", "position": 0}
QUIZ = {"type": "quiz", "title": "Check", "position": 1, "max_score": 10}


@pytest.fixture
def record() -> dict:
    created = decide(
        None,
        command(
            "create_course",
            {
                "title": "Kafka",
                "modules": [
                    {"title": "M1", "position": 0, "items": [LESSON, QUIZ]},
                ],
            },
            at=0,
        ),
    )
    assert created.reply.outcome == Outcome.CREATED
    return created.record


def test_a_partial_update_changes_only_the_given_fields_and_bumps_the_version(record: dict) -> None:
    decision = decide(record, command("update_course", {"description": "new"}))
    course = decision.reply.body
    assert decision.reply.refusal is None
    assert (course["version"], course["description"], course["title"]) == (2, "new", "Kafka")
    assert course["updated_at"] == "2026-11-27T10:01:00.000Z"
    assert course["created_at"] == "2026-11-27T10:00:00.000Z"
    assert decision.event["event_type"] == "course_updated"
    assert decision.event["version"] == 2


def test_an_update_that_changes_nothing_makes_no_version_and_no_event(record: dict) -> None:
    decision = decide(record, command("update_course", {"title": "Kafka"}))
    assert decision.reply.outcome == Outcome.UNCHANGED
    assert decision.reply.body["version"] == 1
    assert decision.event is None


def test_ids_of_kept_modules_and_items_stay_and_new_ones_get_ids(record: dict) -> None:
    module = record["course"]["modules"][0]
    lesson_id = module["items"][0]["id"]
    payload = {
        "modules": [
            {
                "id": module["id"],
                "title": "M1 renamed",
                "position": 0,
                "items": [
                    {"id": lesson_id, "type": "lesson", "title": "Intro", "position": 0},
                    {
                        "type": "assignment",
                        "title": "Build it",
                        "position": 1,
                        "max_score": 100,
                        "due_at": "2026-12-24T12:00:00Z",
                    },
                ],
            },
            {"title": "M2", "position": 1},
        ]
    }
    course = decide(record, command("update_course", payload)).reply.body
    assert course["modules"][0]["id"] == module["id"]
    assert course["modules"][0]["items"][0]["id"] == lesson_id
    new_ids = {course["modules"][0]["items"][1]["id"], course["modules"][1]["id"]}
    assert len(new_ids) == 2 and lesson_id not in new_ids
    assert course["modules"][0]["items"][1]["due_at"] == "2026-12-24T12:00:00.000Z"


def test_an_id_the_course_does_not_have_is_refused(record: dict) -> None:
    payload = {"modules": [{"id": "made-up", "title": "M", "position": 0}]}
    decision = decide(record, command("update_course", payload))
    assert decision.reply.outcome == RefusalKind.INVALID
    assert decision.reply.body["errors"][0]["field"] == "modules[0].id"
    assert decision.event is None


def test_positions_must_be_unique(record: dict) -> None:
    payload = {"modules": [{"title": "A", "position": 0}, {"title": "B", "position": 0}]}
    assert decide(record, command("update_course", payload)).reply.outcome == RefusalKind.INVALID


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (["published"], True),
        (["archived"], False),
        (["published", "archived"], True),
        (["published", "archived", "published"], True),
        (["published", "draft"], False),
    ],
)
def test_status_transitions(record: dict, path: list[str], allowed: bool) -> None:
    accepted = False
    for step, target in enumerate(path, start=1):
        decision = decide(record, command("update_course", {"status": target}, at=step))
        accepted = decision.reply.refusal is None
        if decision.record is not None:
            record = decision.record
    assert accepted is allowed


def test_publishing_needs_a_module_with_an_item() -> None:
    empty = decide(None, command("create_course", {"title": "Empty"}, at=0)).record
    decision = decide(empty, command("update_course", {"status": "published"}))
    assert decision.reply.outcome == RefusalKind.INVALID
    assert decision.reply.body["errors"][0]["field"] == "status"


def test_only_the_owner_or_an_admin_may_change(record: dict) -> None:
    assert (
        decide(record, command("update_course", {"title": "x"}, actor=OTHER)).reply.outcome
        == RefusalKind.COURSE_NOT_FOUND
    )
    published = decide(record, command("update_course", {"status": "published"})).record
    assert (
        decide(published, command("update_course", {"title": "x"}, actor=OTHER, at=2)).reply.outcome
        == RefusalKind.NOT_COURSE_OWNER
    )
    assert (
        decide(published, command("update_course", {"title": "x"}, actor=ADMIN, at=2)).reply.refusal
        is None
    )


def test_a_stale_if_match_is_412_and_a_current_one_applies(record: dict) -> None:
    assert (
        decide(record, command("update_course", {"title": "x"}, version=7)).reply.outcome
        == RefusalKind.VERSION_MISMATCH
    )
    assert decide(record, command("update_course", {"title": "x"}, version=1)).reply.refusal is None


def test_delete_publishes_course_deleted_and_the_course_is_gone(record: dict) -> None:
    deleted = decide(record, command("delete_course"))
    assert deleted.reply.outcome == Outcome.REMOVED
    assert deleted.event["event_type"] == "course_deleted"
    assert deleted.event["course"] is None
    assert deleted.event["version"] == 2
    assert deleted.record["deleted"] is True
    assert (
        decide(deleted.record, command("update_course", {"title": "x"}, at=2)).reply.outcome
        == RefusalKind.COURSE_NOT_FOUND
    )
    assert (
        decide(deleted.record, command("delete_course", at=2)).reply.outcome
        == RefusalKind.COURSE_NOT_FOUND
    )


def test_item_type_rules() -> None:
    for items, field in (
        ([{"type": "quiz", "title": "q", "position": 0}], "max_score"),
        ([{"type": "lesson", "title": "l", "position": 0, "max_score": 3}], "max_score"),
        (
            [
                {
                    "type": "quiz",
                    "title": "q",
                    "position": 0,
                    "max_score": 3,
                    "due_at": "2027-01-01T00:00:00Z",
                }
            ],
            "due_at",
        ),
    ):
        decision = decide(
            None,
            command(
                "create_course",
                {"title": "T", "modules": [{"title": "M", "position": 0, "items": items}]},
            ),
        )
        assert decision.reply.outcome == RefusalKind.INVALID
        assert decision.reply.body["errors"][0]["field"].endswith(field)


def test_the_enrollment_window_must_close_after_it_opens() -> None:
    payload = {
        "title": "T",
        "enrollment_opens_at": "2027-01-02T00:00:00Z",
        "enrollment_closes_at": "2027-01-01T00:00:00Z",
    }
    decision = decide(None, command("create_course", payload))
    assert decision.reply.body["errors"][0]["field"] == "enrollment_closes_at"


def test_null_is_refused_for_fields_that_cannot_be_empty(record: dict) -> None:
    decision = decide(record, command("update_course", {"title": None}))
    assert decision.reply.outcome == RefusalKind.INVALID
    assert decision.reply.body["errors"][0] == {"field": "title", "message": "cannot be null"}


def test_null_clears_a_nullable_field(record: dict) -> None:
    with_capacity = decide(record, command("update_course", {"capacity": 10})).record
    cleared = decide(with_capacity, command("update_course", {"capacity": None}, at=2)).reply.body
    assert cleared["capacity"] is None and cleared["version"] == 3


def test_published_at_is_the_first_publication_and_never_moves(record: dict) -> None:
    """Issue 24, item 12 (decision 53): a course drafted long ago and published today is
    new to the catalog; archiving and publishing it again does not make it new again."""
    assert record["course"]["status"] == "draft" and record["course"]["published_at"] is None
    titled = decide(record, command("update_course", {"title": "Still a draft"}, at=5))
    assert titled.record["course"]["published_at"] is None
    published = decide(titled.record, command("update_course", {"status": "published"}, at=60))
    assert published.record["course"]["published_at"] == "2026-11-27T11:00:00.000Z"
    archived = decide(published.record, command("update_course", {"status": "archived"}, at=90))
    again = decide(archived.record, command("update_course", {"status": "published"}, at=120))
    assert again.record["course"]["published_at"] == "2026-11-27T11:00:00.000Z"
    assert again.record["course"]["created_at"] == "2026-11-27T10:00:00.000Z"


def test_a_course_made_before_published_at_is_not_new_when_published_again(
    record: dict,
) -> None:
    """Decision 53, for courses made before the field: one that had left its draft keeps
    its creation as its publication; a draft of then gets the moment it is published."""
    legacy = {k: v for k, v in record["course"].items() if k != "published_at"}
    archived = {**record, "course": {**legacy, "status": "archived"}}
    again = decide(archived, command("update_course", {"status": "published"}, at=30))
    assert again.record["course"]["published_at"] == legacy["created_at"]
    draft = {**record, "course": legacy}
    first = decide(draft, command("update_course", {"status": "published"}, at=45))
    assert first.record["course"]["published_at"] == "2026-11-27T10:45:00.000Z"

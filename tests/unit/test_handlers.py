"""Each handler of the course agent's route table (streams/routes.py ROUTES), driven the
way the agent drives it (streams/agent.py `_decide`): inside `batch.deciding(event)` and
`batch.routed(route.writes, route.source)`, against a real `Batch` over an in-memory
store, with no servers. What a handler stages is read back from the batch: its outbox
records (events, catalog entries, rating entries, dead letters), its table writes
(`batch.final`) and its replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from course_management.catalog.query import catalog_version
from course_management.domain import consistency
from course_management.domain.commands import Actor, CourseCommand
from course_management.domain.consistency import Marks
from course_management.domain.enrollment import EnrollInput, ProgressInput
from course_management.domain.outcomes import Outcome, RefusalKind, Reply
from course_management.messages import (
    catalog_entry,
    command_reply,
    course_event,
    enrollment_event,
    rating_entry,
)
from course_management.streams import agent
from course_management.streams.batch import Batch, UndeclaredWrite
from course_management.streams.inputs import Input
from course_management.streams.routes import ROUTES, Route, route_of
from course_management.tables.keys import enrollment_key, seats_key
from course_management.tables.units import decode_value, encode_key, encode_value
from course_management.topology import (
    COURSE_CATALOG,
    COURSE_COMMANDS,
    COURSE_COMPLETIONS,
    COURSE_EVENTS,
    COURSE_PROGRESS,
    COURSE_RATINGS,
    ENROLLMENT_EVENTS,
    ENROLLMENT_INPUTS,
    REQUEST_ID_HEADER,
    USER_ENROLLED,
    dlq,
)

REPLY_TO = "course-management-replies-w1"
WHEN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
INSTRUCTOR = Actor("instructor-1", "Ada", ("instructor",))
OTHER_INSTRUCTOR = Actor("instructor-2", "Bea", ("instructor",))
STUDENT = Actor("student-1", "Sam", ("student",))
COURSE = "c-1"


# -- the harness ---------------------------------------------------------------------------


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int


@dataclass
class _Event:
    """Stands in for the Faust event the agent decides an input of."""

    message: _Message
    key: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


class _Store:
    """The table's local store: raw bytes by (partition, key)."""

    def __init__(self) -> None:
        self.data: dict[tuple[int, bytes], bytes | None] = {}

    def read(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get((partition, key))


def _encode(subject: str, value: dict[str, Any]) -> bytes:
    """Readable instead of Avro: the subject and the value, as JSON."""
    return orjson.dumps({"subject": subject, "value": value}, default=str)


@dataclass
class Staged:
    topic: str
    key: bytes | None
    subject: str | None  # None: a dead letter (its value is the input's, as it was)
    value: Any
    headers: dict[str, bytes]


def _staged(record: tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]) -> Staged:
    topic, key, value, headers = record
    if topic.endswith(".dlq"):
        return Staged(topic, key, None, value, dict(headers))
    body = orjson.loads(value or b"null")
    return Staged(topic, key, body["subject"], body["value"], dict(headers))


@dataclass
class Answer:
    reply_to: str
    correlation_id: str
    reply: Reply

    @property
    def marks(self) -> Marks | None:
        return consistency.decode(self.reply.token) if self.reply.token else None


@dataclass
class Ran:
    """What one input staged: its records (in order) and its replies."""

    records: list[Staged]
    replies: list[Answer]

    @property
    def topics(self) -> list[str]:
        return [r.topic for r in self.records]

    def dead_letters(self) -> list[Staged]:
        return [r for r in self.records if r.subject is None]


class Harness:
    """A real Batch over an in-memory store; inputs run through their routes on one
    partition, in order, as the agent runs them."""

    def __init__(self, partition: int = 0) -> None:
        self.store = _Store()
        self.batch = Batch(self.store, _encode, decode_value)
        self.partition = partition
        self.offset = 0
        self.batch.begin()

    def event_of(self, item: Input) -> _Event:
        topic = COURSE_COMMANDS if item.source_topic == COURSE_COMMANDS else ENROLLMENT_INPUTS
        event = _Event(_Message(topic, self.partition, self.offset), COURSE.encode())
        event.headers[REQUEST_ID_HEADER] = f"req-{self.offset}".encode()
        self.offset += 1
        return event

    async def _staging(self, item: Input, decide: Callable[[_Event], Awaitable[None]]) -> Ran:
        event = self.event_of(item)
        work = self.batch.partitions.get(self.partition)
        before = (len(work.records), len(work.replies)) if work else (0, 0)
        with self.batch.deciding(event):
            await decide(event)
        work = self.batch.partitions[self.partition]
        return Ran(
            [_staged(r) for r in work.records[before[0] :]],
            [
                Answer(to, cid, command_reply.decode(value).reply)
                for to, cid, value in work.replies[before[1] :]
            ],
        )

    async def run(self, item: Input, route: Route | None = None) -> Ran:
        """The input through its route's handler, exactly as streams/agent._decide runs it
        (without the agent's catch: a handler's exception, UndeclaredWrite included,
        reaches the test)."""
        route = route or route_of(item.kind, item.source_topic)
        assert route is not None, f"no route for {item.kind} from {item.source_topic}"

        async def decide(_: _Event) -> None:
            with self.batch.routed(route.writes, route.source):
                await route.handler(self.batch, item)

        return await self._staging(item, decide)

    async def run_in_agent(self, item: Input, monkeypatch: pytest.MonkeyPatch) -> Ran:
        """The input through streams/agent._decide itself (its decoding replaced), which
        dead-letters a handler's exception as an `error` and answers its caller."""

        async def read_input(*_: Any) -> Input:
            return item

        monkeypatch.setattr(agent, "read_input", read_input)
        return await self._staging(
            item,
            lambda event: agent._decide(None, self.batch, event),  # type: ignore[arg-type]
        )

    def final(self, key: str) -> Any:
        return self.batch.final(self.partition, key)

    def outbox_topics(self) -> list[str]:
        return [topic for topic, *_ in self.batch.outbox(self.partition).records]

    def catalog_entries(self) -> list[Staged]:
        records = self.batch.outbox(self.partition).records
        return [_staged(r) for r in records if r[0] == COURSE_CATALOG]

    def next_batch(self) -> None:
        """Keep this batch's table writes in the store (as applying it would), and begin
        the next batch."""
        for partition, work in self.batch.partitions.items():
            for key, value in work.writes.items():
                self.store.data[(partition, encode_key(key))] = encode_value(value)
        self.batch.begin()


# -- inputs --------------------------------------------------------------------------------

LESSON = {"type": "lesson", "title": "Intro", "position": 0}


def course_payload(**fields: Any) -> dict[str, Any]:
    return {
        "title": "Kafka",
        "status": "published",
        "modules": [{"title": "M", "position": 0, "items": [LESSON]}],
        **fields,
    }


def command(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    actor: Actor = INSTRUCTOR,
    command_id: str | None = None,
    course_id: str = COURSE,
    expected_version: int | None = None,
    at: datetime = WHEN,
) -> CourseCommand:
    return CourseCommand(
        command_id=command_id or f"cmd-{kind}-{actor.id}",
        command_type=kind,
        course_id=course_id,
        occurred_at=at,
        actor=actor,
        payload=payload or {},
        payload_hash=f"hash-{kind}",
        expected_version=expected_version,
    )


def from_api(cmd: CourseCommand, *, request: bool = True) -> Input:
    """A course command as the agent reads it from course-commands."""
    return Input(
        kind=cmd.command_type,
        source_topic=COURSE_COMMANDS,
        key=cmd.course_id.encode(),
        raw=f"avro:{cmd.command_id}".encode(),
        message=cmd,
        reply_to=REPLY_TO if request else None,
        correlation_id=cmd.command_id if request else None,
    )


def enrol(user_id: str, *, request: bool, course_id: str = COURSE) -> Input:
    event_id = f"enrol-{course_id}-{user_id}"
    return Input(
        kind="user_enrolled",
        source_topic=USER_ENROLLED,
        key=user_id.encode(),  # its key on user-enrolled
        raw=f"avro:{event_id}".encode(),
        message=EnrollInput(event_id, course_id, user_id, WHEN, "test"),
        reply_to=REPLY_TO if request else None,
        correlation_id=event_id if request else None,
    )


def progress(user_id: str, item_id: str, *, request: bool, status: str = "completed") -> Input:
    event_id = f"progress-{user_id}-{item_id}-{status}"
    return Input(
        kind="item_progress",
        source_topic=COURSE_PROGRESS,
        key=user_id.encode(),
        raw=f"avro:{event_id}".encode(),
        message=ProgressInput(
            event_id, COURSE, user_id, item_id, status, None, WHEN + timedelta(hours=1)
        ),
        reply_to=REPLY_TO if request else None,
        correlation_id=event_id if request else None,
    )


async def created(h: Harness, **fields: Any) -> dict[str, Any]:
    """Create the course (through the harness, without a reply) and return it."""
    ran = await h.run(from_api(command("create_course", course_payload(**fields)), request=False))
    assert ran.topics == [COURSE_EVENTS]
    course: dict[str, Any] = h.final(COURSE)["course"]
    return course


def first_item(course: dict[str, Any]) -> str:
    item_id: str = course["modules"][0]["items"][0]["id"]
    return item_id


def only_reply(ran: Ran, correlation_id: str | None) -> Reply:
    [answer] = ran.replies
    assert (answer.reply_to, answer.correlation_id) == (REPLY_TO, correlation_id)
    return answer.reply


# -- course commands -----------------------------------------------------------------------


@pytest.mark.parametrize("request_", [True, False], ids=["request", "no-reply-to"])
async def test_create_course_stages_its_event_record_catalog_entry_and_reply(
    request_: bool,
) -> None:
    h = Harness()
    cmd = command("create_course", course_payload(capacity=30))
    ran = await h.run(from_api(cmd, request=request_))
    assert ran.topics == [COURSE_EVENTS]
    [event] = ran.records
    assert (event.key, event.subject) == (COURSE.encode(), course_event.SUBJECT)
    assert event.headers == {REQUEST_ID_HEADER: b"req-0"}  # the request it came of
    assert event.value["event_type"] == "course_created"
    assert (event.value["course_id"], event.value["version"]) == (COURSE, 1)
    assert event.value["course"]["enrollment_count"] == 0

    record = h.final(COURSE)
    assert record["course"]["title"] == "Kafka" and record["deleted"] is False
    assert record["course"]["instructor"] == {"id": "instructor-1", "name": "Ada"}
    # The catalog entry goes last, once, from the state the batch leaves.
    assert h.outbox_topics() == [COURSE_EVENTS, COURSE_CATALOG]
    [entry] = h.catalog_entries()
    assert entry.subject == catalog_entry.SUBJECT
    assert (entry.value["course_id"], entry.value["listed"]) == (COURSE, True)
    assert entry.value["catalog_version"] == catalog_version(1, 0)
    assert h.batch.outbox(0).courses == [COURSE]  # Redis

    if not request_:
        assert ran.replies == []
        return
    reply = only_reply(ran, cmd.command_id)
    assert reply.outcome == Outcome.CREATED
    assert reply.body is not None and reply.body["id"] == COURSE
    assert reply.body["capacity"] == 30
    marks = consistency.decode(reply.token or "")
    assert marks.course == (COURSE, 1)
    assert marks.catalog == (COURSE, catalog_version(1, 0))


async def test_the_same_create_twice_in_one_batch_is_one_event_and_the_same_reply() -> None:
    h = Harness()
    cmd = command("create_course", course_payload())
    first = await h.run(from_api(cmd))
    again = await h.run(from_api(cmd))
    assert first.topics == [COURSE_EVENTS]
    assert again.records == []  # no second event
    assert again.replies == first.replies
    assert only_reply(again, cmd.command_id).outcome == Outcome.CREATED
    assert h.outbox_topics() == [COURSE_EVENTS, COURSE_CATALOG]


async def test_the_same_create_in_a_later_batch_is_answered_from_the_stored_record() -> None:
    h = Harness()
    cmd = command("create_course", course_payload())
    first = await h.run(from_api(cmd))
    h.next_batch()
    assert h.batch.partitions == {}
    again = await h.run(from_api(cmd))
    assert again.records == []
    assert again.replies == first.replies  # the stored record remembers the command
    assert h.batch.partitions[0].writes == {}
    assert h.final(COURSE)["course"]["version"] == 1


async def test_update_course_stages_the_new_version_and_one_catalog_entry() -> None:
    h = Harness()
    await created(h)
    await h.run(enrol(STUDENT.id, request=False))
    cmd = command("update_course", {"title": "Kafka Streams"}, expected_version=1)
    ran = await h.run(from_api(cmd))
    assert ran.topics == [COURSE_EVENTS]
    [event] = ran.records
    assert (event.value["event_type"], event.value["version"]) == ("course_updated", 2)
    assert event.value["course"]["title"] == "Kafka Streams"
    assert event.value["course"]["enrollment_count"] == 1  # the true seat count
    assert h.final(COURSE)["course"]["version"] == 2
    [entry] = h.catalog_entries()  # one per course per batch, from its last state
    assert entry.value["catalog_version"] == catalog_version(2, 1)
    reply = only_reply(ran, cmd.command_id)
    assert reply.outcome == Outcome.APPLIED
    assert reply.body is not None and reply.body["title"] == "Kafka Streams"
    assert reply.body["enrollment_count"] == 1
    assert consistency.decode(reply.token or "").course == (COURSE, 2)


async def test_the_same_update_again_in_a_later_batch_changes_nothing() -> None:
    h = Harness()
    await created(h)
    cmd = command("update_course", {"title": "Kafka Streams"})
    first = await h.run(from_api(cmd))
    h.next_batch()
    again = await h.run(from_api(cmd))
    assert first.topics == [COURSE_EVENTS]
    assert again.records == []
    assert again.replies == first.replies
    assert h.final(COURSE)["course"]["version"] == 2


async def test_an_update_by_someone_else_is_refused_and_stages_nothing_but_the_answer() -> None:
    h = Harness()
    await created(h)
    cmd = command("update_course", {"title": "Mine"}, actor=OTHER_INSTRUCTOR)
    ran = await h.run(from_api(cmd))
    assert ran.records == []
    reply = only_reply(ran, cmd.command_id)
    assert reply.outcome == RefusalKind.NOT_COURSE_OWNER
    assert reply.token is None  # a refusal carries no consistency token
    assert h.final(COURSE)["course"]["title"] == "Kafka"


async def test_delete_course_marks_it_deleted_and_takes_it_out_of_the_catalog() -> None:
    h = Harness()
    await created(h)
    cmd = command("delete_course")
    ran = await h.run(from_api(cmd))
    assert ran.topics == [COURSE_EVENTS]
    [event] = ran.records
    assert (event.value["event_type"], event.value["course"]) == ("course_deleted", None)
    assert event.value["version"] == 2
    assert h.final(COURSE)["deleted"] is True
    [entry] = h.catalog_entries()
    assert (entry.value["listed"], entry.value["document_json"]) == (False, None)
    reply = only_reply(ran, cmd.command_id)
    assert (reply.outcome, reply.body) == (Outcome.REMOVED, None)


async def test_rate_course_stages_the_rating_entry_and_the_catalog_not_a_course_event() -> None:
    """A rating is read-side (decision 52): the seats record's totals and seq, the
    enrollment's stars, the ratings list's entry and the catalog's; no course version, no
    course_updated; Redis's course shows it."""
    h = Harness()
    await created(h)
    await h.run(enrol(STUDENT.id, request=False))
    seq = h.final(seats_key(COURSE))["seq"]
    cmd = command("rate_course", {"stars": 4, "review": "good"}, actor=STUDENT)
    ran = await h.run(from_api(cmd))
    assert ran.topics == [COURSE_RATINGS]
    assert h.outbox_topics()[-2:] == [COURSE_RATINGS, COURSE_CATALOG]
    [rating] = ran.records
    [catalog] = h.catalog_entries()
    assert (rating.key, rating.subject) == (f"{COURSE}:{STUDENT.id}".encode(), rating_entry.SUBJECT)
    assert (rating.value["stars"], rating.value["review"]) == (4, "good")
    assert (rating.value["course_version"], rating.value["seq"]) == (1, seq + 1)
    assert orjson.loads(catalog.value["document_json"])["rating_count"] == 1
    assert catalog.value["catalog_version"] == catalog_version(1, seq + 1)
    assert h.final(COURSE)["course"]["version"] == 1
    assert h.final(seats_key(COURSE)) == {
        "count": 1,
        "seq": seq + 1,
        "rating_sum": 4,
        "rating_count": 1,
    }
    assert h.final(enrollment_key(COURSE, STUDENT.id))["rating"]["stars"] == 4
    reply = only_reply(ran, cmd.command_id)
    assert reply.outcome == Outcome.APPLIED
    assert reply.body is not None and reply.body["course_rating"]["count"] == 1
    token = consistency.decode(reply.token or "")
    assert token.rating == (COURSE, STUDENT.id, catalog_version(1, seq + 1))


async def test_an_unchanged_rating_carries_no_ratings_list_mark() -> None:
    """The same stars again change nothing: its token must not wait for the list at the
    seats seq of now (the rating was made earlier, at an earlier one)."""
    h = Harness()
    await created(h)
    await h.run(enrol(STUDENT.id, request=False))
    await h.run(from_api(command("rate_course", {"stars": 4}, actor=STUDENT)))
    h.next_batch()
    await h.run(enrol("another", request=False))  # the seats seq moves on
    h.next_batch()
    cmd = replace(command("rate_course", {"stars": 4}, actor=STUDENT), command_id="again")
    ran = await h.run(from_api(cmd))
    reply = only_reply(ran, cmd.command_id)
    assert reply.outcome == Outcome.UNCHANGED
    assert consistency.decode(reply.token or "").rating is None


async def test_a_rating_by_a_student_not_enrolled_is_refused_without_records() -> None:
    h = Harness()
    await created(h)
    cmd = command("rate_course", {"stars": 5}, actor=STUDENT)
    ran = await h.run(from_api(cmd))
    assert ran.records == []
    assert only_reply(ran, cmd.command_id).outcome == RefusalKind.NOT_ENROLLED
    assert "rating_sum" not in h.final(COURSE)


async def test_cancel_enrollment_frees_the_seat() -> None:
    h = Harness()
    await created(h, capacity=1)
    await h.run(enrol(STUDENT.id, request=False))
    assert h.final(seats_key(COURSE)) == {"count": 1, "seq": 1}
    cmd = command("cancel_enrollment", {"user_id": STUDENT.id}, actor=STUDENT)
    ran = await h.run(from_api(cmd))
    assert ran.topics == [ENROLLMENT_EVENTS]
    [event] = ran.records
    assert (event.subject, event.value["event_type"]) == (
        enrollment_event.SUBJECT,
        "enrollment_cancelled",
    )
    assert h.final(seats_key(COURSE)) == {"count": 0, "seq": 2}
    assert h.final(enrollment_key(COURSE, STUDENT.id))["status"] == "cancelled"
    reply = only_reply(ran, cmd.command_id)
    assert reply.outcome == Outcome.REMOVED
    marks = consistency.decode(reply.token or "")
    assert marks.enrollment == (COURSE, STUDENT.id, 2)
    assert marks.catalog == (COURSE, catalog_version(1, 2))
    # The freed seat can be taken again in the same batch.
    again = await h.run(enrol("student-2", request=False))
    assert again.topics == [ENROLLMENT_EVENTS]


async def test_cancelling_an_enrollment_that_does_not_exist_is_answered_not_dead_lettered() -> None:
    h = Harness()
    await created(h)
    cmd = command("cancel_enrollment", {"user_id": STUDENT.id}, actor=STUDENT)
    ran = await h.run(from_api(cmd))
    assert ran.records == []
    assert only_reply(ran, cmd.command_id).outcome == RefusalKind.NOT_ENROLLED


# -- enrollment inputs ---------------------------------------------------------------------


@pytest.mark.parametrize("request_", [True, False], ids=["request", "other-service"])
async def test_user_enrolled_takes_a_seat(request_: bool) -> None:
    h = Harness()
    await created(h, capacity=2)
    h.next_batch()  # the course from the store: this batch stages its catalog for the seat
    item = enrol(STUDENT.id, request=request_)
    ran = await h.run(item)
    assert ran.topics == [ENROLLMENT_EVENTS]
    assert h.outbox_topics() == [ENROLLMENT_EVENTS, COURSE_CATALOG]
    [event] = ran.records
    assert event.value["event_type"] == "enrollment_created"
    assert (event.value["user_id"], event.value["version"]) == (STUDENT.id, 1)
    assert h.final(seats_key(COURSE)) == {"count": 1, "seq": 1}
    assert h.final(enrollment_key(COURSE, STUDENT.id))["status"] == "active"
    [entry] = h.catalog_entries()  # the seat count changed
    assert entry.value["catalog_version"] == catalog_version(1, 1)
    assert h.batch.outbox(0).enrollments == [(COURSE, STUDENT.id)]
    if not request_:
        assert ran.replies == []
        return
    reply = only_reply(ran, item.correlation_id)
    assert reply.outcome == Outcome.CREATED
    assert reply.body is not None and reply.body["status"] == "active"
    assert consistency.decode(reply.token or "").enrollment == (COURSE, STUDENT.id, 1)


@pytest.mark.parametrize("request_", [True, False], ids=["request", "other-service"])
async def test_item_progress_completes_the_course(request_: bool) -> None:
    h = Harness()
    item_id = first_item(await created(h))
    await h.run(enrol(STUDENT.id, request=False))
    item = progress(STUDENT.id, item_id, request=request_)
    ran = await h.run(item)
    assert ran.topics == [ENROLLMENT_EVENTS, ENROLLMENT_EVENTS, COURSE_COMPLETIONS]
    events, completion = ran.records[:2], ran.records[2]
    assert [r.value["event_type"] for r in events] == ["progress_updated", "course_completed"]
    assert completion.key == f"{STUDENT.id}:{COURSE}".encode()
    assert completion.value["course_id"] == COURSE and completion.value["user_id"] == STUDENT.id
    enrollment = h.final(enrollment_key(COURSE, STUDENT.id))
    assert enrollment["status"] == "completed"
    assert enrollment["items"][item_id]["status"] == "completed"
    assert h.final(seats_key(COURSE)) == {"count": 1, "seq": 1}  # progress takes no seat
    if not request_:
        assert ran.replies == []
        return
    reply = only_reply(ran, item.correlation_id)
    assert reply.outcome == Outcome.APPLIED
    assert reply.body is not None and reply.body["percent"] == 100.0  # the progress only
    assert "status" not in reply.body


# -- refusals --------------------------------------------------------------------------------


async def _full_course(h: Harness, item: Input) -> Ran:
    await created(h, capacity=1)
    await h.run(enrol("student-0", request=False))
    return await h.run(item)


async def _unknown_course(h: Harness, item: Input) -> Ran:
    return await h.run(item)


async def _not_enrolled(h: Harness, item: Input) -> Ran:
    await created(h)
    return await h.run(item)


REFUSALS: dict[str, tuple[Callable[[Harness, Input], Awaitable[Ran]], Any, RefusalKind]] = {
    "course-full": (_full_course, lambda r: enrol(STUDENT.id, request=r), RefusalKind.COURSE_FULL),
    "unknown-course": (
        _unknown_course,
        lambda r: enrol(STUDENT.id, request=r, course_id="c-404"),
        RefusalKind.COURSE_NOT_FOUND,
    ),
    "progress-not-enrolled": (
        _not_enrolled,
        lambda r: progress(STUDENT.id, "item-x", request=r),
        RefusalKind.NOT_ENROLLED,
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
async def test_a_refused_input_from_another_service_is_dead_lettered_on_its_source(
    case: str,
) -> None:
    setup, make, kind = REFUSALS[case]
    h = Harness()
    item = make(False)
    ran = await setup(h, item)
    assert ran.topics == [dlq(item.source_topic)]  # no event, nothing else
    [letter] = ran.dead_letters()
    assert (letter.key, letter.value) == (item.key, item.raw)  # as it was on its source
    assert letter.headers["dlq.code"] == b"refused"
    assert letter.headers["dlq.reason"].startswith(f"refused: {kind.value}: ".encode())
    assert letter.headers["dlq.source_topic"] == item.source_topic.encode()
    assert ran.replies == []
    assert h.final(enrollment_key(item.message.course_id, STUDENT.id)) is None


@pytest.mark.parametrize("case", REFUSALS)
async def test_a_refused_request_is_answered_and_not_dead_lettered(case: str) -> None:
    setup, make, kind = REFUSALS[case]
    h = Harness()
    item = make(True)
    ran = await setup(h, item)
    assert ran.records == []
    reply = only_reply(ran, item.correlation_id)
    assert reply.outcome == kind
    assert reply.refusal is not None and reply.refusal.kind is kind
    assert reply.token is None
    assert h.final(enrollment_key(item.message.course_id, STUDENT.id)) is None


async def test_a_full_course_refuses_in_a_later_batch_and_keeps_its_seats() -> None:
    h = Harness()
    await created(h, capacity=1)
    await h.run(enrol("student-0", request=False))
    h.next_batch()
    item = enrol(STUDENT.id, request=False)
    ran = await h.run(item)
    assert ran.topics == [dlq(USER_ENROLLED)]
    assert h.outbox_topics() == [dlq(USER_ENROLLED)]  # no seat changed: no catalog entry
    assert h.final(seats_key(COURSE)) == {"count": 1, "seq": 1}
    assert h.batch.partitions[0].writes == {}


# -- every route writes only what it declares ----------------------------------------------


async def _scenario(kind: str, h: Harness) -> Input:
    """Prepare the happy path of `kind` in `h`'s batch; the input to decide last."""
    if kind == "create_course":
        return from_api(command("create_course", course_payload()))
    item_id = first_item(await created(h))
    if kind == "update_course":
        return from_api(command("update_course", {"title": "New"}))
    if kind == "delete_course":
        return from_api(command("delete_course"))
    if kind == "user_enrolled":
        return enrol(STUDENT.id, request=False)
    if kind == "enrollment_job":
        payload = {
            "job_id": "00000000-0000-0000-0000-00000000000a",
            "job_hash": "h",
            "total": 2,
            "first_row": 1,
            "rows": [["u-1", None], ["", "empty user id"]],
        }
        return from_api(command("enrollment_job", payload))
    await h.run(enrol(STUDENT.id, request=False))
    if kind == "rate_course":
        return from_api(command("rate_course", {"stars": 3}, actor=STUDENT))
    if kind == "cancel_enrollment":
        return from_api(command("cancel_enrollment", {"user_id": STUDENT.id}, actor=STUDENT))
    assert kind == "item_progress"
    return progress(STUDENT.id, item_id, request=True)


def test_every_route_has_a_happy_path_here() -> None:
    assert set(ROUTES) == {
        "create_course",
        "update_course",
        "delete_course",
        "rate_course",
        "cancel_enrollment",
        "user_enrolled",
        "item_progress",
        "enrollment_job",
    }


@pytest.mark.parametrize("kind", sorted(ROUTES))
async def test_every_route_s_happy_path_writes_only_its_declared_topics(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = ROUTES[kind]
    h = Harness()
    item = await _scenario(kind, h)
    assert route_of(item.kind, item.source_topic) is route
    ran = await h.run_in_agent(item, monkeypatch)
    assert ran.records, "the happy path stages a record"
    assert not [r for r in ran.records if r.headers.get("dlq.code") == b"error"]
    assert ran.dead_letters() == []
    assert set(ran.topics) <= route.writes
    if item.from_request:
        assert only_reply(ran, item.correlation_id).refusal is None


async def test_a_handler_writing_an_undeclared_topic_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check the test above relies on: without its ratings topic, rate_course raises in
    the harness, and the agent dead-letters it as an error and answers its caller."""
    narrowed = replace(ROUTES["rate_course"], writes=frozenset({COURSE_EVENTS, COURSE_CATALOG}))
    h = Harness()
    item = await _scenario("rate_course", h)
    with pytest.raises(UndeclaredWrite, match=COURSE_RATINGS):
        await h.run(item, narrowed)

    h = Harness()
    item = await _scenario("rate_course", h)
    monkeypatch.setitem(ROUTES, "rate_course", narrowed)
    ran = await h.run_in_agent(item, monkeypatch)
    [letter] = ran.dead_letters()
    assert (letter.topic, letter.headers["dlq.code"]) == (dlq(COURSE_COMMANDS), b"error")
    assert only_reply(ran, item.correlation_id).outcome == RefusalKind.FAILED

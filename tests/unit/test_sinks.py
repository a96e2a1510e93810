"""The sinks without servers (course_management/sinks/): the PostgreSQL mirror's handlers
(mirror.py), the catalog sinks (catalog.py) and the groups that run them (groups.py).

The handlers get real `ConsumerRecord`s whose values the real `AvroCodec` wrote with the
real schemas of their topics (loaded as if registered: the registry client fails the test
if it is ever asked). What they write goes to recording fakes: the mirror's write
functions, a connection pool that notes every statement (so the writes also run through
infra/database.py, infra/enrollment_mirror.py and catalog/postgres.py), the catalog
writers, the page cache, the dead letters. A store is "away" when its fake raises the
error the sink waits out; the retries' backoff is patched to zero, and a store that is
slow to answer is an `asyncio.Event`, never a sleep."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, NoReturn, cast

import asyncpg
import fastavro
import pytest
from aiokafka import ConsumerRecord
from elasticsearch import ConnectionError as EsConnectionError
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from course_management.catalog import elastic
from course_management.catalog.query import catalog_document
from course_management.domain.commands import Actor, CourseCommand, decide_create, decide_delete
from course_management.domain.enrollment import (
    CancelInput,
    EnrollInput,
    ProgressInput,
)
from course_management.domain.events import CourseEvent, EnrollmentEvent
from course_management.domain.reports import decide_progress
from course_management.domain.seats import decide_cancel, decide_enroll
from course_management.infra import retrying
from course_management.infra.avro import AvroCodec, load_schema_text
from course_management.infra.consumer_group import GroupConsumer, Membership
from course_management.infra.database import Database
from course_management.infra.dead_letters import INVALID, dead_letter_record
from course_management.messages import catalog_entry, course_event, enrollment_event, rating_entry
from course_management.messages.catalog_entry import CatalogEntry
from course_management.messages.rating_entry import RatingEntry
from course_management.sinks import mirror as mirror_module
from course_management.sinks.catalog import CatalogSink
from course_management.sinks.groups import sink_groups
from course_management.sinks.mirror import EventMirror
from course_management.topology import (
    COURSE_CATALOG,
    COURSE_EVENTS,
    COURSE_RATINGS,
    ENROLLMENT_EVENTS,
    JOB_PROGRESS,
    LEARNER_MILESTONES,
    POSTGRES_GROUP,
    SEARCH_GROUP,
    spec,
)

WHEN = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
ACTOR = Actor("instructor-1", "Ada", ("instructor",))
MODULES = [
    {
        "title": "Basics",
        "position": 0,
        "items": [
            {"type": "lesson", "title": "Logs", "position": 0},
            {"type": "quiz", "title": "Check", "position": 1, "max_score": 10.0},
        ],
    }
]
SINK_TOPICS = (
    COURSE_EVENTS,
    ENROLLMENT_EVENTS,
    COURSE_RATINGS,
    COURSE_CATALOG,
    LEARNER_MILESTONES,
    JOB_PROGRESS,
)


# -- the codec, the records -------------------------------------------------------------------


class _NoRegistry:
    """Every schema the tests write with is known to the codec: a lookup is a bug."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"the registry was asked ({name})")


def local_codec() -> AvroCodec:
    """The real codec, with the sinks' topics' schemas as if registered (ids 1, 2, ...)."""
    codec = AvroCodec("http://registry.invalid")
    codec._client = _NoRegistry()  # type: ignore[assignment]
    for schema_id, name in enumerate(SINK_TOPICS, start=1):
        topic = spec(name)
        assert topic.schema_file is not None
        parsed = fastavro.parse_schema(json.loads(load_schema_text(topic.schema_file)))
        codec._parsed[topic.subject] = parsed
        codec._ids[topic.subject] = schema_id
        codec._writers[schema_id] = parsed
    return codec


CODEC = local_codec()


def encoded(topic: str, value: dict[str, Any]) -> bytes:
    return CODEC.encode(spec(topic).subject, value)


def record(
    topic: str, value: bytes | None, *, offset: int = 0, key: bytes | None = b"k"
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=(),
    )


def records_of(topic: str, values: Sequence[bytes | None]) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        record(topic, value, offset=offset, key=f"key-{offset}".encode())
        for offset, value in enumerate(values)
    ]


# Values that do not decode on any of the sinks' topics: a tombstone, a value that is not
# Confluent-framed, a framed value whose body is garbage (another topic's schema: its own test).
UNDECODABLE: dict[str, bytes | None] = {
    "tombstone": None,
    "not-framed": b"not avro at all",
    "bad-body": b"\x00\x00\x00\x00\x01\xff\xff\xff",
}


# -- the messages, as the course agent makes them ------------------------------------------------


def _command(command_type: str, payload: dict[str, Any], when: datetime = WHEN) -> CourseCommand:
    return CourseCommand(str(uuid.uuid4()), command_type, "c-1", when, ACTOR, payload, "h", None)


def course_events() -> list[CourseEvent]:
    """course_created (with modules and items), then course_deleted (no snapshot)."""
    created = decide_create(None, _command("create_course", {"title": "Kafka", "modules": MODULES}))
    deleted = decide_delete(created.record, _command("delete_course", {}, LATER))
    assert created.event is not None and deleted.event is not None
    return [created.event, deleted.event]


def a_course() -> dict[str, Any]:
    created = decide_create(
        None,
        _command("create_course", {"title": "Kafka", "status": "published", "modules": MODULES}),
    )
    assert created.record is not None and created.record.get("course") is not None
    return cast(dict[str, Any], created.record["course"])


def enrollment_events() -> list[EnrollmentEvent]:
    """One learner enrols, completes the course's quiz, cancels; another enrols."""
    course = cast(Any, a_course())
    item_id = course["modules"][0]["items"][1]["id"]
    enrolled = decide_enroll(
        course,
        {"count": 0, "seq": 0},
        None,
        EnrollInput(str(uuid.uuid4()), "c-1", "u-1", WHEN, "api"),
    )
    progressed = decide_progress(
        course,
        enrolled.enrollment,
        ProgressInput(str(uuid.uuid4()), "c-1", "u-1", item_id, "completed", 0.75, WHEN),
    )
    cancelled = decide_cancel(
        course,
        {"count": 1, "seq": 0},
        progressed.enrollment,
        CancelInput(str(uuid.uuid4()), "c-1", "u-1", LATER),
    )
    other = decide_enroll(
        course,
        {"count": 0, "seq": 0},
        None,
        EnrollInput(str(uuid.uuid4()), "c-1", "u-2", LATER, "web"),
    )
    return [*enrolled.events, *progressed.events, *cancelled.events, *other.events]


def ratings() -> list[RatingEntry]:
    return [
        RatingEntry("c-1", "u-1", 4, 0, 5, "clear", "2026-12-06T10:00:00.000Z"),
        RatingEntry("c-1", "u-2", 5, 0, 2, None, "2026-12-06T11:00:00.000Z"),
        RatingEntry("c-1", "u-1", 6, 0, 3, "less clear", "2026-12-07T10:00:00.000Z"),
        RatingEntry("c-1", "u-1", 5, 0, 1, "replayed", "2026-12-06T12:00:00.000Z"),  # older
        # since decision 52 a rating makes no version: the seats seq orders it
        RatingEntry("c-1", "u-2", 6, 4, 4, "re-rated", "2026-12-08T10:00:00.000Z"),
    ]


def listed_entry(version: int, title: str = "Kafka", course_id: str = "c-1") -> CatalogEntry:
    course = {**a_course(), "id": course_id, "title": title}
    document = catalog_document({**course, "enrollment_count": 3})
    return {
        "course_id": course_id,
        "catalog_version": version,
        "listed": True,
        "document": document,
    }


def draft_entry(version: int, course_id: str) -> CatalogEntry:
    """An unpublished course: its entry has a document, but is not listed."""
    document = catalog_document({**a_course(), "id": course_id, "status": "draft"})
    assert document["listed"] is False
    return {
        "course_id": course_id,
        "catalog_version": version,
        "listed": False,
        "document": document,
    }


def removed_entry(version: int, course_id: str = "c-1") -> CatalogEntry:
    return {"course_id": course_id, "catalog_version": version, "listed": False, "document": None}


def catalog_value(entry: CatalogEntry) -> bytes:
    return encoded(COURSE_CATALOG, catalog_entry.encode(entry))


# -- the fakes ----------------------------------------------------------------------------------


@dataclass
class DeadLetters:
    """Each dead letter as the publisher sends it: (topic, key, value, headers)."""

    kept: list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = field(
        default_factory=list
    )

    async def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None:
        dead_topic, k, v, headers = dead_letter_record(topic, key, value, reason, code)
        self.kept.append((dead_topic, k, v, dict(headers)))


class Statements:
    """A connection pool that notes every statement and answers as PostgreSQL would
    (every row changed, unless told `changed`); `away` errors are raised, one per
    acquire, before it answers."""

    def __init__(self, away: list[BaseException] | None = None, changed: int | None = None):
        self.log: list[tuple[str, str, tuple[Any, ...]]] = []
        self.away = list(away or [])
        self.changed = changed
        self.acquired = 0

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Statements]:
        self.acquired += 1
        if self.away:
            raise self.away.pop(0)
        yield self

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.log.append(("begin", "", ()))
        yield
        self.log.append(("commit", "", ()))

    async def execute(self, sql: str, *args: Any) -> str:
        self.log.append(("execute", sql, args))
        return f"INSERT 0 {1 if self.changed is None else self.changed}"

    async def executemany(self, sql: str, rows: Any) -> None:
        self.log.append(("executemany", sql, (list(rows),)))

    async def fetch(self, sql: str, *args: Any) -> list[tuple[int]]:
        self.log.append(("fetch", sql, args))
        if self.away:
            raise self.away.pop(0)
        rows = len(args[0]) if self.changed is None else self.changed
        return [(1,)] * rows

    def into(self, table: str) -> list[tuple[str, tuple[Any, ...]]]:
        """The statements that wrote `table`: (method, arguments)."""
        return [(method, args) for method, sql, args in self.log if f"INTO {table} " in sql]


def database(pool: Statements) -> Database:
    return cast(Database, SimpleNamespace(pool=pool))


@dataclass
class Pages:
    """The catalog page cache: counts its invalidations; `away` errors raised first."""

    log: list[str]
    away: list[BaseException] = field(default_factory=list)

    async def invalidate(self) -> None:
        if self.away:
            self.log.append("invalidate: redis away")
            raise self.away.pop(0)
        self.log.append("invalidate")


class StoreAway(Exception):
    """The catalog store's 'unavailable' error, in the CatalogSink tests."""


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "wait_exponential", lambda **_: lambda _state: 0)


@pytest.fixture
def dead() -> DeadLetters:
    return DeadLetters()


async def reached_or_ended(reached: asyncio.Event, task: asyncio.Task[Any]) -> None:
    """Wait until the fake store is reached, or the task ends (then fail: it should not
    have, and waiting for the event would wait for ever)."""
    waiting = asyncio.create_task(reached.wait())
    await asyncio.wait([waiting, task], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        task.result()  # its error, if it failed
        raise AssertionError("the handler returned before its store answered")


def counted(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def mirrored(entity: str, outcome: str) -> float:
    return counted("cms_events_mirrored_total", entity=entity, outcome=outcome)


def catalog_written(store: str) -> float:
    return counted("cms_catalog_entries_written_total", store=store)


# -- the mirror: what each handler hands its writer ----------------------------------------------


@dataclass
class Writers:
    """The mirror's three write functions, recorded: (writer, pool, values) per call."""

    calls: list[tuple[str, Any, Any]] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)  # what each call returns, in turn

    def fake(self, name: str, default: Any) -> Callable[[Any, Any], Awaitable[Any]]:
        async def write(pool: Any, values: Any) -> Any:
            self.calls.append((name, pool, values))
            answer = self.answers.pop(0) if self.answers else default
            if isinstance(answer, BaseException):
                raise answer
            return answer

        return write

    def handed(self) -> list[Any]:
        """Every value handed to a writer, in order (a course event is one per call)."""
        return [
            value
            for name, _, values in self.calls
            for value in ([values] if name == "course" else values)
        ]


@pytest.fixture(autouse=True)
def history_writers(monkeypatch: pytest.MonkeyPatch) -> Writers:
    """The history's two writers (infra/history_mirror.py), recorded apart (their SQL is
    tested against PostgreSQL: tests/integration/test_history.py)."""
    history = Writers()
    monkeypatch.setattr(mirror_module, "mirror_course_versions", history.fake("versions", 0))
    monkeypatch.setattr(mirror_module, "mirror_learner_history", history.fake("learners", 0))
    return history


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch, history_writers: Writers) -> Writers:
    writers = Writers()
    monkeypatch.setattr(mirror_module, "mirror_course_event", writers.fake("course", True))
    monkeypatch.setattr(mirror_module, "mirror_enrollment_events", writers.fake("enrollments", 0))
    monkeypatch.setattr(mirror_module, "mirror_ratings", writers.fake("ratings", 0))
    return writers


POOL = object()  # the database's pool, as the mirror must hand it on


def event_mirror(dead: DeadLetters) -> EventMirror:
    return EventMirror(CODEC, cast(Database, SimpleNamespace(pool=POOL)), dead)


async def test_course_events_reach_the_writer_decoded_one_by_one_in_order(
    writers: Writers, dead: DeadLetters
) -> None:
    events = course_events()
    values = [encoded(COURSE_EVENTS, course_event.encode(e)) for e in events]
    await event_mirror(dead).course_events(records_of(COURSE_EVENTS, list(values)))

    assert dead.kept == []
    assert [(name, pool) for name, pool, _ in writers.calls] == [("course", POOL)] * 2
    written = [value for _, _, value in writers.calls]
    # typed fields intact: the event decodes back to what the agent published
    assert [course_event.decode(v) for v in written] == events
    assert all(isinstance(v["event_id"], str) for v in written)  # ids as text
    uuid.UUID(written[0]["event_id"])
    assert written[0]["occurred_at"] == WHEN and written[0]["occurred_at"].tzinfo is not None
    assert [v["event_type"] for v in written] == ["course_created", "course_deleted"]
    assert written[1]["course"] is None
    items = written[0]["course"]["modules"][0]["items"]
    assert [(i["type"], i["position"]) for i in items] == [("lesson", 0), ("quiz", 1)]


async def test_enrollment_events_reach_the_writer_as_one_batch_in_order(
    writers: Writers, dead: DeadLetters
) -> None:
    events = enrollment_events()
    values = [encoded(ENROLLMENT_EVENTS, enrollment_event.encode(e)) for e in events]
    await event_mirror(dead).enrollment_events(records_of(ENROLLMENT_EVENTS, list(values)))

    assert dead.kept == []
    [(name, pool, written)] = writers.calls
    assert (name, pool) == ("enrollments", POOL)
    assert [enrollment_event.decode(v) for v in written] == events
    assert [v["event_type"] for v in written] == [
        "enrollment_created",
        "progress_updated",
        "enrollment_cancelled",
        "enrollment_created",
    ]
    assert all(isinstance(v["event_id"], str) for v in written)
    progress = written[1]["enrollment"]["progress"]
    assert progress["items"][1]["score"] == 0.75


async def test_ratings_reach_the_writer_as_one_batch_in_order(
    writers: Writers, dead: DeadLetters
) -> None:
    entries = ratings()
    values = [encoded(COURSE_RATINGS, rating_entry.encode(e)) for e in entries]
    await event_mirror(dead).ratings(records_of(COURSE_RATINGS, list(values)))

    assert dead.kept == []
    [(name, pool, written)] = writers.calls
    assert (name, pool) == ("ratings", POOL)
    assert written == entries  # typed (messages/rating_entry.py), in order
    assert written[1].review is None


def _mirror_batch(topic: str) -> list[bytes]:
    if topic == COURSE_EVENTS:
        return [encoded(topic, course_event.encode(e)) for e in course_events()]
    if topic == ENROLLMENT_EVENTS:
        return [encoded(topic, enrollment_event.encode(e)) for e in enrollment_events()[:2]]
    return [encoded(topic, rating_entry.encode(e)) for e in ratings()[:2]]


MESSAGE_OF: dict[str, Any] = {
    COURSE_EVENTS: course_event,
    ENROLLMENT_EVENTS: enrollment_event,
    COURSE_RATINGS: rating_entry,
}
HANDLER_OF = {
    COURSE_EVENTS: "course_events",
    ENROLLMENT_EVENTS: "enrollment_events",
    COURSE_RATINGS: "ratings",
}


@pytest.mark.parametrize("topic", list(HANDLER_OF))
@pytest.mark.parametrize("bad", list(UNDECODABLE))
async def test_an_undecodable_record_is_dead_lettered_and_the_rest_written(
    writers: Writers, dead: DeadLetters, topic: str, bad: str
) -> None:
    first, second = _mirror_batch(topic)
    batch = records_of(topic, [first, UNDECODABLE[bad], second])
    await getattr(event_mirror(dead), HANDLER_OF[topic])(batch)

    [(dead_topic, key, value, headers)] = dead.kept
    assert (dead_topic, key, value) == (f"{topic}.dlq", b"key-1", UNDECODABLE[bad])
    assert headers["dlq.code"] == INVALID.encode()
    assert headers["dlq.source_topic"] == topic.encode()
    assert headers["dlq.reason"].startswith(b"invalid: ") and len(headers["dlq.reason"]) > 10
    message = MESSAGE_OF[topic]
    decoded = [message.decode(await CODEC.decode(spec(topic).subject, v)) for v in (first, second)]
    assert writers.handed() == decoded


async def test_a_record_of_another_topics_schema_is_dead_lettered(
    writers: Writers, dead: DeadLetters
) -> None:
    """A rating entry on enrollment-events decodes (framed, known id) but not as an
    enrollment event: kept on the dead letters, not handed to the writer."""
    stray = encoded(COURSE_RATINGS, rating_entry.encode(ratings()[0]))
    await event_mirror(dead).enrollment_events(records_of(ENROLLMENT_EVENTS, [stray]))

    assert [(t, v) for t, _, v, _ in dead.kept] == [(f"{ENROLLMENT_EVENTS}.dlq", stray)]
    assert all(values == [] for _, _, values in writers.calls)


async def test_the_mirror_counts_what_its_writers_changed(
    writers: Writers, dead: DeadLetters
) -> None:
    mirror = event_mirror(dead)
    before = {
        (entity, outcome): mirrored(entity, outcome)
        for entity in ("course", "enrollment", "rating")
        for outcome in ("applied", "skipped")
    }
    writers.answers = [True, False]  # the second course event changed nothing
    await mirror.course_events(records_of(COURSE_EVENTS, _mirror_batch(COURSE_EVENTS)))
    writers.answers = [1]  # one of two enrollment events changed a row
    await mirror.enrollment_events(records_of(ENROLLMENT_EVENTS, _mirror_batch(ENROLLMENT_EVENTS)))
    writers.answers = [2]
    await mirror.ratings(records_of(COURSE_RATINGS, _mirror_batch(COURSE_RATINGS)))

    assert {key: mirrored(*key) - value for key, value in before.items()} == {
        ("course", "applied"): 1,
        ("course", "skipped"): 1,
        ("enrollment", "applied"): 1,
        ("enrollment", "skipped"): 1,
        ("rating", "applied"): 2,
        ("rating", "skipped"): 0,
    }


@pytest.mark.parametrize("topic", list(HANDLER_OF))
async def test_the_mirror_waits_while_postgres_is_unavailable(
    writers: Writers, dead: DeadLetters, topic: str
) -> None:
    values = _mirror_batch(topic)
    entity = {COURSE_EVENTS: "course", ENROLLMENT_EVENTS: "enrollment", COURSE_RATINGS: "rating"}
    applied = mirrored(entity[topic], "applied")
    writers.answers = [
        ConnectionRefusedError("connection refused"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        True if topic == COURSE_EVENTS else 2,
    ]
    await getattr(event_mirror(dead), HANDLER_OF[topic])(records_of(topic, values))

    first = writers.calls[0][2]
    assert [v for _, _, v in writers.calls[:3]] == [first] * 3  # the same write, again
    # counted once, when written: two course events (one call each), or one batch of two
    assert mirrored(entity[topic], "applied") - applied == 2
    assert dead.kept == []


async def test_another_database_error_is_raised_for_the_group(
    writers: Writers, dead: DeadLetters
) -> None:
    """Not an outage: raised, so that the consumer group does not commit the batch (and
    in the end isolates the record that fails)."""
    writers.answers = [asyncpg.UniqueViolationError("duplicate key")]
    with pytest.raises(asyncpg.UniqueViolationError):
        await event_mirror(dead).enrollment_events(
            records_of(ENROLLMENT_EVENTS, _mirror_batch(ENROLLMENT_EVENTS))
        )
    assert len(writers.calls) == 1


async def test_a_handler_does_not_return_before_its_write_has(dead: DeadLetters) -> None:
    """The consumer group commits once a handler returns: a write still waiting for
    PostgreSQL keeps the handler waiting (a retry included)."""
    pool = Statements(away=[ConnectionResetError("dropped")])
    answered = asyncio.Event()
    reached = asyncio.Event()
    plain_fetch = pool.fetch

    async def slow_fetch(sql: str, *args: Any) -> list[tuple[int]]:
        if not pool.away:  # back, but slow to answer
            reached.set()
            await answered.wait()
        return await plain_fetch(sql, *args)

    pool.fetch = slow_fetch  # type: ignore[method-assign]
    mirror = EventMirror(CODEC, database(pool), dead)
    applied = mirrored("rating", "applied")
    handling = asyncio.create_task(
        mirror.ratings(records_of(COURSE_RATINGS, _mirror_batch(COURSE_RATINGS)))
    )
    await reached_or_ended(reached, handling)
    assert not handling.done()
    assert len(pool.into("course_ratings")) == 1  # the attempt PostgreSQL dropped
    assert mirrored("rating", "applied") == applied
    answered.set()
    await handling
    assert len(pool.into("course_ratings")) == 2
    assert mirrored("rating", "applied") - applied == 2


# -- the mirror through its writers (infra/database.py, infra/enrollment_mirror.py) -----------


async def test_a_course_event_is_upserted_with_its_modules_and_items(dead: DeadLetters) -> None:
    created, _ = course_events()
    pool = Statements()
    await EventMirror(CODEC, database(pool), dead).course_events(
        records_of(COURSE_EVENTS, [encoded(COURSE_EVENTS, course_event.encode(created))])
    )

    course = created["course"]
    assert course is not None
    [(method, args)] = pool.into("courses")
    assert method == "execute"
    assert args[:3] == (course["id"], course["version"], "Kafka")
    assert args[-1] == created["event_id"]  # the event id as text
    assert json.loads(args[11]) == course
    [(_, (modules,))] = pool.into("course_modules")
    assert modules == [(m["id"], "c-1", m["title"], m["position"]) for m in course["modules"]]
    [(_, (items,))] = pool.into("course_items")
    assert [(i[0], i[3], i[5]) for i in items] == [
        (i["id"], i["type"], i["position"]) for i in course["modules"][0]["items"]
    ]
    assert [m for m, _, _ in pool.log if m in ("begin", "commit")] == ["begin", "commit"]


async def test_a_course_event_that_changes_nothing_leaves_the_structure(
    dead: DeadLetters,
) -> None:
    """A replayed (older) version: the course row is not updated, so its modules and
    items are not replaced, and the event counts as skipped."""
    created, _ = course_events()
    pool = Statements(changed=0)
    skipped = mirrored("course", "skipped")
    await EventMirror(CODEC, database(pool), dead).course_events(
        records_of(COURSE_EVENTS, [encoded(COURSE_EVENTS, course_event.encode(created))])
    )
    assert len(pool.into("courses")) == 1
    assert pool.into("course_modules") == [] and pool.into("course_items") == []
    assert mirrored("course", "skipped") - skipped == 1


async def test_a_deleted_course_is_marked_deleted_at_its_version(dead: DeadLetters) -> None:
    _, deleted = course_events()
    pool = Statements()
    await EventMirror(CODEC, database(pool), dead).course_events(
        records_of(COURSE_EVENTS, [encoded(COURSE_EVENTS, course_event.encode(deleted))])
    )
    [(_, sql, args)] = [entry for entry in pool.log if entry[0] == "execute"]
    assert sql.strip().startswith("UPDATE courses SET deleted_at")
    assert args == ("c-1", deleted["version"], LATER, deleted["event_id"])


async def test_enrollment_events_write_every_transition_and_the_newest_snapshot(
    dead: DeadLetters,
) -> None:
    events = enrollment_events()
    pool = Statements()
    await EventMirror(CODEC, database(pool), dead).enrollment_events(
        records_of(
            ENROLLMENT_EVENTS,
            [encoded(ENROLLMENT_EVENTS, enrollment_event.encode(e)) for e in events],
        )
    )
    [(_, (transitions,))] = pool.into("enrollment_transitions")
    assert [(t[0], t[2], t[4], t[5]) for t in transitions] == [
        (events[0]["event_id"], "u-1", "enrolled", WHEN),
        (events[2]["event_id"], "u-1", "cancelled", LATER),  # progress is no transition
        (events[3]["event_id"], "u-2", "enrolled", LATER),
    ]
    [(_, columns)] = pool.into("enrollments")
    users, versions, statuses = columns[1], columns[2], columns[3]
    assert list(zip(users, versions, statuses, strict=True)) == [
        ("u-1", events[2]["version"], "cancelled"),  # one row per enrollment: the newest
        ("u-2", events[3]["version"], "active"),
    ]
    assert columns[12] == [events[2]["event_id"], events[3]["event_id"]]


async def test_ratings_write_the_newest_of_each_student(dead: DeadLetters) -> None:
    pool = Statements()
    await EventMirror(CODEC, database(pool), dead).ratings(
        records_of(
            COURSE_RATINGS, [encoded(COURSE_RATINGS, rating_entry.encode(r)) for r in ratings()]
        )
    )
    [(_, columns)] = pool.into("course_ratings")
    assert list(zip(*columns[:6], strict=True)) == [
        ("c-1", "u-1", 6, 0, 3, "less clear"),
        ("c-1", "u-2", 6, 4, 4, "re-rated"),  # (6, 4) after (5, 0): no new version needed
    ]
    assert columns[6][0] == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


# -- the catalog sink ---------------------------------------------------------------------------


@dataclass
class CatalogStore:
    """A catalog writer: notes each batch; raises `away` errors first, one per attempt;
    answers `written` (default: the batch's length)."""

    log: list[str]
    away: list[BaseException] = field(default_factory=list)
    written: int | None = None
    batches: list[list[CatalogEntry]] = field(default_factory=list)

    async def __call__(self, entries: list[CatalogEntry]) -> int:
        if self.away:
            self.log.append("write: store away")
            raise self.away.pop(0)
        self.batches.append(list(entries))
        self.log.append("write")
        return len(entries) if self.written is None else self.written


def catalog_sink(
    store: CatalogStore, pages: Pages, dead: DeadLetters, name: str = "test-store"
) -> CatalogSink:
    return CatalogSink(name, store, (StoreAway,), CODEC, pages.invalidate, dead)


async def test_a_catalog_batch_is_written_decoded_in_order_then_the_pages_invalidated(
    dead: DeadLetters,
) -> None:
    log: list[str] = []
    store, pages = CatalogStore(log), Pages(log)
    entries = [listed_entry(5), listed_entry(3, course_id="c-2"), removed_entry(9)]
    before = catalog_written("test-store")
    await catalog_sink(store, pages, dead)(
        records_of(COURSE_CATALOG, [catalog_value(e) for e in entries])
    )

    assert store.batches == [entries]  # documents decoded from their JSON, in order
    assert store.batches[0][2]["document"] is None and store.batches[0][2]["listed"] is False
    assert log == ["write", "invalidate"]
    assert catalog_written("test-store") - before == 3
    assert dead.kept == []


async def test_the_count_is_what_the_store_wrote(dead: DeadLetters) -> None:
    log: list[str] = []
    before = catalog_written("test-store")
    await catalog_sink(CatalogStore(log, written=1), Pages(log), dead)(
        records_of(COURSE_CATALOG, [catalog_value(listed_entry(v)) for v in (1, 2, 3)])
    )
    assert catalog_written("test-store") - before == 1


@pytest.mark.parametrize("bad", list(UNDECODABLE))
async def test_an_undecodable_catalog_entry_is_dead_lettered_and_the_rest_written(
    dead: DeadLetters, bad: str
) -> None:
    log: list[str] = []
    store = CatalogStore(log)
    good = [listed_entry(1), removed_entry(2, "c-2")]
    await catalog_sink(store, Pages(log), dead)(
        records_of(
            COURSE_CATALOG, [catalog_value(good[0]), UNDECODABLE[bad], catalog_value(good[1])]
        )
    )
    [(topic, key, value, headers)] = dead.kept
    assert (topic, key, value) == (f"{COURSE_CATALOG}.dlq", b"key-1", UNDECODABLE[bad])
    assert headers["dlq.code"] == INVALID.encode() and headers["dlq.reason"]
    assert store.batches == [good]
    assert log == ["write", "invalidate"]


async def test_an_entry_whose_document_is_not_json_is_dead_lettered(dead: DeadLetters) -> None:
    value = encoded(
        COURSE_CATALOG,
        {"course_id": "c-1", "catalog_version": 1, "listed": True, "document_json": "{not json"},
    )
    log: list[str] = []
    await catalog_sink(CatalogStore(log), Pages(log), dead)(records_of(COURSE_CATALOG, [value]))
    assert [(t, v) for t, _, v, _ in dead.kept] == [(f"{COURSE_CATALOG}.dlq", value)]
    assert log == []


@pytest.mark.parametrize("values", [[], [None, b"garbage"]], ids=["empty-batch", "nothing-decodes"])
async def test_nothing_written_nothing_invalidated(
    dead: DeadLetters, values: list[bytes | None]
) -> None:
    log: list[str] = []
    before = catalog_written("test-store")
    await catalog_sink(CatalogStore(log), Pages(log), dead)(records_of(COURSE_CATALOG, values))
    assert log == []
    assert catalog_written("test-store") == before
    assert len(dead.kept) == len(values)


async def test_the_catalog_sink_waits_while_its_store_is_unavailable(dead: DeadLetters) -> None:
    log: list[str] = []
    store = CatalogStore(log, away=[StoreAway("down"), StoreAway("still down")])
    entries = [listed_entry(4)]
    await catalog_sink(store, Pages(log), dead)(
        records_of(COURSE_CATALOG, [catalog_value(e) for e in entries])
    )
    assert log == ["write: store away", "write: store away", "write", "invalidate"]
    assert store.batches == [entries]


async def test_a_catalog_batch_is_not_reported_written_before_it_is(dead: DeadLetters) -> None:
    """Away twice, then slow to answer: the handler (whose return the group commits) is
    still waiting, nothing counted, no page invalidated, until the store answers."""
    log: list[str] = []
    reached, answered = asyncio.Event(), asyncio.Event()
    away = [StoreAway("down"), StoreAway("down")]

    async def slow_store(entries: list[CatalogEntry]) -> int:
        if away:
            log.append("write: store away")
            raise away.pop(0)
        reached.set()
        await answered.wait()
        log.append("write")
        return len(entries)

    sink = CatalogSink("slow-store", slow_store, (StoreAway,), CODEC, Pages(log).invalidate, dead)
    handling = asyncio.create_task(
        sink(records_of(COURSE_CATALOG, [catalog_value(listed_entry(1))]))
    )
    await reached_or_ended(reached, handling)
    assert not handling.done()
    assert log == ["write: store away", "write: store away"]
    assert catalog_written("slow-store") == 0
    answered.set()
    await handling
    assert log == ["write: store away", "write: store away", "write", "invalidate"]
    assert catalog_written("slow-store") == 1


async def test_another_store_error_is_raised_and_no_page_invalidated(dead: DeadLetters) -> None:
    log: list[str] = []
    store = CatalogStore(log, away=[RuntimeError("search index refused 1 documents")])
    with pytest.raises(RuntimeError, match="refused"):
        await catalog_sink(store, Pages(log), dead)(
            records_of(COURSE_CATALOG, [catalog_value(listed_entry(1))])
        )
    assert log == ["write: store away"]  # tried once, not retried


async def test_the_pages_are_invalidated_once_redis_answers(dead: DeadLetters) -> None:
    log: list[str] = []
    pages = Pages(log, away=[RedisConnectionError("redis away"), ConnectionRefusedError()])
    await catalog_sink(CatalogStore(log), pages, dead)(
        records_of(COURSE_CATALOG, [catalog_value(listed_entry(1))])
    )
    assert log == ["write", "invalidate: redis away", "invalidate: redis away", "invalidate"]


# -- the groups ---------------------------------------------------------------------------------


@dataclass
class SearchWrites:
    """elastic.write_catalog_entries, recorded: (client, entries); `away` raised first."""

    log: list[str]
    away: list[BaseException] = field(default_factory=list)
    calls: list[tuple[Any, list[CatalogEntry]]] = field(default_factory=list)

    async def __call__(self, es: Any, entries: Any) -> int:
        if self.away:
            self.log.append("search: away")
            raise self.away.pop(0)
        self.calls.append((es, list(entries)))
        self.log.append("search: write")
        return len(entries)


SEARCH = object()  # the search client, as the search sink must hand it on


def groups_over(
    pool: Statements, pages: Pages, dead: DeadLetters, search: Any = None
) -> list[GroupConsumer]:
    clients = SimpleNamespace(
        codec=CODEC,
        database=SimpleNamespace(pool=pool),
        search=search,
        publisher=SimpleNamespace(send_dead_letter=dead),
    )
    return sink_groups("broker:9092", cast(Any, clients), cast(Any, pages), Membership("sink-7"))


async def test_without_a_search_node_only_the_postgres_group(dead: DeadLetters) -> None:
    [group] = groups_over(Statements(), Pages([]), dead)
    assert group.group_id == POSTGRES_GROUP
    assert sorted(group.topics) == sorted(SINK_TOPICS)
    assert group.bootstrap == "broker:9092"
    assert group.membership == Membership("sink-7")
    assert group.dead_letter is dead


async def test_with_a_search_node_the_search_group_reads_the_catalog(
    dead: DeadLetters,
) -> None:
    postgres_group, search_group = groups_over(Statements(), Pages([]), dead, SEARCH)
    assert postgres_group.group_id == POSTGRES_GROUP
    assert sorted(postgres_group.topics) == sorted(SINK_TOPICS)
    assert search_group.group_id == SEARCH_GROUP
    assert search_group.topics == [COURSE_CATALOG]
    assert search_group.dead_letter is dead
    assert search_group.membership == Membership("sink-7")


async def test_each_topic_of_the_postgres_group_reaches_its_table(dead: DeadLetters) -> None:
    pool = Statements()
    log: list[str] = []
    [group] = groups_over(pool, Pages(log), dead)
    created, _ = course_events()
    values = {
        COURSE_EVENTS: encoded(COURSE_EVENTS, course_event.encode(created)),
        ENROLLMENT_EVENTS: encoded(
            ENROLLMENT_EVENTS, enrollment_event.encode(enrollment_events()[0])
        ),
        COURSE_RATINGS: encoded(COURSE_RATINGS, rating_entry.encode(ratings()[0])),
        COURSE_CATALOG: catalog_value(listed_entry(1)),
    }
    table_of = {
        COURSE_EVENTS: "courses",
        ENROLLMENT_EVENTS: "enrollments",
        COURSE_RATINGS: "course_ratings",
        COURSE_CATALOG: "catalog_courses",
    }
    for topic, value in values.items():
        pool.log.clear()
        await group.handlers[topic](records_of(topic, [value]))
        tables = {t for t in table_of.values() if pool.into(t)}
        assert tables == {table_of[topic]}, topic
    assert dead.kept == []
    assert log == ["invalidate"]  # the catalog's write, and only it, invalidates the pages


async def test_the_postgres_catalog_writes_only_the_newest_entry_of_each_course(
    dead: DeadLetters,
) -> None:
    pool = Statements()
    log: list[str] = []
    [group] = groups_over(pool, Pages(log), dead)
    before = catalog_written("postgres")
    batch = [
        listed_entry(7, "Kafka v7"),
        listed_entry(3, "Old title", course_id="c-2"),
        listed_entry(9, "Kafka v9"),
        listed_entry(8, "Kafka v8"),
        removed_entry(4, "c-2"),
        draft_entry(2, "c-3"),
    ]
    await group.handlers[COURSE_CATALOG](
        records_of(COURSE_CATALOG, [catalog_value(e) for e in batch])
    )
    [(_, (rows,))] = pool.into("catalog_courses")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("c-1", 9, True, "Kafka v9"),
        ("c-2", 4, False, ""),  # the deleted course: a removal, with no document
        ("c-3", 2, False, ""),  # an unpublished course: out of the catalog too
    ]
    assert rows[1][-1] is None and rows[2][-1] is None
    # the words of the listed course are remembered, not those of the others
    [remember] = [args for m, sql, args in pool.log if "catalog_words" in sql]
    assert remember == (["c-1"],)
    assert log == ["invalidate"]
    assert catalog_written("postgres") - before == 3


async def test_the_postgres_catalog_waits_while_postgres_is_unavailable(
    dead: DeadLetters,
) -> None:
    pool = Statements(away=[asyncpg.CannotConnectNowError("starting"), ConnectionRefusedError()])
    log: list[str] = []
    [group] = groups_over(pool, Pages(log), dead)
    await group.handlers[COURSE_CATALOG](
        records_of(COURSE_CATALOG, [catalog_value(listed_entry(1))])
    )
    assert pool.acquired == 3
    assert len(pool.into("catalog_courses")) == 1
    assert log == ["invalidate"]


async def test_the_search_catalog_writes_through_the_search_client_and_waits_for_it(
    dead: DeadLetters, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    writes = SearchWrites(log, away=[EsConnectionError("es down"), ConnectionResetError()])
    monkeypatch.setattr(elastic, "write_catalog_entries", writes)
    pool = Statements()
    _, search_group = groups_over(pool, Pages(log), dead, SEARCH)
    before = catalog_written("elasticsearch")
    entries = [listed_entry(2), removed_entry(3, "c-2")]
    await search_group.handlers[COURSE_CATALOG](
        records_of(COURSE_CATALOG, [catalog_value(e) for e in entries])
    )
    assert writes.calls == [(SEARCH, entries)]
    assert log == ["search: away", "search: away", "search: write", "invalidate"]
    assert catalog_written("elasticsearch") - before == 2
    assert pool.log == []  # the search group writes no table


async def test_a_refusal_of_the_search_index_is_raised(
    dead: DeadLetters, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    writes = SearchWrites(log, away=[RuntimeError("search index refused 1 documents")])
    monkeypatch.setattr(elastic, "write_catalog_entries", writes)
    _, search_group = groups_over(Statements(), Pages(log), dead, SEARCH)
    with pytest.raises(RuntimeError, match="refused"):
        await search_group.handlers[COURSE_CATALOG](
            records_of(COURSE_CATALOG, [catalog_value(listed_entry(2))])
        )
    assert log == ["search: away"]

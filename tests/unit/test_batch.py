"""The course agent's batches without servers: what a batch's decisions see
(streams/batch.py), and how a batch is applied (streams/apply.py) against fakes of the
changelog, the store, the publisher and Redis that record the order of every effect."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RecordTooLargeError

from course_management.catalog.query import catalog_version
from course_management.domain.enrollment import EnrollInput
from course_management.domain.outcomes import Outcome, Reply
from course_management.infra.cache import CourseEntry, EnrollmentEntry
from course_management.infra.retrying import kafka_unavailable
from course_management.streams import agent, routes
from course_management.streams.apply import BatchApplier, Fenced
from course_management.streams.batch import Batch, UndeclaredWrite
from course_management.streams.inputs import Input
from course_management.tables.units import (
    POSITION_HEADER,
    Outbox,
    UnitRecord,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    is_placed,
)

TOPIC = "course-management-course-state-changelog"
# The writes a test's inputs may stage, as if every route declared them all.
EVERY_WRITE = frozenset({"course-events", "enrollment-events", "course-management-catalog"})


@contextmanager
def deciding(batch: Batch, event: Any, source: str = "user-enrolled") -> Iterator[None]:
    """An input decided under a route reading `source` that may write EVERY_WRITE."""
    with batch.deciding(event), batch.routed(EVERY_WRITE, source):
        yield


@dataclass
class _Message:
    partition: int
    offset: int = 0
    topic: str = "course-commands"


class _Event:
    """Stands in for a Faust event."""

    def __init__(self, partition: int, offset: int = 0, key: bytes = b"c1") -> None:
        self.message = _Message(partition, offset)
        self.key = key
        self.headers: dict[str, bytes] = {}


class _Store:
    """The table's local store: raw bytes by (partition, key), and Faust's offset key."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.data: dict[tuple[int, bytes], bytes] = {}
        self.offsets: dict[int, int] = {}

    def put(self, partition: int, key: str, value: Any) -> None:
        raw = encode_value(value)
        assert raw is not None
        self.data[(partition, encode_key(key))] = raw

    def value(self, partition: int, key: str) -> Any:
        return decode_value(self.data.get((partition, encode_key(key))))

    def read(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get((partition, key))

    def write_unit(self, partition: int, records: Sequence[UnitRecord], last_offset: int) -> None:
        self.log.append(("local", partition, [decode_key(k) for k, _, _ in records], last_offset))
        for key, value, _ in records:
            if value is None:
                self.data.pop((partition, key), None)
            else:
                self.data[(partition, key)] = value
        self.offsets[partition] = last_offset

    def persisted(self, partition: int) -> int | None:
        return self.offsets.get(partition)


@dataclass
class _Record:
    offset: int
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]]


class _Changelog:
    """A changelog whose partitions are lists; `foreign` appends another writer's unit
    before the next one of ours, `lose_answer` loses the broker's answer once."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.partitions: dict[int, list[_Record]] = {}
        self.foreign = False
        self.lose_answer = False

    def _append(self, partition: int, records: list[UnitRecord]) -> int:
        log = self.partitions.setdefault(partition, [])
        base = len(log)
        log.extend(_Record(base + i, k, v, list(h)) for i, (k, v, h) in enumerate(records))
        return base

    async def send(self, topic: str, partition: int, records: list[UnitRecord]) -> Any:
        assert topic == TOPIC
        if self.foreign:
            self.foreign = False
            self._append(partition, [(b'"x"', b"1", [(POSITION_HEADER, b"0")])])
        base = self._append(partition, records)
        self.log.append(("unit", partition, len(records)))
        sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.lose_answer:
            self.lose_answer = False
            sent.set_exception(KafkaTimeoutError())
        else:
            sent.set_result(SimpleNamespace(offset=base))
        return sent

    async def end_offset(self, topic: str, partition: int) -> int:
        return len(self.partitions.get(partition, []))

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[_Record]:
        return self.partitions.get(partition, [])[start:end]


class _Publisher:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def send_outgoing(self, records: list[Any]) -> None:
        self.log.append(("publish", [(r[0], r[1]) for r in records]))

    async def send_replies(self, replies: list[Any]) -> None:
        self.log.append(("replies", [r[1] for r in replies]))


class _Cache:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def put_entries(
        self, courses: Sequence[CourseEntry], enrollments: Sequence[EnrollmentEntry]
    ) -> None:
        self.log.append(
            (
                "cache",
                [(c.course_id, c.version, c.count) for c in courses],
                [(e.record["course_id"], e.record["user_id"]) for e in enrollments],
            )
        )


def _encode(subject: str, value: dict[str, Any]) -> bytes:
    return subject.encode() + b"|" + orjson.dumps(value, default=str)


def _course(course_id: str, version: int) -> dict[str, Any]:
    return {
        "id": course_id,
        "version": version,
        "status": "published",
        "title": "T",
        "description": "D",
        "instructor": {"id": "i", "name": "I"},
        "modules": [],
        "category": "c",
        "level": "beginner",
        "language": "en",
        "tags": [],
        "created_at": "2026-12-05T00:00:00Z",
        "updated_at": "2026-12-05T00:00:00Z",
    }


class _World:
    def __init__(self) -> None:
        self.log: list[Any] = []
        self.store = _Store(self.log)
        self.changelog = _Changelog(self.log)
        self.generation = 1
        self.applier = BatchApplier(
            TOPIC,
            self.changelog,
            self.store,
            _Publisher(self.log),
            _Cache(self.log),
            lambda: self.generation,
        )
        self.batch = Batch(self.store, _encode, decode_value)


def test_decisions_see_the_batch_s_earlier_writes_and_the_store_only_after_apply() -> None:
    world = _World()
    world.store.put(0, "c1", {"course": _course("c1", 1)})
    batch = world.batch
    batch.begin()
    with deciding(batch, _Event(0)):
        assert batch.course_record("c1") == {"course": _course("c1", 1)}
        batch.stage_course_record("c1", {"course": _course("c1", 2)})
    with deciding(batch, _Event(0)):
        assert batch.course_record("c1") == {"course": _course("c1", 2)}
    with deciding(batch, _Event(1)):  # another partition: its own keys
        assert batch.course_record("c1") is None
    assert world.store.value(0, "c1")["course"]["version"] == 1  # nothing written yet


async def test_a_batch_is_one_unit_per_partition_then_local_then_outbox_cache_replies() -> None:
    world = _World()
    batch, log = world.batch, world.log
    await world.applier.open([0, 1])
    log.clear()
    batch.begin()
    ok = Reply(Outcome.APPLIED, {"ok": True})
    with deciding(batch, _Event(0)):
        batch.stage_records([("course-events", "c1", "s", {"n": 1})])
        batch.stage_course_record("c1", {"course": _course("c1", 2)})
        batch.stage_catalog("c1")
        batch.stage_course_state("c1")
        batch.stage_reply("course-management-replies-w1", "cmd-a", ok)
        batch.stage_reply("course-events", "cmd-x", ok)  # not a reply topic: ignored
    with deciding(batch, _Event(0)):
        batch.stage_records([("enrollment-events", "c1", "s", {"n": 2})])
        batch.stage_seats("c1", {"count": 3, "seq": 3})
        batch.stage_course_record("c1", {"course": _course("c1", 3)})
        batch.stage_catalog("c1")
        batch.stage_course_state("c1")
    with deciding(batch, _Event(1, key=b"c2")):
        await batch.stage_dead_letter("user-enrolled", b"k", b"v", "course-full: no seat", "x")
    await world.applier.apply(batch)
    assert log == [
        # each partition's writes once, their last values, with the outbox: one unit each
        ("unit", 0, 3),
        ("unit", 1, 1),
        ("local", 0, ["c1", "c1#seats", "#outbox:0"], 2),
        ("local", 1, ["#outbox:1"], 0),
        (
            "publish",
            [
                ("course-events", b"c1"),
                ("enrollment-events", b"c1"),
                ("course-management-catalog", b"c1"),  # once per course, from the last state
                ("user-enrolled.dlq", b"k"),
            ],
        ),
        ("cache", [("c1", 3, 3)], []),  # the batch's final view, once per course
        ("replies", ["cmd-a"]),  # last
    ]
    # The catalog entry was built from the state the batch left (version 3, 3 seats).
    outbox = Outbox.from_value(world.store.value(0, "#outbox:0"))
    catalog = [r for r in outbox.records if r[0] == "course-management-catalog"]
    assert [orjson.loads((r[2] or b"").split(b"|", 1)[1])["catalog_version"] for r in catalog] == [
        catalog_version(3, 3)
    ]
    # Every record landed where it said it would.
    assert all(is_placed(r.offset, r.headers) for r in world.changelog.partitions[0])


async def test_a_unit_that_lands_after_another_writer_s_stops_before_anything_else() -> None:
    world = _World()
    await world.applier.open([0])
    world.log.clear()
    world.batch.begin()
    with deciding(world.batch, _Event(0)):
        world.batch.stage_records([("course-events", "c1", "s", {})])
        world.batch.stage_course_record("c1", {"course": _course("c1", 1)})
    world.changelog.foreign = True  # a worker that also thinks it owns partition 0
    with pytest.raises(Fenced):
        await world.applier.apply(world.batch)
    assert world.log == [("unit", 0, 2)]  # no local write, nothing published
    assert world.store.value(0, "c1") is None
    # Readers skip the fenced unit: it did not land where it said.
    assert [is_placed(r.offset, r.headers) for r in world.changelog.partitions[0]] == [
        True,
        False,
        False,
    ]


async def test_a_lost_answer_is_settled_by_reading_the_log() -> None:
    world = _World()
    await world.applier.open([0])
    world.batch.begin()
    with deciding(world.batch, _Event(0)):
        world.batch.stage_course_record("c1", {"course": _course("c1", 1)})
    world.changelog.lose_answer = True  # the unit landed, its answer did not come
    await world.applier.apply(world.batch)
    assert len(world.changelog.partitions[0]) == 2  # not sent twice
    assert world.store.value(0, "c1") == {"course": _course("c1", 1)}


async def test_opening_a_partition_publishes_the_last_outbox_again_unless_it_was_ours() -> None:
    world = _World()
    await world.applier.open([0])
    world.batch.begin()
    with deciding(world.batch, _Event(0)):
        world.batch.stage_records([("course-events", "c1", "s", {"n": 1})])
        world.batch.stage_course_record("c1", {"course": _course("c1", 4)})
        world.batch.stage_course_state("c1")
    await world.applier.apply(world.batch)
    world.log.clear()
    world.generation = 2  # a rebalance that left partition 0 here: nothing again
    await world.applier.open([0])
    assert world.log == []
    # A new worker on the same data (a crash after the unit, before its outbox went out):
    # the outbox goes out again, byte for byte, and Redis is rewritten from the store.
    fresh = _World()
    fresh.store, fresh.changelog = world.store, world.changelog
    fresh.applier = BatchApplier(
        TOPIC, fresh.changelog, fresh.store, _Publisher(fresh.log), _Cache(fresh.log), lambda: 1
    )
    await fresh.applier.open([0])
    assert fresh.log == [
        ("publish", [("course-events", b"c1")]),
        ("cache", [("c1", 4, 0)], []),
    ]


async def test_opening_catches_the_store_up_with_placed_records_only() -> None:
    world = _World()
    world.changelog.partitions[0] = [
        _Record(0, encode_key("a"), b"1", [(POSITION_HEADER, b"0")]),
        _Record(1, encode_key("b"), b"2", [(POSITION_HEADER, b"0")]),  # misplaced
        _Record(2, encode_key("c"), b"3", []),  # older than units: placed
    ]
    await world.applier.open([0])
    assert (world.store.value(0, "a"), world.store.value(0, "b"), world.store.value(0, "c")) == (
        1,
        None,
        3,
    )
    assert world.store.persisted(0) == 2


def test_a_batch_is_empty_after_begin() -> None:
    world = _World()
    batch = world.batch
    with deciding(batch, _Event(0)):
        batch.stage_course_record("c1", {"course": _course("c1", 1)})
        batch.stage_records([("course-events", "c1", "s", {})])
    batch.begin()
    assert batch.staged_bytes == 0 and batch.partitions == {}
    with deciding(batch, _Event(0)):
        assert batch.course_record("c1") is None


def test_kafka_errors_worth_waiting_out() -> None:
    assert kafka_unavailable(KafkaTimeoutError())
    assert kafka_unavailable(KafkaConnectionError())
    assert not kafka_unavailable(RecordTooLargeError())
    assert not kafka_unavailable(ValueError("a bug"))


def test_a_batch_that_cannot_be_applied_stops_the_worker_without_acking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(agent.os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        agent.stop_unapplied(RuntimeError("broken"))
    assert codes == [agent.UNAPPLIED_EXIT_CODE]


async def test_a_handler_that_raises_is_dead_lettered_and_its_caller_answered_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = _World()
    batch = world.batch
    batch.begin()
    item = Input(
        kind="user_enrolled",
        source_topic="user-enrolled",
        key=b"k",
        raw=b"v",
        message=EnrollInput("e-1", "c1", "u1", datetime.now(UTC), "test"),
        reply_to="course-management-replies-w1",
        correlation_id="e-1",
    )

    async def read(*_: Any) -> Input:
        return item

    async def broken(*_: Any) -> None:
        raise ZeroDivisionError("a bug")

    async def undeclared(batch: Batch, _: Input) -> None:
        batch.stage_records([("course-events", "c1", "s", {})])  # not among its writes

    monkeypatch.setattr(agent, "read_input", read)
    for handler, error in ((broken, b"ZeroDivisionError"), (undeclared, b"UndeclaredWrite")):
        batch.begin()
        route = routes.ROUTES["user_enrolled"]
        monkeypatch.setitem(routes.ROUTES, "user_enrolled", replace(route, handler=handler))
        with batch.deciding(_Event(0)):
            await agent.handle(None, batch, _Event(0), None)  # type: ignore[arg-type]
        [(topic, key, value, headers)] = batch.partitions[0].records
        assert (topic, key, value) == ("user-enrolled.dlq", b"k", b"v")
        assert dict(headers)["dlq.code"] == b"error"
        assert error in dict(headers)["dlq.reason"]
    [(reply_to, correlation, record)] = batch.partitions[0].replies
    assert (reply_to, correlation, record["outcome"]) == (
        "course-management-replies-w1",
        "e-1",
        "internal",
    )


async def test_a_record_for_a_topic_its_route_did_not_declare_is_refused() -> None:
    batch = Batch(_Store([]), lambda subject, value: orjson.dumps(value), decode_value)
    batch.begin()
    only_events = frozenset({"enrollment-events"})
    with batch.deciding(_Event(0)), batch.routed(only_events, "user-enrolled"):
        batch.stage_records([("enrollment-events", "c1", "s", {"n": 1})])  # declared
        with pytest.raises(UndeclaredWrite, match="course-events"):
            batch.stage_records([("course-events", "c1", "s", {"n": 2})])
        with pytest.raises(UndeclaredWrite, match="course-management-catalog"):
            batch.stage_catalog("c1")
        with pytest.raises(UndeclaredWrite, match="dead letters"):
            await batch.stage_dead_letter("course-commands", b"k", b"v", "why", "invalid")
        await batch.stage_dead_letter("user-enrolled", b"k", b"v", "why", "refused")  # its own
    with batch.deciding(_Event(0)), pytest.raises(UndeclaredWrite):
        batch.stage_records([("enrollment-events", "c1", "s", {})])  # outside any route
    outbox = batch.outbox(0)
    assert [topic for topic, *_ in outbox.records] == ["enrollment-events", "user-enrolled.dlq"]

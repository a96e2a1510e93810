"""The enrollment router without servers (streams/router.py): records of `user-enrolled`
and `course-progress` re-keyed by course id onto the enrollment-inputs topic, with their
kind and where they were read in headers; undecodable or incomplete ones dead-lettered.

The codec is the real `AvroCodec`, with the real schemas of the two source topics loaded
as if registered (no registry: its client fails the test if it is ever asked); the
publisher and the dead letters are lists."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import fastavro
import pytest
from aiokafka import ConsumerRecord

from course_management.infra.avro import AvroCodec, load_schema_text
from course_management.infra.dead_letters import MALFORMED
from course_management.infra.publisher import RawRecord
from course_management.streams.router import EnrollmentRouter
from course_management.topology import (
    CORRELATION_HEADER,
    COURSE_PROGRESS,
    ENROLLMENT_INPUT_SOURCES,
    ENROLLMENT_INPUTS,
    KIND_HEADER,
    REPLY_TO_HEADER,
    REQUEST_ID_HEADER,
    SOURCE_KEY_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    USER_ENROLLED,
    spec,
)

OWN_HEADERS = (KIND_HEADER, SOURCE_KEY_HEADER, SOURCE_PARTITION_HEADER, SOURCE_OFFSET_HEADER)
KIND_OF = {source: kind for kind, source in ENROLLMENT_INPUT_SOURCES.items()}


class _NoRegistry:
    """Every schema the tests write with is known to the codec: a lookup is a bug."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"the registry was asked ({name})")


def local_codec() -> AvroCodec:
    """The real codec, with the source topics' schemas as if registered (ids 1, 2, ...)."""
    codec = AvroCodec("http://registry.invalid")
    codec._client = _NoRegistry()  # type: ignore[assignment]
    for schema_id, source in enumerate(sorted(KIND_OF), start=1):
        topic = spec(source)
        assert topic.schema_file is not None
        parsed = fastavro.parse_schema(json.loads(load_schema_text(topic.schema_file)))
        codec._parsed[topic.subject] = parsed
        codec._ids[topic.subject] = schema_id
        codec._writers[schema_id] = parsed
    return codec


CODEC = local_codec()


def enrolled(course_id: str = "course-1", user_id: str = "u1", **fields: Any) -> bytes:
    value = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime(2026, 3, 1, tzinfo=UTC),
        "user_id": user_id,
        "course_id": course_id,
        "source": "web",
        **fields,
    }
    return CODEC.encode(spec(USER_ENROLLED).subject, value)


def progress(course_id: str = "course-1", item_id: str = "i1", **fields: Any) -> bytes:
    value = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime(2026, 3, 1, tzinfo=UTC),
        "user_id": "u1",
        "course_id": course_id,
        "item_id": item_id,
        "status": "completed",
        "score": 0.5,
        **fields,
    }
    return CODEC.encode(spec(COURSE_PROGRESS).subject, value)


def record(
    topic: str,
    value: bytes | None,
    *,
    offset: int,
    partition: int = 0,
    key: bytes | None = b"some-key",
    headers: tuple[tuple[str, bytes], ...] = (),
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=headers,
    )


@dataclass
class DeadLetters:
    kept: list[tuple[str, bytes | None, bytes | None, str, str]] = field(default_factory=list)

    async def __call__(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None:
        self.kept.append((topic, key, value, reason, code))


@dataclass
class Sent:
    calls: list[list[RawRecord]] = field(default_factory=list)

    async def __call__(self, records: list[RawRecord]) -> None:
        self.calls.append(list(records))

    @property
    def records(self) -> list[RawRecord]:
        return [r for call in self.calls for r in call]


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def dead() -> DeadLetters:
    return DeadLetters()


@pytest.fixture
def router(sent: Sent, dead: DeadLetters) -> EnrollmentRouter:
    return EnrollmentRouter(CODEC, sent, dead)


def test_the_handlers_are_exactly_the_source_topics(router: EnrollmentRouter) -> None:
    assert set(router.handlers()) == set(ENROLLMENT_INPUT_SOURCES.values())
    assert set(router.handlers()) == {USER_ENROLLED, COURSE_PROGRESS}


@pytest.mark.parametrize(
    ("source", "encode"), [(USER_ENROLLED, enrolled), (COURSE_PROGRESS, progress)]
)
async def test_each_handler_forwards_under_its_sources_kind(
    router: EnrollmentRouter, sent: Sent, dead: DeadLetters, source: str, encode: Any
) -> None:
    value = encode(course_id="course-7")
    await router.handlers()[source]([record(source, value, offset=3)])

    assert dead.kept == []
    [(topic, key, forwarded, headers)] = sent.records
    assert (topic, key, forwarded) == (ENROLLMENT_INPUTS, "course-7", value)
    assert dict(headers)[KIND_HEADER] == KIND_OF[source].encode()


async def test_a_record_is_rekeyed_by_course_with_its_bytes_and_where_it_was_read(
    router: EnrollmentRouter, sent: Sent
) -> None:
    value = enrolled(course_id="course-42", user_id="u9")
    foreign = (
        (REQUEST_ID_HEADER, b"req-1"),
        (REPLY_TO_HEADER, b"course-management-replies-w1"),
        (CORRELATION_HEADER, b"corr-1"),
        ("x-other-service", b"kept as sent"),
    )
    await router.route(
        USER_ENROLLED,
        [record(USER_ENROLLED, value, offset=41, partition=3, key=b"user-9", headers=foreign)],
    )

    [(topic, key, forwarded, headers)] = sent.records
    assert topic == ENROLLMENT_INPUTS
    assert key == "course-42"  # not the source key
    assert forwarded is value  # the same bytes: the agent decodes them by their kind
    assert list(headers) == [
        *foreign,
        (KIND_HEADER, b"user_enrolled"),
        (SOURCE_KEY_HEADER, b"user-9"),
        (SOURCE_PARTITION_HEADER, b"3"),
        (SOURCE_OFFSET_HEADER, b"41"),
    ]


async def test_stale_own_headers_are_replaced_and_foreign_ones_kept(
    router: EnrollmentRouter, sent: Sent
) -> None:
    """A record that already carries the router's headers (another service copied them,
    or a replayed forward) gets this read's values, once each."""
    stale = (
        (KIND_HEADER, b"user_enrolled"),
        ("x-trace", b"t-1"),
        (SOURCE_KEY_HEADER, b"old-key"),
        (SOURCE_PARTITION_HEADER, b"9"),
        (SOURCE_OFFSET_HEADER, b"999"),
        (REQUEST_ID_HEADER, b"req-2"),
    )
    await router.route(
        COURSE_PROGRESS,
        [record(COURSE_PROGRESS, progress(), offset=5, partition=1, key=None, headers=stale)],
    )

    [(_, _, _, headers)] = sent.records
    names = [name for name, _ in headers]
    for own in OWN_HEADERS:
        assert names.count(own) == 1, own
    assert list(headers) == [
        ("x-trace", b"t-1"),
        (REQUEST_ID_HEADER, b"req-2"),
        (KIND_HEADER, b"item_progress"),
        (SOURCE_KEY_HEADER, b""),  # no key on the source: an empty one
        (SOURCE_PARTITION_HEADER, b"1"),
        (SOURCE_OFFSET_HEADER, b"5"),
    ]


@pytest.mark.parametrize(
    ("source", "value", "field_name"),
    [
        (USER_ENROLLED, enrolled(course_id=""), "course_id"),
        (USER_ENROLLED, enrolled(user_id=""), "user_id"),
        (COURSE_PROGRESS, progress(course_id=""), "course_id"),
        (COURSE_PROGRESS, progress(item_id=""), "item_id"),
        (USER_ENROLLED, enrolled(user_id="u\x00"), "user_id"),
        (COURSE_PROGRESS, progress(item_id="i" * 10_000), "item_id"),
    ],
    ids=[
        "enrolled-no-course",
        "enrolled-no-user",
        "progress-no-course",
        "progress-no-item",
        "enrolled-nul",
        "progress-too-long",
    ],
)
async def test_an_incomplete_record_is_dead_lettered_naming_the_field(
    router: EnrollmentRouter,
    sent: Sent,
    dead: DeadLetters,
    source: str,
    value: bytes,
    field_name: str,
) -> None:
    await router.route(source, [record(source, value, offset=8, key=b"k8")])

    assert sent.records == []
    [(topic, key, kept, reason, code)] = dead.kept
    assert (topic, key, kept, code) == (source, b"k8", value, MALFORMED)
    assert field_name in reason


@pytest.mark.parametrize(
    "value",
    [None, b"", b"not avro at all", b"\x00\x00\x00\x00\x01\xff\xff\xff"],
    ids=["tombstone", "empty", "bad-magic", "bad-body"],
)
async def test_an_undecodable_record_is_dead_lettered(
    router: EnrollmentRouter, sent: Sent, dead: DeadLetters, value: bytes | None
) -> None:
    await router.route(USER_ENROLLED, [record(USER_ENROLLED, value, offset=2, key=b"k2")])

    assert sent.records == []
    [(topic, key, kept, reason, code)] = dead.kept
    assert (topic, key, kept, code) == (USER_ENROLLED, b"k2", value, MALFORMED)
    assert reason


async def test_the_others_of_a_batch_are_forwarded_in_order(
    router: EnrollmentRouter, sent: Sent, dead: DeadLetters
) -> None:
    values = [
        progress(course_id="c-a"),
        b"garbage",
        progress(course_id="c-b"),
        progress(item_id=""),
        progress(course_id="c-a"),
    ]
    batch = [
        record(COURSE_PROGRESS, value, offset=10 + i, partition=i % 2)
        for i, value in enumerate(values)
    ]
    await router.route(COURSE_PROGRESS, batch)

    assert [(key, value) for _, key, value, _ in sent.records] == [
        ("c-a", values[0]),
        ("c-b", values[2]),
        ("c-a", values[4]),
    ]
    offsets = [dict(headers)[SOURCE_OFFSET_HEADER] for _, _, _, headers in sent.records]
    assert offsets == [b"10", b"12", b"14"]
    assert [kept for _, _, kept, _, _ in dead.kept] == [values[1], values[3]]
    assert "item_id" in dead.kept[1][3]
    # one send for the batch: the consumer group commits once the broker has them all
    assert len(sent.calls) == 1


async def test_a_failed_send_is_raised_for_the_group_to_replay(dead: DeadLetters) -> None:
    """The router must not swallow a send that failed: its group would commit past it."""

    async def broker_away(records: list[RawRecord]) -> None:
        raise ConnectionError("broker away")

    router = EnrollmentRouter(CODEC, broker_away, dead)
    with pytest.raises(ConnectionError):
        await router.route(USER_ENROLLED, [record(USER_ENROLLED, enrolled(), offset=1)])

"""One live stream's side of the live events (gateways/live_events.py has the tail): the
event a record makes, the stream's state, and the reads a stream makes with a consumer of
its own: the ids before a resumed position (a copy published again after a crash is not
sent twice) and its records from its position up to the tail's, merged by record time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from course_management.domain.stream_ids import StreamPosition
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.topology import spec

# An event is published again, at a later offset, when the agent that published it
# crashed before it knew (the next opener sends its last unit's outbox again, decision
# 49). A stream delivers an event id once: it remembers the ids it sent, and a resumed
# stream first reads back this many records before its position in each topic.
SEEN_KEPT = 10_000
READ_BACK = 2_000  # an outbox is at most 2 MiB of events of the partition's courses
END = None  # on a stream's queue: the stream ends (the worker stops, or it fell behind)


@dataclass(frozen=True)
class LiveEvent:
    topic: str
    offset: int
    timestamp_ms: int
    course_id: str
    user_id: str | None
    event_type: str
    event_id: str
    data: bytes  # the event as JSON, the same fields as its Avro record
    # The tail's next offset in each topic of the record's partition once it was read:
    # a stream that receives it has had every record of its course before those.
    tail: dict[str, int] = field(default_factory=dict)


@dataclass(eq=False)  # each stream is itself (hashed by identity)
class Stream:
    """One open stream: what it follows, where it is, its queue of the tail's records."""

    course_id: str
    user_id: str | None
    topics: tuple[str, ...]
    partition: int
    position: StreamPosition
    boundary: dict[str, int]  # the tail's next offsets when the stream opened
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=lambda: asyncio.Queue())
    seen: dict[str, None] = field(default_factory=dict)  # event ids sent, oldest first
    ended: bool = False  # fell too far behind: END is queued, its handler closes it

    def fresh(self, event: LiveEvent) -> bool:
        """Not sent yet (remembered from now on)."""
        if event.event_id in self.seen:
            return False
        self.seen[event.event_id] = None
        if len(self.seen) > SEEN_KEPT:
            del self.seen[next(iter(self.seen))]
        return True

    def wants(self, event: LiveEvent) -> bool:
        return event.topic in self.topics and (
            self.user_id is None or event.user_id == self.user_id
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


async def decode_event(codec: AvroCodec, record: ConsumerRecord) -> LiveEvent | None:
    """A record as a live event (None: not an event; the sinks dead-letter it)."""
    try:
        value = await codec.decode(spec(record.topic).subject, record.value)
    except (AvroDecodeError, KeyError, ValueError):
        return None  # not an event (the sinks dead-letter it)
    return LiveEvent(
        topic=record.topic,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        course_id=str(value.get("course_id") or (record.key or b"").decode()),
        user_id=value.get("user_id"),
        event_type=str(value.get("event_type")),
        event_id=str(value.get("event_id")),
        data=orjson.dumps(value, default=_json_default),
    )


async def read_back(bootstrap: str, codec: AvroCodec, stream: Stream) -> None:
    """The ids of the stream's events in the READ_BACK records before its position
    in each topic: a copy published again after them is not sent twice."""
    tps = [TopicPartition(t, stream.partition) for t in stream.topics]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        firsts = await consumer.beginning_offsets(tps)
        ends = {tp: stream.position.offsets[i] for i, tp in enumerate(tps)}
        for tp in tps:
            consumer.seek(tp, max(firsts[tp], ends[tp] - READ_BACK))
        todo = {tp for tp in tps if max(firsts[tp], ends[tp] - READ_BACK) < ends[tp]}
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        todo.discard(tp)
                        break
                    if record.key != stream.course_id.encode():
                        continue
                    event = await decode_event(codec, record)
                    if event is not None and stream.wants(event):
                        stream.fresh(event)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()


async def catch_up(bootstrap: str, codec: AvroCodec, stream: Stream) -> AsyncIterator[LiveEvent]:
    """The stream's records from its position up to the boundary, merged by time."""
    todo = {
        TopicPartition(t, stream.partition): (stream.position.offsets[i], stream.boundary[t])
        for i, t in enumerate(stream.topics)
        if stream.position.offsets[i] < stream.boundary[t]
    }
    if not todo:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(todo))
        firsts = await consumer.beginning_offsets(list(todo))
        for tp, (start, _) in todo.items():
            consumer.seek(tp, max(start, firsts[tp]))
        buffers: dict[TopicPartition, list[LiveEvent]] = {tp: [] for tp in todo}
        done: set[TopicPartition] = set()
        while True:
            waiting = [tp for tp in todo if tp not in done and not buffers[tp]]
            if waiting:
                await _fill(codec, consumer, waiting, todo, buffers, done, stream)
                continue
            heads = [tp for tp in todo if buffers[tp]]
            if not heads:
                return
            first = min(heads, key=lambda tp: buffers[tp][0].timestamp_ms)
            yield buffers[first].pop(0)
    finally:
        await consumer.stop()


async def _fill(
    codec: AvroCodec,
    consumer: AIOKafkaConsumer,
    waiting: list[TopicPartition],
    todo: dict[TopicPartition, tuple[int, int]],
    buffers: dict[TopicPartition, list[LiveEvent]],
    done: set[TopicPartition],
    stream: Stream,
) -> None:
    for tp in waiting:
        if await consumer.position(tp) >= todo[tp][1]:
            done.add(tp)
    fetchable = [tp for tp in waiting if tp not in done]
    if not fetchable:
        return
    batch = await consumer.getmany(*fetchable, timeout_ms=500)
    for tp, records in batch.items():
        for record in records:
            if record.offset >= todo[tp][1]:
                done.add(tp)
                break
            if record.key != stream.course_id.encode():
                continue  # another course of the partition: not decoded
            event = await decode_event(codec, record)
            if event is not None and stream.wants(event) and event.course_id == stream.course_id:
                buffers[tp].append(event)

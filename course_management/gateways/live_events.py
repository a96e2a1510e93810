"""Live event streams (CONTRACT §5.4): one tail of `course-events`, `enrollment-events` and
`learner-milestones` per worker, fanned out to the open streams of each course.

- **The tail** is one consumer without a group, assigned every partition of the three
  topics from their ends when the worker starts. Each record is decoded once and handed to
  the streams of its course (its key); a stream keeps a bounded queue, and one that falls
  too far behind (a stalled client) is ended: its client reconnects with its last id.
- **A stream's position** (domain/stream_ids.py) is, for each topic it reads, the next
  offset of its course's partition (a course's records share one partition number in all
  three topics). A new stream starts where the tail is. A stream resumed from a
  `Last-Event-ID`, or started at `?since=`, first reads its own course partitions from
  its position up to where the tail was when it opened (a consumer of its own, merged by
  record time), then takes the tail's records from there. Each record is delivered only
  if it is at or past the stream's position in its topic, so nothing comes twice and
  nothing is skipped, whichever worker the stream reconnects to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import murmur2

from course_management.api.ports import Unavailable
from course_management.domain.stream_ids import BadStreamId, StreamPosition
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.kafka import topic_partitions
from course_management.infra.metrics import SSE_EVENTS, SSE_STREAMS
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES, spec

log = logging.getLogger(__name__)

COURSE_TOPICS = (COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES)
LEARNER_TOPICS = (ENROLLMENT_EVENTS, LEARNER_MILESTONES)
QUEUE_LIMIT = 10_000  # records a stream may be behind the tail before it is ended
# An event is published again, at a later offset, when the agent that published it
# crashed before it knew (the next opener sends its last unit's outbox again, decision
# 49). A stream delivers an event id once: it remembers the ids it sent, and a resumed
# stream first reads back this many records before its position in each topic.
SEEN_KEPT = 20_000
READ_BACK = 10_000
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


class LiveEvents:
    """api.ports.Live: the tail and its streams."""

    def __init__(self, bootstrap: str, codec: AvroCodec, max_streams: int) -> None:
        self._bootstrap = bootstrap
        self._codec = codec
        self._max_streams = max_streams
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._next: dict[TopicPartition, int] = {}  # the tail's next offsets
        self._partitions: dict[str, int] = {}
        self._streams: dict[str, set[Stream]] = {}
        self._count = 0

    @property
    def open_streams(self) -> int:
        return self._count

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        await consumer.start()
        tps: list[TopicPartition] = []
        for topic in COURSE_TOPICS:
            found = await topic_partitions(self._bootstrap, topic)
            self._partitions[topic] = len(found)
            tps += found
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
            self._next[tp] = ends[tp]
        self._consumer = consumer
        self._task = asyncio.create_task(self._tail(), name="live-events-tail")

    async def stop(self) -> None:
        """End every stream (its response finishes cleanly), then the tail."""
        for streams in self._streams.values():
            for stream in streams:
                stream.queue.put_nowait(END)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _tail(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500)
            except Exception:  # the broker away: the consumer reconnects by itself
                log.warning("live events: the tail could not fetch", exc_info=True)
                await asyncio.sleep(1)
                continue
            for tp, records in batch.items():
                for record in records:
                    event = await self._decode(record)
                    self._next[tp] = record.offset + 1
                    if event is not None and event.course_id in self._streams:
                        tail = {
                            t: self._next[TopicPartition(t, tp.partition)] for t in COURSE_TOPICS
                        }
                        self._dispatch(LiveEvent(**{**vars(event), "tail": tail}))

    async def _decode(self, record: ConsumerRecord) -> LiveEvent | None:
        try:
            value = await self._codec.decode(spec(record.topic).subject, record.value)
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

    def _dispatch(self, event: LiveEvent) -> None:
        for stream in list(self._streams.get(event.course_id, ())):
            if not stream.wants(event):
                continue
            if stream.queue.qsize() >= QUEUE_LIMIT:  # a stalled client: end its stream
                self._close(stream)
                stream.queue.put_nowait(END)
                continue
            stream.queue.put_nowait(event)

    def partition_of(self, course_id: str) -> int:
        count = self._partitions.get(COURSE_EVENTS)
        if not count:
            raise Unavailable("streams-unavailable", "the event streams are not started yet")
        return (murmur2(course_id.encode()) & 0x7FFFFFFF) % count

    async def open(
        self,
        course_id: str,
        user_id: str | None,
        position: StreamPosition | None,
        scope: str,
        since: datetime | None = None,
    ) -> Stream:
        """A stream of the course (or of one learner in it) from `position` (a
        Last-Event-ID), `since` a moment, or now."""
        if self._count >= self._max_streams:
            raise Unavailable(
                "too-many-streams", "this worker holds as many streams as it may; retry shortly"
            )
        topics = COURSE_TOPICS if user_id is None else LEARNER_TOPICS
        partition = self.partition_of(course_id)
        tps = [TopicPartition(t, partition) for t in topics]
        if position is None and since is not None:
            position = StreamPosition(scope, await self._offsets_at(tps, since))
        resumed = position is not None
        if position is not None:
            assert self._consumer is not None
            ends = await self._consumer.end_offsets(tps)
            if any(o > ends[tp] for o, tp in zip(position.offsets, tps, strict=True)):
                raise BadStreamId("an event id past the end of the stream's topics")
        # The boundary and the registration with no await between them: every record the
        # tail reads from here on is queued for the stream, every one before is below.
        boundary = {tp.topic: self._next[tp] for tp in tps}
        if position is None:
            position = StreamPosition(scope, tuple(boundary[t] for t in topics))
        stream = Stream(course_id, user_id, topics, partition, position, boundary)
        self._streams.setdefault(course_id, set()).add(stream)
        self._count += 1
        SSE_STREAMS.set(self._count)
        if resumed:
            try:
                await self._read_back(stream)
            except BaseException:
                self._close(stream)
                raise
        return stream

    async def _offsets_at(self, tps: list[TopicPartition], since: datetime) -> tuple[int, ...]:
        assert self._consumer is not None
        moment = int(since.timestamp() * 1000)
        found = await self._consumer.offsets_for_times(dict.fromkeys(tps, moment))
        ends = await self._consumer.end_offsets(tps)
        return tuple(found[tp].offset if found.get(tp) else ends[tp] for tp in tps)

    def close(self, stream: Stream) -> None:
        self._close(stream)

    def _close(self, stream: Stream) -> None:
        streams = self._streams.get(stream.course_id)
        if streams is not None and stream in streams:
            streams.discard(stream)
            self._count -= 1
            SSE_STREAMS.set(self._count)
            if not streams:
                del self._streams[stream.course_id]

    async def events(self, stream: Stream) -> AsyncIterator[tuple[LiveEvent, StreamPosition]]:
        """Every event of the stream from its position, with the position after it: those
        before the tail's position when it opened first (read apart), then the tail's."""
        async for event in self._catch_up(stream):
            position = self._advance(stream, event)
            if stream.fresh(event):
                SSE_EVENTS.labels("catch_up").inc()
                yield event, position
        # Every record of the course below the boundary was delivered (or is not this
        # stream's): an id from here on need not send a reconnection back below it.
        stream.position = stream.position.at_least(tuple(stream.boundary[t] for t in stream.topics))
        while True:
            queued = await stream.queue.get()
            if queued is None:  # END
                return
            event = queued
            index = stream.topics.index(event.topic)
            if event.offset < stream.position.offsets[index]:
                continue  # before the stream's position: delivered already
            stream.position = stream.position.at_least(
                tuple(event.tail.get(t, 0) for t in stream.topics)
            )
            position = self._advance(stream, event)
            if stream.fresh(event):
                SSE_EVENTS.labels("live").inc()
                yield event, position

    @staticmethod
    def _advance(stream: Stream, event: LiveEvent) -> StreamPosition:
        stream.position = stream.position.after(stream.topics.index(event.topic), event.offset)
        return stream.position

    async def _read_back(self, stream: Stream) -> None:
        """The ids of the stream's events in the READ_BACK records before its position
        in each topic: a copy published again after them is not sent twice."""
        tps = [TopicPartition(t, stream.partition) for t in stream.topics]
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
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
                        event = await self._decode(record)
                        if event is not None and stream.wants(event):
                            stream.fresh(event)
                for tp in list(todo):
                    if await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)
        finally:
            await consumer.stop()

    async def _catch_up(self, stream: Stream) -> AsyncIterator[LiveEvent]:
        """The stream's records from its position up to the boundary, merged by time."""
        todo = {
            TopicPartition(t, stream.partition): (stream.position.offsets[i], stream.boundary[t])
            for i, t in enumerate(stream.topics)
            if stream.position.offsets[i] < stream.boundary[t]
        }
        if not todo:
            return
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
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
                    await self._fill(consumer, waiting, todo, buffers, done, stream)
                    continue
                heads = [tp for tp in todo if buffers[tp]]
                if not heads:
                    return
                first = min(heads, key=lambda tp: buffers[tp][0].timestamp_ms)
                yield buffers[first].pop(0)
        finally:
            await consumer.stop()

    async def _fill(
        self,
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
                event = await self._decode(record)
                if (
                    event is not None
                    and stream.wants(event)
                    and event.course_id == stream.course_id
                ):
                    buffers[tp].append(event)

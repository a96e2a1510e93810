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
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from course_management.api.ports import Unavailable
from course_management.domain.stream_ids import BadStreamId, StreamPosition
from course_management.gateways.live_stream import (
    END,
    LiveEvent,
    Stream,
    catch_up,
    decode_event,
    read_back,
)
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import topic_partitions
from course_management.infra.metrics import SSE_EVENTS, SSE_STREAMS
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES

log = logging.getLogger(__name__)

COURSE_TOPICS = (COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES)
LEARNER_TOPICS = (ENROLLMENT_EVENTS, LEARNER_MILESTONES)
QUEUE_LIMIT = 1_000  # events a stream may be behind the tail before it is ended
OPEN_TIMEOUT_S = 10.0  # opening a stream (reading its topics' ends, its read-back)


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
        self._count = 0  # streams open or opening (a slot is taken before the first await)
        self._stopping = False

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
        """End every stream (its response finishes cleanly), refuse new ones, then stop
        the tail. Never raises: the worker's stop goes on."""
        self._stopping = True
        for streams in self._streams.values():
            for stream in streams:
                stream.queue.put_nowait(END)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def _tail(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500, max_records=500)
            except Exception:  # the broker away: the consumer reconnects by itself
                log.warning("live events: the tail could not fetch", exc_info=True)
                await asyncio.sleep(1)
                continue
            for tp, records in batch.items():
                for record in records:
                    key = (record.key or b"").decode("utf-8", "replace")
                    if key not in self._streams:  # nobody follows its course: not decoded
                        self._next[tp] = record.offset + 1
                        continue
                    try:
                        event = await decode_event(self._codec, record)
                    except Exception:  # one record must not end every stream's tail
                        log.exception("live events: a record could not be read")
                        event = None
                    self._next[tp] = record.offset + 1
                    if event is not None and event.course_id in self._streams:
                        tail = {
                            t: self._next[TopicPartition(t, tp.partition)] for t in COURSE_TOPICS
                        }
                        self._dispatch(LiveEvent(**{**vars(event), "tail": tail}))
            await asyncio.sleep(0)  # a large batch does not hold the loop (the API, the agent)

    def _dispatch(self, event: LiveEvent) -> None:
        for stream in list(self._streams.get(event.course_id, ())):
            if stream.ended or not stream.wants(event):
                continue
            if stream.queue.qsize() >= QUEUE_LIMIT:  # a stalled client: end its stream
                stream.ended = True
                stream.queue.put_nowait(END)
                continue
            stream.queue.put_nowait(event)

    @property
    def partitions(self) -> int:
        """The event topics' partition count, as the broker says (read at start)."""
        count = self._partitions.get(COURSE_EVENTS)
        if not count:
            raise Unavailable("streams-unavailable", "the event topics are not read yet")
        return count

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
        Last-Event-ID), `since` a moment, or now. Unavailable when the worker is stopping,
        holds SSE_MAX_STREAMS, or cannot read the topics now."""
        if self._stopping or self._consumer is None:
            raise Unavailable("streams-unavailable", "this worker is stopping; reconnect")
        if self._count >= self._max_streams:
            raise Unavailable(
                "too-many-streams", "this worker holds as many streams as it may; retry shortly"
            )
        self._count += 1  # the slot is taken before the first await
        SSE_STREAMS.set(self._count)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                return await self._open(course_id, user_id, position, scope, since)
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(
                "streams-unavailable", "the event topics cannot be read now; retry shortly"
            ) from exc
        finally:
            self._count -= 1  # a stream opened holds its slot through its registration
            SSE_STREAMS.set(self._count)

    async def _open(
        self,
        course_id: str,
        user_id: str | None,
        position: StreamPosition | None,
        scope: str,
        since: datetime | None,
    ) -> Stream:
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
                await read_back(self._bootstrap, self._codec, stream)
            except BaseException:
                self._close(stream)
                raise
        return stream

    async def _offsets_at(self, tps: list[TopicPartition], since: datetime) -> tuple[int, ...]:
        assert self._consumer is not None
        moment = int(since.timestamp() * 1000)
        # the ends first: a record appended between the two calls is after `since`
        ends = await self._consumer.end_offsets(tps)
        found = await self._consumer.offsets_for_times(dict.fromkeys(tps, moment))
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
        async for event in catch_up(self._bootstrap, self._codec, stream):
            if self._stopping:
                return
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

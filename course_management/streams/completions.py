"""The completions index: every learner's completed courses, on every worker (decision 57).

A course's prerequisites were completed in other courses, decided on other partitions,
maybe by other workers. The agent that completes a course publishes a `CompletionEntry`
on the compacted course-management-completions in the same unit's outbox, and answers
that request only once the entry is acked (streams/apply.py). Every worker reads the
whole topic (all partitions, no consumer group) into memory. An enrolment in a course
with prerequisites asks `completed(user, courses)`: the index first reads the topic's
end offsets (one request), then waits until it has read that far, so every completion
answered before the enrolment was decided is seen, whichever worker answered it.

Cost: one ListOffsets round trip per enrolment in a course with prerequisites (others
ask nothing), and the index's memory: a set entry per completion.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import topic_partitions
from course_management.infra.retrying import until_published
from course_management.messages import completion_entry

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 200


class CompletionIndex:
    def __init__(self, bootstrap: str, codec: AvroCodec) -> None:
        self._bootstrap = bootstrap
        self._codec = codec
        self._done: dict[str, set[str]] = defaultdict(set)  # user id -> completed courses
        self._read: dict[TopicPartition, int] = {}  # the next offset to read, per partition
        self._moved = asyncio.Condition()
        self._reader: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None
        )
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, group_id=None
        )
        await self._reader.start()
        await self._offsets.start()
        tps = await topic_partitions(self._bootstrap, completion_entry.TOPIC)
        self._reader.assign(tps)
        await self._reader.seek_to_beginning(*tps)
        self._read = dict.fromkeys(tps, 0)
        self._task = asyncio.create_task(self._follow(), name="completions-index")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for consumer in (self._reader, self._offsets):
            if consumer is not None:
                await consumer.stop()

    async def _follow(self) -> None:
        reader = self._reader
        assert reader is not None
        while True:
            try:
                fetched = await reader.getmany(timeout_ms=FETCH_WAIT_MS)
                for records in fetched.values():
                    for record in records:
                        await self._take(record)
                for tp in self._read:
                    self._read[tp] = await reader.position(tp)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage: the consumer reconnects
                log.warning("the completions index could not read", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
                continue
            async with self._moved:
                self._moved.notify_all()

    async def _take(self, record: Any) -> None:
        try:
            entry = completion_entry.decode(
                await self._codec.decode(completion_entry.SUBJECT, record.value)
            )
        except Exception as exc:  # written by this service only: a bug, not an input
            log.error("an unreadable completion entry", extra={"error": repr(exc)})
            return
        self._done[entry.user_id].add(entry.course_id)

    async def completed(self, user_id: str, course_ids: Collection[str]) -> frozenset[str]:
        """Those of `course_ids` the learner completed, as of every completion acked
        before this call (waits until the index has read that far)."""
        if not course_ids:
            return frozenset()
        offsets = self._offsets
        assert offsets is not None
        tps = list(self._read)
        ends = await until_published(lambda: offsets.end_offsets(tps))
        async with self._moved:
            await self._moved.wait_for(
                lambda: all(self._read.get(tp, 0) >= int(end) for tp, end in ends.items())
            )
        return frozenset(c for c in course_ids if c in self._done.get(user_id, ()))

"""Compacted topics read whole on every worker and followed (decisions 57 and 63).

Every partition is read from its beginning by a consumer without a group, and each
record is handed to the owner's `take`; `caught_up()` returns once every record acked
before the call has been read (one ListOffsets, then a wait), so a reader sees every
write acked before it asked, whichever worker made it. The completions index
(streams/completions.py) and the webhook registry (streams/webhook_registry.py) are
such readers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from course_management.infra.kafka import topic_partitions
from course_management.infra.retrying import until_published

log = logging.getLogger(__name__)

Take = Callable[[ConsumerRecord], Awaitable[None]]


class CompactedReader:
    def __init__(
        self, bootstrap: str, topics: Sequence[str], take: Take, name: str, wait_ms: int
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = tuple(topics)
        self._take = take
        self._name = name
        self._wait_ms = wait_ms  # how long the broker may hold a fetch of a quiet topic
        self._read: dict[TopicPartition, int] = {}  # the next offset to read, per partition
        self._moved = asyncio.Condition()
        self._reader: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def offsets(self) -> AIOKafkaConsumer:
        """A consumer for offset lookups only (ends, times)."""
        assert self._offsets is not None
        return self._offsets

    async def start(self) -> None:
        """Starts reading every partition from its beginning (returns at once)."""
        self._reader = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False
        )
        await self._reader.start()
        await self._offsets.start()
        tps: list[TopicPartition] = []
        for topic in self._topics:
            tps += await topic_partitions(self._bootstrap, topic)
        self._reader.assign(tps)
        await self._reader.seek_to_beginning(*tps)
        self._read = dict.fromkeys(tps, 0)
        self._task = asyncio.create_task(self._follow(), name=self._name)

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
                fetched = await reader.getmany(timeout_ms=self._wait_ms)
                for records in fetched.values():
                    for record in records:
                        await self._take(record)
                for tp in self._read:
                    self._read[tp] = await reader.position(tp)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage: the consumer reconnects
                log.warning(
                    "a compacted topic could not be read",
                    extra={"reader": self._name, "error": repr(exc)},
                )
                await asyncio.sleep(1.0)
                continue
            async with self._moved:
                self._moved.notify_all()

    async def caught_up(self) -> None:
        """Returns once every record acked before the call has been read."""
        offsets = self.offsets
        tps = list(self._read)
        ends = await until_published(lambda: offsets.end_offsets(tps))
        await self.read_through({tp: int(end) for tp, end in ends.items()})

    async def read_through(self, ends: dict[TopicPartition, int]) -> None:
        """Returns once each partition is read up to its offset in `ends`."""
        async with self._moved:
            await self._moved.wait_for(
                lambda: all(self._read.get(tp, 0) >= end for tp, end in ends.items())
            )

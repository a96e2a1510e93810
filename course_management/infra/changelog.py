"""Appending units to a changelog partition, and reading a changelog partition's end.

A unit (tables/units.py) goes to the broker as one explicit record batch
(`create_batch` / `send_batch`), which the log appends whole or not at all: the spike of
decision 49 SIGKILLed producers 40 times in the middle of 400-record units and found no
unit cut, where the same records sent one by one left 34 of 300 units cut. The producer
is this module's own: idempotent, acks from all in-sync replicas, and batches as large
as a unit may be.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from course_management.infra.kafka import stop_quietly
from course_management.topology import UNIT_MAX_BYTES

# (key, value or None for a deletion, headers): one record of a batch (a unit's record,
# tables/units.UnitRecord)
BatchRecord = tuple[bytes, bytes | None, list[tuple[str, bytes]]]


class UnitTooLarge(ValueError):
    """The unit does not fit one record batch (the agent cuts batches long before)."""


class ChangelogWriter:
    """Appends units; started and stopped by the worker."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Start both clients (a failure stops what started: the worker tries again)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            max_batch_size=UNIT_MAX_BYTES,
            max_request_size=UNIT_MAX_BYTES + 64 * 1024,
            request_timeout_ms=30_000,
            client_id="course-management-changelog",
        )
        await self._producer.start()
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=UNIT_MAX_BYTES + 64 * 1024,
            client_id="course-management-changelog",
        )
        await self._reader.start()

    async def stop(self) -> None:
        await stop_quietly(self._producer, self._reader)
        self._producer = self._reader = None

    @property
    def _started(self) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
        if self._producer is None or self._reader is None:
            raise RuntimeError("the changelog writer has not started")
        return self._producer, self._reader

    async def send(
        self, topic: str, partition: int, records: list[BatchRecord]
    ) -> asyncio.Future[Any]:
        """Hand the unit to the producer as one record batch. The future gives the
        metadata of the batch once the broker has it: `.offset` is where its first record
        landed (the caller checks it is where the unit expected)."""
        producer, _ = self._started
        batch = producer.create_batch()
        for key, value, headers in records:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise UnitTooLarge(f"a unit of {len(records)} records is over {UNIT_MAX_BYTES}")
        sent: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
        return sent

    async def end_offset(self, topic: str, partition: int) -> int:
        _, reader = self._started
        tp = TopicPartition(topic, partition)
        return int((await reader.end_offsets([tp]))[tp])

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[ConsumerRecord]:
        """The records of [start, end) that are still in the log (compaction keeps some)."""
        _, reader = self._started
        tp = TopicPartition(topic, partition)
        reader.assign([tp])
        reader.seek(tp, start)
        records: list[ConsumerRecord] = []
        while await reader.position(tp) < end:
            fetched = await reader.getmany(tp, timeout_ms=1000)
            records.extend(r for r in fetched.get(tp, ()) if r.offset < end)
        return records

"""Where every record this worker writes to Kafka leaves: one idempotent producer.

Each verb sends and waits for the broker's acknowledgement (acks from all in-sync
replicas), so an awaited send is durable. Records are (topic, key, subject, value):
the value is encoded with the subject's registered schema (Confluent wire format).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import Headers, new_producer
from course_management.infra.metrics import DEAD_LETTERS, EVENTS_PUBLISHED, REPLIES_DROPPED
from course_management.topology import dlq

log = logging.getLogger(__name__)

Record = tuple[str, str, str, dict[str, Any]]  # (topic, key, subject, value)
RawRecord = tuple[str, str, bytes, Headers]  # (topic, key, encoded value, headers)


REPLY_TOPICS_MAX_AGE_S = 1.0


class Publisher:
    """Sends records; started and stopped by the worker."""

    def __init__(self, bootstrap: str, codec: AvroCodec) -> None:
        self._bootstrap = bootstrap
        self._codec = codec
        self._producer: AIOKafkaProducer | None = None  # made in start (needs the loop)
        self._topics: set[str] = set()  # as of the last metadata request (awaited_replies)
        self._topics_at = 0.0

    async def start(self) -> None:
        self._producer = new_producer(self._bootstrap)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the publisher has not started")
        return self._producer

    async def send(
        self,
        topic: str,
        key: str,
        subject: str,
        value: dict[str, Any],
        headers: Headers | None = None,
    ) -> None:
        """Encode with the registered schema and wait until the broker has the record."""
        encoded = self._codec.encode(subject, value)
        await self.producer.send_and_wait(
            topic, value=encoded, key=key.encode(), headers=list(headers or [])
        )
        EVENTS_PUBLISHED.labels(topic).inc()

    async def send_all(self, records: list[Record]) -> None:
        """Send records in order; wait until the broker has all."""
        await self.send_encoded(
            [
                (topic, key, self._codec.encode(subject, value), [])
                for topic, key, subject, value in records
            ]
        )

    async def send_encoded(self, records: list[RawRecord]) -> None:
        """Send already encoded records in order; wait until the broker has all.

        Each is appended to the producer in order (so one partition keeps their order),
        then all acks are awaited together: one round trip instead of one per record.
        """
        pending = [
            await self.producer.send(topic, value=value, key=key.encode(), headers=headers)
            for topic, key, value, headers in records
        ]
        await asyncio.gather(*pending)
        for topic, *_ in records:
            EVENTS_PUBLISHED.labels(topic).inc()

    async def send_dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None:
        """Keep an unprocessable record, with why, on `<topic>.dlq`; count it."""
        log.warning("record dead-lettered", extra={"topic": topic, "reason": reason})
        await self.producer.send_and_wait(
            dlq(topic),
            value=value,
            key=key,
            headers=[
                ("dlq.reason", f"{code}: {reason}"[:1000].encode()),
                ("dlq.code", code.encode()),
                ("dlq.source_topic", topic.encode()),
            ],
        )
        DEAD_LETTERS.labels(topic, code).inc()

    async def awaited_replies(self, replies: list[Record]) -> list[Record]:
        """The replies whose reply topic still exists: a worker that stopped deleted its
        topic, and a send to a missing topic is retried for ever. The topics are those of
        a metadata request at most REPLY_TOPICS_MAX_AGE_S old (one per batch was a third
        of a create's answer time, issue 13); a topic not in it is asked about at once."""
        wanted = {reply[0] for reply in replies}
        age = time.monotonic() - self._topics_at
        if age > REPLY_TOPICS_MAX_AGE_S or not wanted <= self._topics:
            self._topics = (await self.producer.client.fetch_all_metadata()).topics()
            self._topics_at = time.monotonic()
        existing = self._topics
        kept = [reply for reply in replies if reply[0] in existing]
        if len(kept) < len(replies):
            gone = sorted({reply[0] for reply in replies} - existing)
            REPLIES_DROPPED.inc(len(replies) - len(kept))
            log.info("replies dropped: their workers are gone", extra={"topics": gone})
        return kept

    async def probe(self) -> None:
        """Readiness: the brokers answer a metadata request."""
        await self.producer.client.fetch_all_metadata()

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
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import murmur2

from course_management.infra.avro import AvroCodec
from course_management.infra.dead_letters import dead_letter_record
from course_management.infra.kafka import Headers, new_producer, stop_quietly
from course_management.infra.metrics import DEAD_LETTERS, EVENTS_PUBLISHED, REPLIES_DROPPED

log = logging.getLogger(__name__)

Record = tuple[str, str, str, dict[str, Any]]  # (topic, key, subject, value)
RawRecord = tuple[str, str, bytes, Headers]  # (topic, key, encoded value, headers)
Outgoing = tuple[str, bytes | None, bytes | None, Headers]  # (topic, key, value, headers)


REPLY_SEND_TIMEOUT_S = 3.0
TOPICS_STALE_S = 5.0  # the topics not read for this long: the broker is not answering


class Publisher:
    """Sends records; started and stopped by the worker."""

    def __init__(self, bootstrap: str, codec: AvroCodec) -> None:
        self._bootstrap = bootstrap
        self._codec = codec
        self._producer: AIOKafkaProducer | None = None  # made in start (needs the loop)
        self._replies: AIOKafkaProducer | None = None
        self._topics: set[str] = set()  # as of the last metadata request (send_replies)
        self._partition_counts: dict[str, int] = {}
        self._topics_at = 0.0

    async def start(self) -> None:
        """Start both producers (a failure stops what started: the caller may retry)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._producer = new_producer(self._bootstrap)
        await self._producer.start()
        # Replies have their own producer: the idempotent one keeps one request in flight
        # per broker, so a reply waited behind the batch's outbox (issue 22). A reply lost
        # to a broker failure is a request that times out and is retried (idempotently).
        self._replies = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks=1,
            linger_ms=0,
            client_id="course-management-replies",
        )
        await self._replies.start()

    async def stop(self) -> None:
        await stop_quietly(self._producer, self._replies)
        self._producer = self._replies = None

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

    async def send_all(self, records: list[Record], headers: list[Headers] | None = None) -> None:
        """Send records in order (`headers[i]` with `records[i]`); wait until the broker
        has all."""
        each = headers if headers is not None else [[] for _ in records]
        await self.send_encoded(
            [
                (topic, key, self._codec.encode(subject, value), list(record_headers))
                for (topic, key, subject, value), record_headers in zip(records, each, strict=True)
            ]
        )

    async def send_encoded(self, records: list[RawRecord]) -> None:
        """Send already encoded records (string keys) in order; wait until the broker has
        all (`send_outgoing`)."""
        await self.send_outgoing(
            [(topic, key.encode(), value, headers) for topic, key, value, headers in records]
        )

    async def send_outgoing(self, records: list[Outgoing]) -> None:
        """Send encoded records (bytes keys, as a unit's outbox keeps them); wait until the
        broker has all. They go as explicit record batches, one or more per partition in
        the records' order (so each partition keeps it), partitioned as the producer
        would: one call per batch instead of one per record, where a batch of 2,000
        enrolments spent a fifth of its time (issue 22)."""
        producer = self.producer
        batches: dict[tuple[str, int], list[Any]] = {}
        where: dict[tuple[str, bytes | None], int] = {}
        for topic, key, value, headers in records:
            partition = where.get((topic, key))
            if partition is None:
                partition = where[(topic, key)] = await self._partition(topic, key)
            builders = batches.setdefault((topic, partition), [producer.create_batch()])
            if builders[-1].append(key=key, value=value, timestamp=None, headers=headers) is None:
                builders.append(producer.create_batch())  # full: the next (a first record fits)
                builders[-1].append(key=key, value=value, timestamp=None, headers=headers)
        sent = [
            await producer.send_batch(builder, topic, partition=partition)
            for (topic, partition), builders in batches.items()
            for builder in builders
        ]
        await asyncio.gather(*sent)
        for (topic, _), builders in batches.items():
            EVENTS_PUBLISHED.labels(topic).inc(sum(b.record_count() for b in builders))

    async def _partition(self, topic: str, key: bytes | None) -> int:
        """The partition the producer's default partitioner gives `key` (murmur2, as Kafka's
        Java client: one course's events on one partition)."""
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = len(await self.producer.partitions_for(topic))
        if key is None:
            return 0
        return (murmur2(key) & 0x7FFFFFFF) % count

    async def send_dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None:
        """Keep an unprocessable record, with why, on `<topic>.dlq`; count it."""
        log.warning("record dead-lettered", extra={"topic": topic, "reason": reason})
        dead_topic, _, _, headers = dead_letter_record(topic, key, value, reason, code)
        await self.producer.send_and_wait(dead_topic, value=value, key=key, headers=headers)
        DEAD_LETTERS.labels(topic, code).inc()

    async def send_replies(self, replies: list[Record]) -> None:
        """Send the replies whose reply topic still exists, and wait until the broker has
        them. A worker that stopped deleted its topic, and a send to a missing topic
        waits for ever (retried), so those replies are dropped.

        The topics come from the worker's background reading (every second): one
        metadata request per batch was a third of a create's answer time (issue 13),
        and one a second still came on the answer path (issue 22). A topic deleted since
        is caught by the wait: replies not acked within REPLY_SEND_TIMEOUT_S are checked
        against fresh metadata, and those whose topic is gone are dropped (the others are
        waited for)."""
        sent: list[tuple[str, asyncio.Future[Any]]] = []
        for topic, key, subject, value in await self._to_live_topics(replies):
            encoded = self._codec.encode(subject, value)
            try:  # waits only when the client has no metadata for the topic
                assert self._replies is not None
                sending = self._replies.send(topic, value=encoded, key=key.encode())
                sent.append((topic, await asyncio.wait_for(sending, REPLY_SEND_TIMEOUT_S)))
            except TimeoutError:
                self._drop_reply(topic, None)
        if not sent:
            return
        _, waiting = await asyncio.wait([f for _, f in sent], timeout=REPLY_SEND_TIMEOUT_S)
        existing = await self._topics_now(set(), fresh=True) if waiting else self._topics
        for topic, future in sent:
            if future in waiting and topic not in existing:
                self._drop_reply(topic, future)
            else:
                await future
                EVENTS_PUBLISHED.labels(topic).inc()

    def _drop_reply(self, topic: str, future: asyncio.Future[Any] | None) -> None:
        if future is not None:  # the client fails it in the end: nobody waits for it
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        REPLIES_DROPPED.inc()
        log.info("reply dropped: its worker is gone", extra={"topics": [topic]})

    async def _to_live_topics(self, replies: list[Record]) -> list[Record]:
        wanted = {reply[0] for reply in replies}
        existing = await self._topics_now(wanted)
        kept = [reply for reply in replies if reply[0] in existing]
        for topic, *_ in (reply for reply in replies if reply[0] not in existing):
            self._drop_reply(topic, None)
        return kept

    async def refresh_topics(self) -> None:
        """Read the broker's topics (the worker does it in the background every second,
        off the answer path: issue 22)."""
        try:
            self._topics = (await self.producer.client.fetch_all_metadata()).topics()
        except KafkaError as exc:
            # aiokafka says "Unable to get cluster metadata over all known brokers" with a
            # KafkaError that is not marked retriable: it is an outage, to be waited out
            # like the others (it stopped a worker during a broker restart: found by the
            # chaos run).
            if exc.retriable:
                raise
            raise KafkaConnectionError(str(exc)) from exc
        self._topics_at = time.monotonic()

    async def _topics_now(self, wanted: set[str], *, fresh: bool = False) -> set[str]:
        """The broker's topics as last read in the background; asked for now only when
        `fresh` or when they lack a `wanted` one (a worker started since)."""
        if fresh or not wanted <= self._topics:
            await self.refresh_topics()
        return self._topics

    async def probe(self) -> None:
        """Readiness: the background reading of the topics succeeded lately (no request
        of its own)."""
        age = time.monotonic() - self._topics_at
        if age > TOPICS_STALE_S:
            raise KafkaConnectionError(f"the broker's topics were last read {age:.0f} s ago")

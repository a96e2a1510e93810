"""One webhook subscription's deliveries (CONTRACT §5.4; decision 63): its events read
from its own position with a consumer of its own, in order per course, each POSTed until
the receiver answers 2xx, with growing delays for at least 24 h, before the next.

- **Order**: a course's events are on one partition number of the three event topics;
  the records of a partition are taken merged by record time, a topic's next one only
  once every other topic of the partition has a record waiting or is read to its end.
- **Position**: after each event (delivered, given up, or not the subscription's), the
  position moves past it; it is written to the positions topic at most every second and
  when a delivery fails (the status shows it) or the delivery stops. A crash repeats at
  most what came after the last position written: at least once, never skipped.
- **A failing receiver** holds back only its own subscription: each has its own reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from course_management.domain import delivery_positions
from course_management.domain.delivery_positions import Offsets
from course_management.domain.times import rfc3339
from course_management.domain.webhooks import delivery_body, delivery_headers, retry_delay
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.metrics import WEBHOOK_DELIVERIES, WEBHOOK_FAILING, WEBHOOK_LAG
from course_management.messages.webhook_position import WebhookPosition
from course_management.messages.webhook_subscription import WebhookSubscription
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES, spec

log = logging.getLogger(__name__)

TOPICS = (COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES)
SAVE_EVERY_S = 1.0
FETCH_WAIT_MS = 200
# How long the broker holds a fetch of partitions with nothing new. A fetch is one request
# per broker, in flight one at a time: with aiokafka's 500 ms, a backlog on one topic
# waited behind the long poll of the subscription's quiet topics (bench.webhooks).
BROKER_WAIT_MS = 50
FETCH_BYTES = 4 * 1024 * 1024  # a backlog comes in fewer fetches (so fewer such waits)
BUFFERED = 1_000  # records read ahead per topic partition before it is paused
SETTLE_MS = 250
SEEN_KEPT = 10_000  # event ids delivered lately: a copy published again is not sent twice

Post = Callable[[str, dict[str, str], bytes], Awaitable[str | None]]
Save = Callable[[WebhookPosition], Awaitable[None]]


def _now() -> str:
    return rfc3339(datetime.now(UTC))


@dataclass
class DeliveryState:
    """What the positions topic says of the subscription, kept up to date."""

    subscription_id: str
    position: dict[int, Offsets]
    replay_id: str | None = None
    last_delivery_at: str | None = None
    last_error: str | None = None
    failing_since: str | None = None
    delivered: int = 0
    epoch: int = 0  # this owner's: one more than the last written when it started
    owner: str | None = None  # this worker process
    seen: dict[str, None] = field(default_factory=dict)
    last_ok_s: float | None = None  # the last success (epoch seconds), formatted when saved

    def record(self) -> WebhookPosition:
        if self.last_ok_s is not None:
            self.last_delivery_at = rfc3339(datetime.fromtimestamp(self.last_ok_s, UTC))
            self.last_ok_s = None
        return WebhookPosition(
            subscription_id=self.subscription_id,
            position=delivery_positions.encode(self.position),
            updated_at=_now(),
            replay_id=self.replay_id,
            last_delivery_at=self.last_delivery_at,
            last_error=self.last_error,
            failing_since=self.failing_since,
            delivered=self.delivered,
            epoch=self.epoch,
            owner=self.owner,
        )


class Delivery:
    def __init__(
        self,
        subscription: WebhookSubscription,
        secret: str,
        state: DeliveryState,
        *,
        bootstrap: str,
        codec: AvroCodec,
        post: Post,
        save: Save,
        retry_scale: float = 1.0,
    ) -> None:
        self.subscription = subscription
        self._secret = secret
        self.state = state
        self._bootstrap = bootstrap
        self._codec = codec
        self._post = post
        self._save = save
        self._retry_scale = retry_scale
        self._saved_at = 0.0
        self._dirty = False
        self._types = frozenset(subscription.event_types)
        self._course = subscription.course_id.encode() if subscription.course_id else None
        sid = subscription.id
        self._ok, self._failed, self._given_up, self._undecodable = (
            WEBHOOK_DELIVERIES.labels(sid, result)
            for result in ("ok", "failed", "given_up", "undecodable")
        )
        self._lag, self._failing = WEBHOOK_LAG.labels(sid), WEBHOOK_FAILING.labels(sid)

    async def run(self) -> None:
        """Delivers until cancelled (the subscription deleted, paused, changed, or its
        partition of the subscriptions given to another worker)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=BROKER_WAIT_MS,
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=2 * FETCH_BYTES,  # what one subscription holds fetched, at most
        )
        try:
            await consumer.start()
            await self._deliver_from(consumer)
        finally:
            await consumer.stop()  # also after a failed start: nothing is left open
            self._lag.set(0)

    async def flush(self) -> None:
        """The position written now (a stop, a failure)."""
        await self._save(self.state.record())
        self._saved_at = time.monotonic()
        self._dirty = False

    async def _deliver_from(self, consumer: AIOKafkaConsumer) -> None:
        partitions = sorted(self.state.position)
        tps = [TopicPartition(t, p) for p in partitions for t in TOPICS]
        consumer.assign(tps)
        firsts = await consumer.beginning_offsets(tps)
        for tp in tps:
            at = self.state.position[tp.partition][TOPICS.index(tp.topic)]
            consumer.seek(tp, max(at, firsts[tp]))
        buffers: dict[TopicPartition, deque[ConsumerRecord]] = {tp: deque() for tp in tps}
        while True:
            batch = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=500)
            for tp, records in batch.items():
                buffers[tp].extend(records)
            for tp, buffer in buffers.items():  # read ahead a bounded amount per topic
                if len(buffer) >= BUFFERED and tp not in consumer.paused():
                    consumer.pause(tp)
                elif len(buffer) < BUFFERED and tp in consumer.paused():
                    consumer.resume(tp)
            for partition in partitions:
                await self._take_partition(consumer, partition, buffers)
            await self._save_if_due()
            if not any(buffers.values()):
                self._lag.set(0)

    async def _save_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            await self.flush()

    async def _take_partition(
        self,
        consumer: AIOKafkaConsumer,
        partition: int,
        buffers: dict[TopicPartition, deque[ConsumerRecord]],
    ) -> None:
        """Takes the partition's records in order while it may (see `_settled`), each
        event POSTed once the one before it answered (or was given up). Measured: making
        the next body while a POST is under way gained nothing (the worker is busy on
        its CPU, not waiting: docs/benchmarks.md)."""
        mine = [TopicPartition(t, partition) for t in TOPICS]
        settled: set[TopicPartition] = set()  # empty topics found read to their end
        while True:
            heads = [tp for tp in mine if buffers[tp]]
            if not heads:
                return
            first = min(heads, key=lambda tp: buffers[tp][0].timestamp)
            if len(heads) < len(mine) and not await self._settled(
                consumer, mine, buffers, buffers[first][0].timestamp, settled
            ):
                return  # an empty topic may yet show an earlier record: fetch again
            record = buffers[first].popleft()
            prepared = await self._prepare(record)
            if prepared is None:
                self._moved(record)
            else:
                await self._deliver(*prepared, record)
            await self._save_if_due()

    @staticmethod
    async def _settled(
        consumer: AIOKafkaConsumer,
        mine: list[TopicPartition],
        buffers: dict[TopicPartition, deque[ConsumerRecord]],
        timestamp_ms: int,
        settled: set[TopicPartition],
    ) -> bool:
        """May the head at `timestamp_ms` go before what the empty topics of its partition
        hold? Yes once each is read to its end as last fetched and the head is older than
        SETTLE_MS: a unit's records reach their topics within it, so one of the same moment
        in another topic is visible by then (decision 63)."""
        if time.time() * 1000 - timestamp_ms < SETTLE_MS:
            return False
        for tp in mine:
            if not buffers[tp] and tp not in settled:
                high = consumer.highwater(tp)
                if high is None or await consumer.position(tp) < high:
                    return False
                settled.add(tp)  # nothing is fetched during this drain: it stays so
        return True

    def _moved(self, record: ConsumerRecord) -> None:
        """The position past `record` (delivered, given up, or not the subscription's)."""
        offsets = list(self.state.position[record.partition])
        offsets[TOPICS.index(record.topic)] = record.offset + 1
        self.state.position[record.partition] = tuple(offsets)
        self._dirty = True

    async def _prepare(self, record: ConsumerRecord) -> tuple[str, bytes] | None:
        """(event id, body) of the delivery `record` makes; None: not the subscription's."""
        if self._course is not None and record.key != self._course:
            return None  # another course of the partition: not decoded
        try:
            value = await self._codec.decode(spec(record.topic).subject, record.value)
        except AvroDecodeError:  # not an event (the sinks dead-letter it): passed, counted
            self._undecodable.inc()
            log.warning(
                "webhooks: a record that is not an event was passed over",
                extra={"topic": record.topic, "offset": record.offset},
            )
            return None
        # Any other error (the registry away or refusing) raises: the delivery starts
        # again from its position, passing nothing over.
        event_type = str(value.get("event_type"))
        event_id = str(value.get("event_id"))
        if event_type not in self._types or event_id in self.state.seen:
            return None
        self.state.seen[event_id] = None  # a copy published again is not sent twice
        if len(self.state.seen) > SEEN_KEPT:
            del self.state.seen[next(iter(self.state.seen))]
        self._lag.set(max(0.0, time.time() - record.timestamp / 1000))
        occurred = value.get("occurred_at")
        timestamp = occurred.isoformat() if isinstance(occurred, datetime) else str(occurred)
        return event_id, delivery_body(event_type, timestamp, _json(value))

    async def _deliver(self, event_id: str, body: bytes, record: ConsumerRecord) -> None:
        """POSTs until a 2xx, or gives up after the retries' 24 h; then the position
        moves past the record."""
        first = time.monotonic()
        attempt = 1
        while True:
            headers = delivery_headers(self._secret, event_id, int(time.time()), body)
            error = await self._post(self.subscription.url, headers, body)
            if error is None:
                self._ok.inc()
                state = self.state
                state.last_ok_s = time.time()
                state.delivered += 1
                self._moved(record)
                if state.failing_since is not None:
                    self._failing.set(0)
                    state.failing_since = None
                    await self.flush()  # the status says it recovered
                return
            self._failed.inc()
            self.state.last_error = error
            if self.state.failing_since is None:
                self.state.failing_since = _now()
            self._failing.set(time.monotonic() - first)
            await self.flush()
            delay = retry_delay(attempt, time.monotonic() - first)
            if delay is None:
                self._given_up.inc()
                log.error(
                    "a webhook delivery was given up after its retries",
                    extra={"subscription": self.subscription.id, "event_id": event_id},
                )
                self._moved(record)
                return
            log.info(
                "a webhook delivery failed; retried later",
                extra={"subscription": self.subscription.id, "event_id": event_id,
                       "error": error, "in_s": delay},
            )  # fmt: skip
            await asyncio.sleep(delay * self._retry_scale)
            attempt += 1


def _default(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _json(value: dict[str, object]) -> bytes:
    """The event as JSON, the same fields as its Avro record (as the live streams')."""
    return orjson.dumps(value, default=_default)

"""The webhook subscriptions and their delivery positions, on every worker (decision 63).

Both are compacted topics keyed by the subscription's id; every worker reads both whole
(all partitions, no consumer group) into memory, as the completions index does. The API
answers from here after reading the topics' ends (a subscription created or changed on
another worker is seen), and the dispatcher (streams/webhook_dispatch.py) learns here of
each change to the subscriptions it delivers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from course_management.domain import delivery_positions
from course_management.domain.delivery_positions import Offsets
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import topic_partitions
from course_management.infra.retrying import until_published
from course_management.messages import webhook_position, webhook_subscription
from course_management.messages.webhook_position import WebhookPosition
from course_management.messages.webhook_subscription import ACTIVE, WebhookSubscription
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES

EVENT_TOPICS = (COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES)

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 100


class WebhookRegistry:
    def __init__(self, bootstrap: str, codec: AvroCodec) -> None:
        self._bootstrap = bootstrap
        self._codec = codec
        self.subscriptions: dict[str, WebhookSubscription] = {}
        self.positions: dict[str, WebhookPosition] = {}
        self._read: dict[TopicPartition, int] = {}
        self._moved = asyncio.Condition()
        self._reader: AIOKafkaConsumer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[WebhookSubscription], None]] = []
        self._claims: list[Callable[[WebhookPosition], None]] = []

    def on_change(self, listener: Callable[[WebhookSubscription], None]) -> None:
        """`listener` is called with each subscription record read (after the start)."""
        self._listeners.append(listener)

    def on_position(self, listener: Callable[[WebhookPosition], None]) -> None:
        """`listener` is called with each position record kept (not a fenced owner's)."""
        self._claims.append(listener)

    @property
    def offsets(self) -> AIOKafkaConsumer:
        """A consumer for offset lookups only (ends, times)."""
        assert self._offsets is not None
        return self._offsets

    async def start(self) -> None:
        self._reader = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False)
        self._offsets = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False
        )
        await self._reader.start()
        await self._offsets.start()
        tps = [
            *await topic_partitions(self._bootstrap, webhook_subscription.TOPIC),
            *await topic_partitions(self._bootstrap, webhook_position.TOPIC),
        ]
        self._reader.assign(tps)
        await self._reader.seek_to_beginning(*tps)
        self._read = dict.fromkeys(tps, 0)
        self._task = asyncio.create_task(self._follow(), name="webhook-registry")
        await self.caught_up()

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
                log.warning("the webhook registry could not read", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
                continue
            async with self._moved:
                self._moved.notify_all()

    async def _take(self, record: Any) -> None:
        if record.value is None:
            return
        try:
            if record.topic == webhook_subscription.TOPIC:
                value = await self._codec.decode(webhook_subscription.SUBJECT, record.value)
                subscription = webhook_subscription.decode(value)
                self.subscriptions[subscription.id] = subscription
                for listener in self._listeners:
                    listener(subscription)
            else:
                value = await self._codec.decode(webhook_position.SUBJECT, record.value)
                position = webhook_position.decode(value)
                known = self.positions.get(position.subscription_id)
                if known is not None and delivery_positions.claim(
                    position.epoch, position.owner
                ) < delivery_positions.claim(known.epoch, known.owner):
                    return  # written by an owner since fenced: not its position any more
                self.positions[position.subscription_id] = position
                for claimed in self._claims:
                    claimed(position)
        except Exception as exc:  # written by this service only: a bug, not an input
            log.error("an unreadable webhook record", extra={"error": repr(exc)})

    async def caught_up(self) -> None:
        """Returns once every record acked before the call has been read."""
        offsets = self.offsets
        tps = list(self._read)
        ends = await until_published(lambda: offsets.end_offsets(tps))
        await self.read_through({tp: int(end) for tp, end in ends.items()})

    async def write(self, producer: AIOKafkaProducer, subscription: WebhookSubscription) -> None:
        """Written (acked), then read back here: read your writes."""
        topic = webhook_subscription.TOPIC
        value = self._codec.encode(
            webhook_subscription.SUBJECT, webhook_subscription.encode(subscription)
        )
        sent = await producer.send_and_wait(topic, value=value, key=subscription.id.encode())
        await self.read_through({TopicPartition(topic, sent.partition): sent.offset + 1})

    async def status(self, subscription: WebhookSubscription) -> dict[str, Any]:
        """How its deliveries go, from the positions topic: `status`, `last_delivery_at`,
        `last_error`, `failing_since`, `pending` (records of its partitions past its
        position: one ListOffsets)."""
        saved = self.positions.get(subscription.id)
        position = delivery_positions.decode(
            saved.position if saved is not None else subscription.start
        )
        ends = await ends_of(self.offsets, sorted(position))
        failing = saved is not None and saved.failing_since is not None
        state = "failing" if failing and subscription.state == ACTIVE else subscription.state
        return {
            "status": state,
            "last_delivery_at": saved.last_delivery_at if saved else None,
            "last_error": saved.last_error if saved else None,
            "failing_since": saved.failing_since if saved else None,
            "pending": delivery_positions.pending(position, ends),
        }

    async def read_through(self, ends: dict[TopicPartition, int]) -> None:
        async with self._moved:
            await self._moved.wait_for(
                lambda: all(self._read.get(tp, 0) >= end for tp, end in ends.items())
            )


async def ends_of(consumer: AIOKafkaConsumer, partitions: list[int]) -> dict[int, Offsets]:
    """For each partition, the end offsets of the three event topics."""
    tps = [TopicPartition(t, p) for p in partitions for t in EVENT_TOPICS]
    ends = await consumer.end_offsets(tps)
    return {p: tuple(ends[TopicPartition(t, p)] for t in EVENT_TOPICS) for p in partitions}

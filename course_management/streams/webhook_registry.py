"""The webhook subscriptions and their delivery positions, on every worker (decision 63).

Both are compacted topics keyed by the subscription's id; every worker reads both whole
(all partitions, no consumer group) into memory, as the completions index does. The API
answers from here after reading the topics' ends (a subscription created or changed on
another worker is seen), and the dispatcher (streams/webhook_dispatch.py) learns here of
each change to the subscriptions it delivers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from course_management.domain import delivery_positions
from course_management.domain.delivery_positions import Offsets
from course_management.infra.avro import AvroCodec
from course_management.infra.compacted import CompactedReader
from course_management.messages import webhook_position, webhook_subscription
from course_management.messages.webhook_position import WebhookPosition
from course_management.messages.webhook_subscription import ACTIVE, WebhookSubscription
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES

EVENT_TOPICS = (COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES)

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 100


class WebhookRegistry:
    def __init__(self, bootstrap: str, codec: AvroCodec) -> None:
        self._codec = codec
        self.subscriptions: dict[str, WebhookSubscription] = {}
        self.positions: dict[str, WebhookPosition] = {}
        self._topics = CompactedReader(
            bootstrap,
            [webhook_subscription.TOPIC, webhook_position.TOPIC],
            self._take,
            "webhook-registry",
            FETCH_WAIT_MS,
        )
        self._listeners: list[Callable[[WebhookSubscription], None]] = []
        self._position_listeners: list[Callable[[WebhookPosition], None]] = []

    def on_change(self, listener: Callable[[WebhookSubscription], None]) -> None:
        """`listener` is called with each subscription record read (after the start)."""
        self._listeners.append(listener)

    def on_position(self, listener: Callable[[WebhookPosition], None]) -> None:
        """`listener` is called with each position record kept (not a fenced owner's)."""
        self._position_listeners.append(listener)

    @property
    def offsets(self) -> AIOKafkaConsumer:
        """A consumer for offset lookups only (ends, times)."""
        return self._topics.offsets

    async def start(self) -> None:
        """Reads both topics to their ends, then follows them."""
        await self._topics.start()
        await self.caught_up()

    async def stop(self) -> None:
        await self._topics.stop()

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
                for claimed in self._position_listeners:
                    claimed(position)
        except Exception as exc:  # written by this service only: a bug, not an input
            log.error("an unreadable webhook record", extra={"error": repr(exc)})

    async def caught_up(self) -> None:
        """Returns once every record acked before the call has been read."""
        await self._topics.caught_up()

    async def write(self, producer: AIOKafkaProducer, subscription: WebhookSubscription) -> None:
        """Written (acked), then read back here: read your writes."""
        topic = webhook_subscription.TOPIC
        value = self._codec.encode(
            webhook_subscription.SUBJECT, webhook_subscription.encode(subscription)
        )
        sent = await producer.send_and_wait(topic, value=value, key=subscription.id.encode())
        await self._topics.read_through({TopicPartition(topic, sent.partition): sent.offset + 1})

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


async def ends_of(consumer: AIOKafkaConsumer, partitions: list[int]) -> dict[int, Offsets]:
    """For each partition, the end offsets of the three event topics."""
    tps = [TopicPartition(t, p) for p in partitions for t in EVENT_TOPICS]
    ends = await consumer.end_offsets(tps)
    return {p: tuple(ends[TopicPartition(t, p)] for t in EVENT_TOPICS) for p in partitions}

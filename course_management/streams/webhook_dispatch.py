"""Who delivers which webhook subscription, and the deliveries' lifecycle (decision 63).

The workers share the subscriptions through a consumer group on the subscriptions topic
(`course-management-webhooks`): a worker delivers the subscriptions whose ids fall on the
partitions it is assigned, one `Delivery` task each (streams/webhook_delivery.py). A
rebalance stops the deliveries of the partitions taken away (their positions written)
before another worker starts them from there. A subscription deleted, paused or changed
(a replay) stops its delivery at once; a replay restarts it from the earlier of its
position and the replay's moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.partitioner import murmur2

from course_management.domain import delivery_positions
from course_management.domain.delivery_positions import Offsets
from course_management.domain.times import parse_rfc3339
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import topic_partitions
from course_management.infra.publisher import Publisher
from course_management.infra.sealing import Sealer, SealError
from course_management.messages import webhook_position, webhook_subscription
from course_management.messages.webhook_position import WebhookPosition
from course_management.messages.webhook_subscription import ACTIVE, WebhookSubscription
from course_management.streams.webhook_delivery import TOPICS, Delivery, DeliveryState, Post
from course_management.streams.webhook_registry import WebhookRegistry
from course_management.topology import WEBHOOK_GROUP

log = logging.getLogger(__name__)

Save = Callable[[WebhookPosition], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):
    def __init__(self, dispatcher: WebhookDispatcher) -> None:
        self._dispatcher = dispatcher

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._dispatcher.revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._dispatcher.assigned({tp.partition for tp in assigned})


class WebhookDispatcher:
    def __init__(
        self,
        bootstrap: str,
        codec: AvroCodec,
        registry: WebhookRegistry,
        sealer: Sealer | None,
        post: Post,
        save: Save,
        retry_scale: float = 1.0,
        *,
        owner: str,
        fence_hold_s: float = 60.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._codec = codec
        self._registry = registry
        self._sealer = sealer
        self._post = post
        self._save = save
        self._retry_scale = retry_scale
        self._owner = owner  # this worker process, in the claims it writes
        self._fence_hold_s = fence_hold_s
        self._claims: dict[str, tuple[int, str]] = {}  # the last claim made here, by id
        self._owned: set[int] = set()
        self._count = 0  # partitions of the subscriptions topic
        self._running: dict[str, tuple[asyncio.Task[None], Delivery]] = {}
        # taken over elsewhere: not started here again before the next assignment, or
        # before the hold passes with none (the claim was not a group member's)
        self._fenced: dict[str, object] = {}
        self._group: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._count = len(await topic_partitions(self._bootstrap, webhook_subscription.TOPIC))
        self._registry.on_change(self._changed)
        self._registry.on_position(self._claimed)
        self._group = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=WEBHOOK_GROUP,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        self._group.subscribe([webhook_subscription.TOPIC], listener=_Listener(self))
        await self._group.start()
        self._task = asyncio.create_task(self._stay_in_group(), name="webhook-group")

    async def stop(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.revoked(set(self._owned))
        if self._group is not None:
            with contextlib.suppress(Exception):
                await self._group.stop()

    async def _stay_in_group(self) -> None:
        """Polls (the records are the registry's business) so the group keeps it."""
        assert self._group is not None
        while True:
            try:
                await self._group.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage: the consumer reconnects
                log.warning("webhook group: could not poll", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)

    # -- ownership -----------------------------------------------------------------------

    def _owns(self, subscription_id: str) -> bool:
        partition = (murmur2(subscription_id.encode()) & 0x7FFFFFFF) % max(self._count, 1)
        return partition in self._owned

    async def assigned(self, partitions: set[int]) -> None:
        """Starts the deliveries of `partitions` (aiokafka swallows a listener's errors:
        each subscription is started apart, none stops another)."""
        try:
            await self._registry.caught_up()  # the positions the last owner wrote
        except Exception:
            log.exception("webhook group: positions not read; the subscriptions start later")
            self._spawn(self._assign_later(partitions))
            return
        self._owned |= partitions
        self._fenced.clear()  # a new assignment: this worker's again where it is assigned
        for subscription in list(self._registry.subscriptions.values()):
            try:
                self._reconcile(subscription)
            except Exception:
                log.exception("webhook delivery not started", extra={"id": subscription.id})

    async def _assign_later(self, partitions: set[int]) -> None:
        await asyncio.sleep(1.0)
        await self.assigned(partitions)

    def _spawn(self, work: Awaitable[None]) -> None:
        """A task kept until it ends (and cancelled at stop)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def revoked(self, partitions: set[int]) -> None:
        self._owned -= partitions
        stopping = [sid for sid in self._running if not self._owns(sid)]
        await asyncio.gather(*(self._stop_delivery(sid) for sid in stopping))

    def _changed(self, subscription: WebhookSubscription) -> None:
        running = self._running.get(subscription.id)
        if running is not None and running[1].subscription != subscription:
            self._spawn(self._restart(subscription))
            return
        self._reconcile(subscription)

    async def _restart(self, subscription: WebhookSubscription) -> None:
        await self._stop_delivery(subscription.id)
        self._reconcile(self._registry.subscriptions.get(subscription.id, subscription))

    def _reconcile(self, subscription: WebhookSubscription) -> None:
        wanted = subscription.state == ACTIVE and self._owns(subscription.id)
        wanted = wanted and subscription.id not in self._fenced
        if not wanted or subscription.id in self._running:
            return
        state = self._state_of(subscription)
        self._claims[subscription.id] = delivery_positions.claim(state.epoch, self._owner)
        try:
            if self._sealer is None:
                raise SealError("no WEBHOOK_SEALING_KEY on this worker")
            secret = self._sealer.open(subscription.sealed_secret, subscription.id)
        except SealError as exc:  # the status says so: failing, with the reason
            log.error("webhook not delivered", extra={"id": subscription.id, "error": str(exc)})
            state.last_error = f"not delivered: {exc}"
            state.failing_since = state.failing_since or state.record().updated_at
            self._spawn(self._save(state.record()))
            return
        delivery = Delivery(
            subscription,
            secret,
            state,
            bootstrap=self._bootstrap,
            codec=self._codec,
            post=self._post,
            save=self._save,
            retry_scale=self._retry_scale,
        )
        task = asyncio.get_running_loop().create_task(
            self._deliver(delivery), name=f"webhook-{subscription.id}"
        )
        self._running[subscription.id] = (task, delivery)

    def _state_of(self, subscription: WebhookSubscription) -> DeliveryState:
        saved = self._registry.positions.get(subscription.id)
        start = delivery_positions.decode(subscription.start)
        if saved is None:
            return DeliveryState(subscription.id, start, epoch=1, owner=self._owner)
        position = delivery_positions.decode(saved.position) or start
        return DeliveryState(
            subscription.id,
            position,
            epoch=saved.epoch + 1,
            owner=self._owner,
            replay_id=saved.replay_id,
            last_delivery_at=saved.last_delivery_at,
            last_error=saved.last_error,
            failing_since=saved.failing_since,
            delivered=saved.delivered,
        )

    async def _deliver(self, delivery: Delivery) -> None:
        subscription = delivery.subscription
        try:
            await delivery.flush()  # the claim: its epoch fences any earlier owner
            if subscription.replay_id and subscription.replay_id != delivery.state.replay_id:
                await self._take_replay(delivery)
            await delivery.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery stopped", extra={"subscription": subscription.id})
            with contextlib.suppress(Exception):
                await delivery.flush()  # what was delivered before the error
            await asyncio.sleep(1.0)  # a broker or registry away: started again
            if self._running.get(subscription.id, (None, delivery))[1] is delivery:
                del self._running[subscription.id]
                self._reconcile(self._registry.subscriptions.get(subscription.id, subscription))

    async def _take_replay(self, delivery: Delivery) -> None:
        """The position moved back to the replay's moment (never forward), written before
        anything is delivered: a restart does not replay it twice."""
        subscription = delivery.subscription
        assert subscription.replay_from is not None
        moment = parse_rfc3339(subscription.replay_from)
        at = await offsets_at(self._registry.offsets, sorted(delivery.state.position), moment)
        delivery.state.position = delivery_positions.earliest(delivery.state.position, at)
        delivery.state.seen.clear()
        delivery.state.replay_id = subscription.replay_id
        await delivery.flush()

    def _claimed(self, position: WebhookPosition) -> None:
        """A position that outranks this worker's last claim of the subscription: another
        worker took it over (this one missed a rebalance, or is restarting it). Its
        delivery stops at once, writing nothing (the new owner's position stands), and
        is not started here again before the next assignment, or before the hold passes
        without one (then the claim was not a group member's, and this worker, still
        assigned the subscription, claims it back)."""
        sid = position.subscription_id
        mine = self._claims.get(sid)
        theirs = delivery_positions.claim(position.epoch, position.owner)
        if mine is None or theirs <= mine or sid in self._fenced or not self._owns(sid):
            return  # not outranked, fenced already, or given up in a rebalance
        token = self._fenced[sid] = object()
        log.warning(
            "webhook delivery fenced: another worker delivers it",
            extra={"id": sid, "epoch": position.epoch, "owner": position.owner},
        )
        running = self._running.pop(sid, None)
        if running is not None:
            running[0].cancel()
        self._spawn(self._unfence_later(sid, token))

    async def _unfence_later(self, sid: str, token: object) -> None:
        await asyncio.sleep(self._fence_hold_s)
        if self._fenced.get(sid) is not token:
            return  # an assignment cleared it (or a later fence holds)
        del self._fenced[sid]
        log.warning("webhook fence lapsed: no rebalance came", extra={"id": sid})
        subscription = self._registry.subscriptions.get(sid)
        if subscription is not None:
            self._reconcile(subscription)

    async def _stop_delivery(self, subscription_id: str) -> None:
        running = self._running.pop(subscription_id, None)
        if running is None:
            return
        task, delivery = running
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await delivery.flush()


def position_writer(publisher: Publisher) -> Save:
    """How a delivery's position is written (acked before it returns)."""

    async def save(position: WebhookPosition) -> None:
        await publisher.send(
            webhook_position.TOPIC,
            position.subscription_id,
            webhook_position.SUBJECT,
            webhook_position.encode(position),
        )

    return save


async def offsets_at(
    consumer: AIOKafkaConsumer, partitions: list[int], moment: datetime
) -> dict[int, Offsets]:
    """For each partition, the offsets of the first records at or after `moment` in each
    event topic (the end where there is none)."""
    tps = [TopicPartition(t, p) for p in partitions for t in TOPICS]
    ends = await consumer.end_offsets(tps)
    found = await consumer.offsets_for_times(dict.fromkeys(tps, int(moment.timestamp() * 1000)))
    return {
        p: tuple(
            (found[tp].offset if found.get(tp) else ends[tp])
            for tp in (TopicPartition(t, p) for t in TOPICS)
        )
        for p in partitions
    }

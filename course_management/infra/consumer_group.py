"""A plain Kafka consumer group that commits only after its handler succeeded.

The router and the sinks keep no state in Kafka tables, so they run as aiokafka consumer
groups with manual commits: a batch is handled (the handlers wait out unreachable
stores: they never skip), and only then are its offsets committed. A crash or a
rebalance replays at most the uncommitted batch, which every handler is idempotent for.
(Run as Faust agents, they lost records after a SIGKILL: decisions 18 and 20.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import IllegalStateError, KafkaError
from mode import Service

from course_management.infra.dead_letters import UNPROCESSABLE, DeadLetter
from course_management.infra.kafka import FETCH_MAX_WAIT_MS, RecordsHandler
from course_management.infra.logs import log_context
from course_management.infra.metrics import CONSUMER_LAG
from course_management.infra.retrying import until_published

log = logging.getLogger(__name__)

BATCH = 500
LAG_EVERY_S = 5.0

# Handles a batch of one topic's records (all its partitions, each partition in order).
# A batch that fails this many times in a row (outages are waited out inside the handlers,
# so this is not one) is applied record by record, and the records that still fail are
# dead-lettered: one poison record must not stop the group for ever.
ATTEMPTS_BEFORE_ISOLATING = 3


@dataclass(frozen=True)
class Membership:
    """How a process belongs to its consumer groups. With an `instance_id` it is a static
    member (KIP-345): restarted within `session_timeout_s`, it takes its partitions back
    without a rebalance; stopped, it keeps them until that timeout (decision 43)."""

    instance_id: str | None = None
    session_timeout_s: float = 10.0

    def consumer_options(self) -> dict[str, Any]:
        if self.instance_id is None:
            return {}
        return {
            "group_instance_id": self.instance_id,
            "session_timeout_ms": int(self.session_timeout_s * 1000),
        }


class GroupConsumer(Service):
    """One consumer group reading the topics of `handlers`; each topic's handler must
    succeed on a batch before the group's offsets move past it."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        handlers: Mapping[str, RecordsHandler],
        dead_letter: DeadLetter,
        membership: Membership | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.membership = membership or Membership()
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.handlers = dict(handlers)
        self.topics = list(handlers)
        self.dead_letter = dead_letter
        self._failures = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._committed: dict[Any, int] = {}  # what this member committed, by partition

    async def connect(self) -> None:
        """Join the group (the worker retries this while the broker is away; a Service
        cannot be started twice, so its start only runs the loop)."""
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=BATCH,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            client_id=self.group_id,
            **self.membership.consumer_options(),
        )
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        self._consumer = consumer

    async def on_start(self) -> None:
        await self.connect()
        self.add_future(self._run())

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=BATCH)
                # One call per topic, all its partitions together (each partition's
                # records stay in order): one bulk write and one index refresh per poll.
                by_topic: dict[str, list[ConsumerRecord]] = {}
                for tp, records in batch.items():
                    by_topic.setdefault(tp.topic, []).extend(records)
                if self._failures >= ATTEMPTS_BEFORE_ISOLATING:
                    await self._one_by_one(by_topic)
                else:
                    for topic, records in by_topic.items():
                        with log_context(group=self.group_id, topic=topic):
                            await self.handlers[topic](records)
                if batch:
                    positions = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                    self._failures = 0
                    try:
                        await consumer.commit()
                    except KafkaError:  # a rebalance, the broker away: applied, not committed
                        log.warning(
                            "commit failed; replaying from the committed offsets",
                            extra={"group": self.group_id},
                            exc_info=True,
                        )
                        await self._rewind(consumer)
                        continue
                    self._committed.update(positions)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A failure that retries did not absorb: start again from the committed
                # offsets rather than skip what this batch held.
                self._failures += 1
                log.exception(
                    "batch failed; replaying from the committed offsets",
                    extra={"group": self.group_id, "failures": self._failures},
                )
                await asyncio.sleep(1.0)
                await self._rewind(consumer)

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        """Each partition still assigned back to its committed offset (the handlers are
        idempotent). A partition revoked meanwhile is skipped: its next owner starts from
        the committed offset anyway. Until the broker answers, tried again: going on from
        the current position would skip the batch that was not committed."""
        while not self.should_stop:
            try:
                for tp in list(consumer.assignment()):
                    with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                        committed = await consumer.committed(tp)
                        if committed is not None:
                            consumer.seek(tp, committed)
                        else:
                            await consumer.seek_to_beginning(tp)
                return
            except KafkaError:
                log.warning("rewind failed; trying again", extra={"group": self.group_id})
                await asyncio.sleep(1.0)

    async def _one_by_one(self, by_topic: dict[str, list[ConsumerRecord]]) -> None:
        """Apply each record alone, in order; dead-letter the ones that still fail."""
        for topic, records in by_topic.items():
            for record in records:
                try:
                    with log_context(
                        group=self.group_id,
                        topic=topic,
                        partition=record.partition,
                        offset=record.offset,
                    ):
                        await self.handlers[topic]([record])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception(
                        "record cannot be processed; dead-lettered",
                        extra={"topic": topic, "partition": record.partition},
                    )
                    reason = f"{type(exc).__name__}: {exc}"
                    await until_published(
                        functools.partial(
                            self.dead_letter, topic, record.key, record.value, reason, UNPROCESSABLE
                        )
                    )

    @Service.timer(LAG_EVERY_S)
    async def _report_lag(self) -> None:
        """Lag of each assigned partition: its end offset minus the group's committed
        offset (what no handler has finished yet). Apart from the processing loop, so a
        group stuck on a store that is down shows its lag growing (alert CmsSinkLag)."""
        consumer = self._consumer
        assignment = consumer.assignment() if consumer is not None else set()
        if consumer is None or not assignment:
            return
        try:
            ends = await consumer.end_offsets(list(assignment))
            # One request for the partitions this member has not committed since it got
            # them (the others: what it committed itself), not one per partition.
            if set(self._committed) - assignment:  # a rebalance: others committed meanwhile
                self._committed.clear()
            unknown = [tp for tp in assignment if tp not in self._committed]
            if unknown:
                starts = await consumer.beginning_offsets(unknown)
                for tp in unknown:
                    self._committed[tp] = await consumer.committed(tp) or starts[tp]
            for tp, end in ends.items():
                CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(
                    max(0, end - self._committed[tp])
                )
        except Exception:  # the broker away: the next tick tries again
            log.debug("consumer lag not measured", exc_info=True)

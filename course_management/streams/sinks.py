"""Plain consumer groups (`GroupConsumer`, also the router's) and the sinks that copy topics
into PostgreSQL and the search index.

Sinks keep no state in Kafka tables, so they do not need Faust; they run as aiokafka
consumer groups with manual commits: a batch is written (with retries while the store
is unreachable: the sink waits, it never skips), and only then are its offsets
committed. A crash or a rebalance replays at most the uncommitted batch, which the
version-guarded writers ignore. (Run as Faust agents, they lost records after a
SIGKILL: see docs/decisions/0018.)

- `postgres` group: `course-events` and `enrollment-events` -> the mirror tables, and
  the catalog topic -> `catalog_courses`.
- `search` group (only with SEARCH_URL): the catalog topic -> the Elasticsearch index.

Each group has its own offsets, so an Elasticsearch outage never holds back PostgreSQL.
After each applied catalog batch the Redis catalog pages are invalidated.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from mode import Service

from course_management.infra import catalog_es, catalog_pg
from course_management.infra.avro import AvroDecodeError
from course_management.infra.database import UNAVAILABLE as PG_UNAVAILABLE
from course_management.infra.database import mirror_course_event, mirror_enrollment_events
from course_management.infra.metrics import CATALOG_ENTRIES, CONSUMER_LAG, EVENTS_MIRRORED
from course_management.infra.retrying import until_cached, until_published, until_written
from course_management.streams.catalog import entry_of_value
from course_management.topology import APP_ID, COURSE_CATALOG, COURSE_EVENTS, ENROLLMENT_EVENTS

if TYPE_CHECKING:
    from course_management.runtime import Runtime

log = logging.getLogger(__name__)

POSTGRES_GROUP = f"{APP_ID}-sink-postgres"
SEARCH_GROUP = f"{APP_ID}-sink-search"
BATCH = 500
LAG_EVERY_S = 5.0

Handler = Callable[[str, list[ConsumerRecord]], Awaitable[None]]
# (topic, key, value, reason): keeps a record that cannot be processed on `<topic>.dlq`.
DeadLetter = Callable[[str, bytes | None, bytes | None, str], Awaitable[None]]
# A batch that fails this many times in a row (outages are waited out inside the handlers,
# so this is not one) is applied record by record, and the records that still fail are
# dead-lettered: one poison record must not stop the group for ever.
ATTEMPTS_BEFORE_ISOLATING = 3


class GroupConsumer(Service):
    """One consumer group; `handle(topic, records)` must succeed before offsets move."""

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: list[str],
        handle: Handler,
        dead_letter: DeadLetter,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = topics
        self.handle = handle
        self.dead_letter = dead_letter
        self._failures = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._lag_reported_at = 0.0

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=BATCH,
            client_id=self.group_id,
        )
        await self._consumer.start()
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
                        await self.handle(topic, records)
                if batch:
                    await consumer.commit()
                    self._failures = 0
                await self._report_lag(consumer)
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
                for tp in consumer.assignment():
                    committed = await consumer.committed(tp)
                    if committed is not None:
                        consumer.seek(tp, committed)
                    else:
                        await consumer.seek_to_beginning(tp)

    async def _one_by_one(self, by_topic: dict[str, list[ConsumerRecord]]) -> None:
        """Apply each record alone, in order; dead-letter the ones that still fail."""
        for topic, records in by_topic.items():
            for record in records:
                try:
                    await self.handle(topic, [record])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception(
                        "record cannot be processed; dead-lettered",
                        extra={"topic": topic, "partition": record.partition},
                    )
                    reason = f"{type(exc).__name__}: {exc}"
                    await until_published(
                        functools.partial(self.dead_letter, topic, record.key, record.value, reason)
                    )

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Lag after the last commit: log end minus the position (all of it processed)."""
        now = time.monotonic()
        if now - self._lag_reported_at < LAG_EVERY_S:
            return
        self._lag_reported_at = now
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue
            position = await consumer.position(tp)
            CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(
                max(0, end - position)
            )


def postgres_sink(runtime: Runtime) -> GroupConsumer:
    async def handle(topic: str, records: list[ConsumerRecord]) -> None:
        assert runtime.pool is not None
        pool = runtime.pool
        if topic == COURSE_CATALOG:
            entries = await _entries(runtime, records)
            written = await until_written(
                PG_UNAVAILABLE, lambda: catalog_pg.write_catalog_entries(pool, entries)
            )
            CATALOG_ENTRIES.labels("postgres").inc(written)
            if entries:
                await until_cached(runtime.catalog_cache.invalidate)
            return
        values = await _decoded(runtime, topic, records)
        if topic == ENROLLMENT_EVENTS:  # many per course: one statement per batch
            applied = await until_written(
                PG_UNAVAILABLE, lambda: mirror_enrollment_events(pool, values)
            )
            EVENTS_MIRRORED.labels("enrollment", "applied").inc(applied)
            EVENTS_MIRRORED.labels("enrollment", "skipped").inc(len(values) - applied)
            return
        for value in values:  # course events are few, each with modules and items
            changed = await until_written(
                PG_UNAVAILABLE, functools.partial(mirror_course_event, pool, value)
            )
            EVENTS_MIRRORED.labels("course", "applied" if changed else "skipped").inc()

    return GroupConsumer(
        runtime.settings.kafka_bootstrap_servers,
        POSTGRES_GROUP,
        [COURSE_EVENTS, ENROLLMENT_EVENTS, COURSE_CATALOG],
        handle,
        dead_letters_of(runtime),
    )


def search_sink(runtime: Runtime) -> GroupConsumer:
    async def handle(topic: str, records: list[ConsumerRecord]) -> None:
        assert runtime.search is not None
        es = runtime.search
        entries = await _entries(runtime, records)
        if not entries:
            return
        written = await until_written(
            (*catalog_es.UNAVAILABLE, OSError),
            lambda: catalog_es.write_catalog_entries(es, entries),
        )
        CATALOG_ENTRIES.labels("elasticsearch").inc(written)
        await until_cached(runtime.catalog_cache.invalidate)

    return GroupConsumer(
        runtime.settings.kafka_bootstrap_servers,
        SEARCH_GROUP,
        [COURSE_CATALOG],
        handle,
        dead_letters_of(runtime),
    )


def dead_letters_of(runtime: Runtime) -> DeadLetter:
    """How a consumer group dead-letters a record it cannot process (reason code
    `unprocessable` in `cms_dead_letters_total`)."""

    async def dead_letter(topic: str, key: bytes | None, value: bytes | None, why: str) -> None:
        await runtime.dead_letter(topic, key, value, why, "unprocessable")

    return dead_letter


async def _entries(runtime: Runtime, records: list[ConsumerRecord]) -> list[dict[str, Any]]:
    return [entry_of_value(v) for v in await _decoded(runtime, COURSE_CATALOG, records)]


async def _decoded(
    runtime: Runtime, topic: str, records: list[ConsumerRecord]
) -> list[dict[str, Any]]:
    """The records' values; one that does not decode goes to `<topic>.dlq`."""
    values = []
    for record in records:
        try:
            values.append(await runtime.codec.decode(f"{topic}-value", record.value))
        except AvroDecodeError as exc:
            await runtime.dead_letter(topic, record.key, record.value, str(exc))
    return values

"""Kafka plumbing: the producer's settings, topic provisioning and lookups, reading topics
back to their ends."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from course_management.topology import DLQ_MAX_MESSAGE_BYTES, REQUEST_ID_HEADER, TopicSpec

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

# How long a consumer group's fetch waits on the broker for records (aiokafka's default is
# 500 ms). aiokafka keeps one fetch in flight per broker: a partition whose records were
# just taken waits for the fetch in flight for the others to return, up to this long.
# 100 ms bounds that wait for the sinks and the router; an idle group asks ten times a
# second. (Measured: 20 ms made idle fetches cost the hot reads; Faust's own consumer
# keeps its 1,500 ms: the agent's partitions see steady traffic or none.)
FETCH_MAX_WAIT_MS = 100


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    """Idempotent producer, acks from all in-sync replicas: an acked send is durable."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,  # every send is awaited in order: lingering would only add latency
        max_batch_size=512 * 1024,  # a batch's outbox goes as few record batches
        request_timeout_ms=30_000,
        # Dead letters may exceed 1 MiB (their topics allow it); other topics keep the
        # broker's 1 MiB, enforced by the broker.
        max_request_size=DLQ_MAX_MESSAGE_BYTES + 64 * 1024,
        client_id="course-management",
    )


async def stop_quietly(*clients: Any) -> None:
    """Stop every Kafka client given (None: never made), whatever each one raises: a stop
    after a failed start, or during an outage, must reach them all."""
    for client in clients:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.stop()


async def probe_broker(bootstrap: str) -> None:
    """Raises unless a broker of `bootstrap` answers a metadata request."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], default_partitions: int
) -> list[str]:
    """Create the missing topics with their settings; returns the names created.

    Existing topics get their settings from the spec again (a setting added later, such
    as the dead-letter topics' larger records, reaches them too); a partition count that
    differs from the one asked for is reported, not changed: co-partitioning depends on it.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="course-management-admin")
    await admin.start()
    try:
        existing = await admin.describe_topics([s.name for s in specs])
        counts = {t["topic"]: len(t["partitions"]) for t in existing if t.get("error_code", 0) == 0}
        missing = [s for s in specs if s.name not in counts]
        cluster = await admin.describe_cluster()
        replication = min(3, len(cluster["brokers"]))
        for spec in specs:
            want = spec.partitions or default_partitions
            if spec.name in counts and counts[spec.name] != want:
                log.warning(
                    "topic partition count differs",
                    extra={"topic": spec.name, "has": counts[spec.name], "wants": want},
                )
        await _align_configs(admin, [s for s in specs if s.name in counts and s.config])
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was faster
                await admin.create_topics(
                    [
                        NewTopic(
                            name=s.name,
                            num_partitions=s.partitions or default_partitions,
                            replication_factor=replication,
                            topic_configs=dict(s.config),
                        )
                        for s in missing
                    ]
                )
        return [s.name for s in missing]
    finally:
        await admin.close()


async def _align_configs(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=dict(spec.config))
        for spec in specs
    ]
    for response in await admin.alter_configs(resources):
        for error_code, error_message, _kind, name in response.resources:
            if error_code:
                log.warning(
                    "topic settings not applied",
                    extra={"topic": name, "error_code": error_code, "error": error_message},
                )


async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions, from the brokers; raises if the topic does not exist.
    (A consumer's `partitions_for_topic` only knows topics it already has metadata for.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="course-management-admin")
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code", 0) != 0 or not described["partitions"]:
        raise RuntimeError(f"topic {topic} not found (error {described.get('error_code')})")
    return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])


async def delete_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    except Exception as exc:  # best effort at shutdown
        log.info("reply topic not deleted", extra={"topic": name, "error": str(exc)})
    finally:
        await admin.close()


Offsets = dict[TopicPartition, int]
RecordsHandler = Callable[[list[ConsumerRecord]], Awaitable[None]]


async def read_to_end(
    bootstrap: str,
    topics: Iterable[str],
    handle: RecordsHandler,
    *,
    start: Offsets | None = None,
    on_read: Callable[[int, int], None] | None = None,
) -> tuple[int, Offsets]:
    """Hand every record of `topics` from `start` (default: each partition's beginning) up
    to their ends as of this call to `handle`, a batch at a time (each partition's records
    in order). Returns the records read and the end offsets. `on_read(read, total)`
    follows the progress (a compacted topic yields fewer than `total`)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    read = 0
    try:
        tps = [tp for topic in topics for tp in await topic_partitions(bootstrap, topic)]
        consumer.assign(tps)
        ends: Offsets = await consumer.end_offsets(tps)
        firsts: Offsets = await consumer.beginning_offsets(tps)
        begin = {tp: max(firsts[tp], (start or {}).get(tp, 0)) for tp in tps}
        total = sum(max(0, ends[tp] - begin[tp]) for tp in tps)
        for tp in tps:
            consumer.seek(tp, begin[tp])
        remaining = {tp for tp in tps if begin[tp] < ends[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            records = [
                record
                for tp, fetched in batch.items()
                for record in fetched
                if record.offset < ends[tp]
            ]
            if records:
                await handle(records)
                read += len(records)
                if on_read is not None:
                    on_read(read, total)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return read, ends
    finally:
        await consumer.stop()


def request_id(record: ConsumerRecord) -> str | None:
    """The request id a record carries in its headers (CONTRACT §3), if any."""
    for name, value in record.headers or ():
        if name == REQUEST_ID_HEADER and value:
            return bytes(value).decode("utf-8", "replace")
    return None

"""Reading the catalog topic back: every entry between two points, decoded, in batches.

Both rebuilds use it: the PostgreSQL catalog is rebuilt from the whole (compacted) topic,
and both rebuilds replay what the topic received while they built, after their swap.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from course_management.catalog.feed import entry_of_value
from course_management.config import Settings
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.kafka import topic_partitions
from course_management.topology import COURSE_CATALOG, spec

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]
WriteEntries = Callable[[list[dict[str, Any]]], Awaitable[Any]]


async def replay_catalog(
    settings: Settings,
    codec: AvroCodec,
    write: WriteEntries,
    start: Offsets | None = None,
    on_read: Callable[[int, int], None] | None = None,
) -> tuple[int, Offsets]:
    """Hand every entry from `start` (default: the beginning) up to the topic's end as of
    this call to `write`, a batch at a time. Returns the entries read and the end offsets.
    `on_read(read, total)` follows the progress (total counts records before compaction
    removed some, so it is an upper bound)."""
    topic = spec(COURSE_CATALOG)
    assert topic.schema_file is not None
    await codec.register(topic.subject, topic.schema_file, compatibility=None)  # the reader
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    read = 0
    try:
        tps = await topic_partitions(settings.kafka_bootstrap_servers, COURSE_CATALOG)
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
            entries = []
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    try:
                        entries.append(
                            entry_of_value(await codec.decode(topic.subject, record.value))
                        )
                    except AvroDecodeError:  # the sinks dead-lettered it; so does the replay
                        log.warning(
                            "undecodable catalog record skipped",
                            extra={"partition": tp.partition, "offset": record.offset},
                        )
            if entries:
                await write(entries)
                read += len(entries)
                if on_read is not None:
                    on_read(read, total)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return read, ends
    finally:
        await consumer.stop()

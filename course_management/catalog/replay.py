"""Reading the catalog topic back: every entry between two points, decoded, in batches.

Both rebuilds use it: the PostgreSQL catalog is rebuilt from the whole (compacted) topic,
and both rebuilds replay what the topic received while they built, after their swap.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord

from course_management.config import Settings
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.kafka import Offsets, read_to_end
from course_management.messages import catalog_entry
from course_management.messages.catalog_entry import CatalogEntry
from course_management.topology import COURSE_CATALOG, spec

log = logging.getLogger(__name__)

WriteEntries = Callable[[list[CatalogEntry]], Awaitable[Any]]


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
    entries_read = 0

    async def decoded(records: list[ConsumerRecord]) -> None:
        nonlocal entries_read
        entries = []
        for record in records:
            try:
                entries.append(
                    catalog_entry.decode(await codec.decode(topic.subject, record.value))
                )
            except AvroDecodeError:  # the sinks dead-lettered it; so does the replay
                log.warning(
                    "undecodable catalog record skipped",
                    extra={"partition": record.partition, "offset": record.offset},
                )
        if entries:
            await write(entries)
            entries_read += len(entries)

    _, ends = await read_to_end(
        settings.kafka_bootstrap_servers, [COURSE_CATALOG], decoded, start=start, on_read=on_read
    )
    return entries_read, ends

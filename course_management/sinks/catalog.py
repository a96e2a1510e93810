"""The catalog sinks: the catalog topic -> the PostgreSQL catalog table, and -> the
Elasticsearch index (only with SEARCH_URL).

Each is the catalog handler of its own consumer group (topology.POSTGRES_GROUP,
topology.SEARCH_GROUP), so an Elasticsearch outage never holds back PostgreSQL. Both
stores apply an entry only when it is newer than what they hold (replays change
nothing), and while a store is unreachable its sink waits. After each applied batch the
Redis catalog pages are invalidated, so no page older than the change is served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord

from course_management.infra.avro import AvroCodec
from course_management.infra.dead_letters import DeadLetter, decode_or_dead_letter
from course_management.infra.metrics import CATALOG_ENTRIES
from course_management.infra.retrying import until_cached, until_written
from course_management.messages import catalog_entry
from course_management.messages.catalog_entry import CatalogEntry
from course_management.topology import COURSE_CATALOG, spec

WriteEntries = Callable[[list[CatalogEntry]], Awaitable[int]]


class CatalogSink:
    """Writes a batch of catalog entries into one store, then invalidates the pages."""

    def __init__(
        self,
        store: str,
        write: WriteEntries,
        unavailable: tuple[type[BaseException], ...],
        codec: AvroCodec,
        invalidate_pages: Callable[[], Awaitable[Any]],
        dead_letter: DeadLetter,
    ) -> None:
        self._store = store  # the `store` label of cms_catalog_entries_written_total
        self._write = write
        self._unavailable = unavailable
        self._codec = codec
        self._invalidate_pages = invalidate_pages
        self._dead_letter = dead_letter

    async def __call__(self, records: list[ConsumerRecord]) -> None:
        entries = [
            entry
            for record in records
            if (
                entry := await decode_or_dead_letter(
                    self._codec,
                    spec(COURSE_CATALOG),
                    record.key,
                    record.value,
                    self._dead_letter,
                    parse=catalog_entry.decode,
                )
            )
            is not None
        ]
        if not entries:
            return
        written = await until_written(self._unavailable, lambda: self._write(entries))
        CATALOG_ENTRIES.labels(self._store).inc(written)
        await until_cached(self._invalidate_pages)

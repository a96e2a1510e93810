"""Building and rebuilding the search index without downtime.

`rebuild(settings)` (the `course-management search rebuild` command):
  1. note the PostgreSQL sink's committed offsets on the catalog topic: every entry
     before them is already in the PostgreSQL catalog;
  2. copy the PostgreSQL catalog into a new index (progress bar), alias untouched, so
     searches go on against the old index;
  3. swap the alias to the new index in one atomic step;
  4. replay the catalog topic from the offsets of step 1 to its current end into the new
     index, so whatever the live sink wrote only to the old index meanwhile is there too
     (external versions make repeats harmless); then drop the old index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from elasticsearch import AsyncElasticsearch

from course_management.catalog import elastic as catalog_es
from course_management.catalog.postgres import PgCatalog
from course_management.catalog.replay import replay_catalog
from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.topology import COURSE_CATALOG, POSTGRES_GROUP

log = logging.getLogger(__name__)


async def ensure_search_index(settings: Settings) -> bool:
    """Create the index if there is none; rebuild when its mapping is older. True if built."""
    assert settings.search_url
    es = AsyncElasticsearch(settings.search_url)
    try:
        current = await catalog_es.current_index(es)
        if current is not None and (
            await catalog_es.index_revision(es, current) >= catalog_es.MAPPING_REVISION
        ):
            return False
        if current is None:
            name = catalog_es.new_index_name()
            await catalog_es.create_index(es, name)
            await catalog_es.swap_alias(es, name, None)
            return True
    finally:
        await es.close()
    await rebuild(settings)
    return True


async def rebuild(
    settings: Settings, on_progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Rebuild the index from the PostgreSQL catalog; returns what was done."""
    if not settings.search_url:
        raise ValueError("SEARCH_URL is not set: there is no search index to rebuild")
    es = AsyncElasticsearch(settings.search_url, request_timeout=60)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    codec = AvroCodec(settings.schema_registry_url)
    try:
        start_offsets = await _committed_offsets(settings)
        source = PgCatalog(pool)
        total = await source.count()
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if on_progress is not None:
                on_progress(done, total)

        async def catch_up(index: str) -> None:
            replayed, _ = await replay_catalog(
                settings,
                codec,
                lambda entries: catalog_es.write_catalog_entries(
                    es, entries, index=index, refresh=False
                ),
                start=start_offsets,
            )
            log.info("catalog replayed into the new index", extra={"entries": replayed})

        new, old = await catalog_es.rebuild_index(
            es, source.all_entries(), total, catch_up, progress
        )
        return {"index": new, "previous": old, "documents": done}
    finally:
        await pool.close()
        await es.close()


async def _committed_offsets(settings: Settings) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(POSTGRES_GROUP)
    finally:
        await admin.close()
    return {
        tp: meta.offset
        for tp, meta in offsets.items()
        if tp.topic == COURSE_CATALOG and meta.offset >= 0
    }

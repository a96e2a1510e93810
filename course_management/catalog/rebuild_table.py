"""Rebuilding the PostgreSQL catalog table without downtime, from the catalog topic.

`rebuild_catalog_table(settings)` (`course-management search rebuild --target postgres`,
the default when SEARCH_URL is unset):
  1. create `catalog_courses_rebuild` like `catalog_courses` (columns, the generated
     search vector, indexes);
  2. replay the compacted catalog topic from its beginning to its current end into it
     (progress bar) while searches go on against the live table;
  3. unless the new table has fewer rows than the live one (the topic lost entries: the
     rebuild stops and keeps the live table), in one transaction: drop the live table,
     give the new table and its indexes the live names (searches wait for that lock,
     milliseconds, not for the build);
  4. replay the topic from the ends of step 2 to its new end into the live table, so what
     the live sink wrote only into the dropped table meanwhile is there too (an entry
     older than a row is ignored, so repeats are harmless);
  5. forget the catalog words (typo corrections) no listed course has any more.
The topic is compacted, never deleted, so it holds the newest entry of every course.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import asyncpg

from course_management.catalog.postgres import (
    TABLE,
    PgCatalog,
    prune_catalog_words,
    write_catalog_entries,
)
from course_management.catalog.replay import replay_catalog
from course_management.config import Settings
from course_management.infra.avro import AvroCodec

log = logging.getLogger(__name__)

BUILD = f"{TABLE}_rebuild"
# Another rebuild holds this session lock: refuse rather than drop its table under it.
_LOCK_KEY = 0x63617461  # "cata"

_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = $1"""


class RebuildRunning(RuntimeError):
    pass


class TopicIncomplete(RuntimeError):
    """The topic yields fewer courses than the live table has: every row came from an entry
    the compacted topic keeps, so entries were lost (a deleted or truncated topic).
    The live table is kept."""


def index_shape(indexdef: str) -> str:
    """An index definition without its index and table names, to pair copies with originals."""
    return re.sub(r" INDEX \S+ ON \S+ ", " INDEX ON ", indexdef)


async def rebuild_catalog_table(
    settings: Settings, on_progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Rebuild `catalog_courses` from the catalog topic; returns what was done."""
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=3)
    assert pool is not None
    codec = AvroCodec(settings.schema_registry_url)
    try:
        async with pool.acquire() as lock:
            if not await lock.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
                raise RebuildRunning("another rebuild of the catalog table is running")
            try:
                await pool.execute(
                    f"DROP TABLE IF EXISTS {BUILD};"
                    f"CREATE TABLE {BUILD} (LIKE {TABLE} INCLUDING ALL)"
                )
                read, ends = await replay_catalog(
                    settings,
                    codec,
                    lambda entries: write_catalog_entries(pool, entries, table=BUILD),
                    on_read=on_progress,
                )
                built, live = PgCatalog(pool, BUILD), PgCatalog(pool)
                if await built.count() < await live.count():
                    raise TopicIncomplete(
                        f"the catalog topic yields {await built.count()} courses and "
                        f"{TABLE} has {await live.count()}: the live table is kept"
                    )
                await _swap(pool)
                replayed, _ = await replay_catalog(
                    settings,
                    codec,
                    lambda entries: write_catalog_entries(pool, entries),
                    start=ends,
                )
                pruned = await prune_catalog_words(pool)
            finally:
                await pool.execute(f"DROP TABLE IF EXISTS {BUILD}")  # after a failure
                await lock.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        rows = await PgCatalog(pool).count()
        log.info(
            "catalog table rebuilt",
            extra={"entries": read, "replayed": replayed, "words_pruned": pruned},
        )
        return {
            "table": TABLE,
            "entries": read,
            "replayed_after_swap": replayed,
            "rows": rows,
            "words_pruned": pruned,
        }
    finally:
        await pool.close()


async def _swap(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        # Waiting behind a long transaction would stall every search queued behind us.
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        live = {index_shape(d): name for name, d in await conn.fetch(_INDEXES, TABLE)}
        await conn.execute(f"DROP TABLE {TABLE}")
        await conn.execute(f"ALTER TABLE {BUILD} RENAME TO {TABLE}")
        for name, definition in await conn.fetch(_INDEXES, TABLE):
            target = live.get(index_shape(definition))
            if target is not None and target != name:
                await conn.execute(f'ALTER INDEX "{name}" RENAME TO "{target}"')

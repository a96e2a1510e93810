"""The catalog's search backends through outages and rebuilds, against the real servers:
the Elasticsearch index (the session's worker) and the PostgreSQL catalog table (a second
worker without SEARCH_URL)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from elasticsearch import AsyncElasticsearch

from course_management.catalog.elastic import ALIAS, current_index
from course_management.catalog.replay import replay_catalog
from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from tests.support import (
    ADMIN,
    WorkerProcess,
    eventually_async,
    published_course,
    readiness_says,
)


async def _found(http: aiohttp.ClientSession, marker: str, limit: int = 100) -> set[str]:
    response = await http.get("/api/v1/courses", params={"q": marker, "limit": str(limit)})
    if response.status != 200:
        return set()
    return {c["id"] for c in (await response.json())["items"]}


async def test_the_index_catches_up_after_elasticsearch_was_stopped_and_started(
    http: aiohttp.ClientSession, local_stack: Any, worker: WorkerProcess
) -> None:
    async def while_down(marker: str) -> None:
        # Authoring goes on while the search node is down; the catalog says it is unavailable.
        response = await http.get("/api/v1/courses", params={"q": marker + "x"})
        assert response.status == 503
        assert (await response.json())["type"].endswith("search-unavailable")
        await readiness_says(http, "search", False)

    await _catches_up_after_outage(http, http, local_stack.server("elasticsearch"), while_down)


@pytest.mark.rebalances
async def test_the_postgres_catalog_catches_up_after_postgresql_was_stopped_and_started(
    http: aiohttp.ClientSession,
    local_stack: Any,
    settings: Settings,
    postgres_worker: WorkerProcess,
) -> None:
    async with aiohttp.ClientSession(base_url=postgres_worker.base_url) as catalog:

        async def while_down(marker: str) -> None:
            # Authoring goes on (commands, the agent and Redis need no database); the
            # PostgreSQL catalog says it is unavailable instead of failing with a 500.
            response = await catalog.get("/api/v1/courses", params={"q": marker + "x"})
            assert response.status == 503, await response.text()
            assert (await response.json())["type"].endswith("search-unavailable")
            await readiness_says(catalog, "postgres", False)
            # Other reads of the database say so too, with a hint when to retry.
            mine = await http.get("/api/v1/users/someone/enrollments", headers=ADMIN)
            assert mine.status == 503, await mine.text()
            assert (await mine.json())["type"].endswith("/unavailable")
            assert mine.headers["Retry-After"] == "1"

        during = await _catches_up_after_outage(
            http, catalog, local_stack.server("postgresql"), while_down
        )
    # The course mirror waited for the database too: nothing written meanwhile is lost.
    connection = await asyncpg.connect(settings.database_url)
    try:

        async def mirrored() -> bool:
            ids = [c["id"] for c in during]
            query = "SELECT count(*) FROM courses WHERE id = ANY($1)"
            count = await connection.fetchval(query, ids)
            return bool(count == len(ids))

        await eventually_async(mirrored, deadline_s=30, what="mirrored")
    finally:
        await connection.close()


async def _catches_up_after_outage(
    writer: aiohttp.ClientSession,
    catalog: aiohttp.ClientSession,
    server: Any,
    while_down: Callable[[str], Awaitable[None]],
) -> list[dict[str, Any]]:
    """A course listed; `server` stopped; five courses written and `while_down` checked;
    `server` started again; then the catalog lists all six. Returns the five."""
    marker = "outage" + uuid.uuid4().hex[:8]
    before = await published_course(writer, title=f"Before {marker}")
    # A precondition, not the freshness check (test_catalog_api asserts 2 s): generous.
    await eventually_async(
        lambda: _has(catalog, marker, {before["id"]}), deadline_s=30, what="listed before"
    )
    server.stop()
    try:
        during = [await published_course(writer, title=f"During {marker} {n}") for n in range(5)]
        await while_down(marker)
    finally:
        server.restart()
    want = {before["id"], *(c["id"] for c in during)}
    await eventually_async(lambda: _has(catalog, marker, want), deadline_s=60, what="caught up")
    return during


async def _has(http: aiohttp.ClientSession, marker: str, want: set[str]) -> bool:
    return await _found(http, marker) == want


async def test_rebuild_builds_a_new_index_and_swaps_the_alias_without_downtime(
    http: aiohttp.ClientSession,
    settings: Settings,
    stack_env: dict[str, str],
    worker: WorkerProcess,
) -> None:
    marker, want = await _listed_courses(http, http)
    es = AsyncElasticsearch(settings.search_url)
    try:
        old = await current_index(es)
        result, progress = await _rebuild_under_searches(http, marker, want, stack_env)
        assert "rebuilding index" in progress
        new = await current_index(es)
        assert new == result["index"] and new != old and result["previous"] == old
        assert not await es.indices.exists(index=old)
        assert result["documents"] >= len(want)
        aliases = await es.indices.get_alias(name=ALIAS)
        assert list(aliases.body) == [new]
    finally:
        await es.close()
    await _new_writes_are_listed(http, http, marker, want)


_INDEX_NAMES = """
SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()
AND tablename = 'catalog_courses' ORDER BY indexname"""


@pytest.mark.rebalances
async def test_rebuild_of_the_postgres_catalog_swaps_tables_without_downtime(
    http: aiohttp.ClientSession,
    settings: Settings,
    stack_env: dict[str, str],
    postgres_worker: WorkerProcess,
) -> None:
    connection = await asyncpg.connect(settings.database_url)
    async with aiohttp.ClientSession(base_url=postgres_worker.base_url) as catalog:
        marker, want = await _listed_courses(http, catalog)
        try:
            table = "SELECT 'catalog_courses'::regclass::oid"
            old_table = await connection.fetchval(table)
            old_indexes = [r[0] for r in await connection.fetch(_INDEX_NAMES)]
            stale = "zz" + uuid.uuid4().hex  # a word of no course (as if its course changed)
            await connection.execute("INSERT INTO catalog_words VALUES ($1)", stale)
            result, progress = await _rebuild_under_searches(
                catalog, marker, want, {**stack_env, "SEARCH_URL": ""}
            )
            assert "rebuilding postgres" in progress
            assert result["table"] == "catalog_courses"
            assert result["entries"] >= len(want)
            assert await connection.fetchval(table) != old_table  # a new table
            assert result["rows"] == await connection.fetchval(
                "SELECT count(*) FROM catalog_courses"
            )
            # ... under the live names, with the live indexes under their names.
            assert [r[0] for r in await connection.fetch(_INDEX_NAMES)] == old_indexes
            leftover = "SELECT to_regclass('catalog_courses_rebuild')"
            assert await connection.fetchval(leftover) is None
            # The catalog words lost the stale word and kept the live courses' words.
            words = "SELECT array_agg(word) FROM catalog_words WHERE word = ANY($1)"
            assert set(await connection.fetchval(words, [stale, marker]) or []) == {marker}
            assert result["words_pruned"] >= 1
        finally:
            await connection.close()
        await _new_writes_are_listed(http, catalog, marker, want)


async def _listed_courses(
    writer: aiohttp.ClientSession, catalog: aiohttp.ClientSession
) -> tuple[str, set[str]]:
    """Three courses under a fresh marker word, once the catalog lists them."""
    marker = "rebuild" + uuid.uuid4().hex[:8]
    courses = [await published_course(writer, title=f"Kept {marker} {n}") for n in range(3)]
    want = {c["id"] for c in courses}
    await eventually_async(lambda: _has(catalog, marker, want), deadline_s=30, what="listed")
    return marker, want


async def _rebuild_under_searches(
    catalog: aiohttp.ClientSession, marker: str, want: set[str], env: dict[str, str]
) -> tuple[dict[str, Any], str]:
    """`course-management search rebuild` as a subprocess while the catalog is searched
    for `marker` again and again: every answer complete. Returns its result and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "course_management",
        "search",
        "rebuild",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    finished = asyncio.ensure_future(process.communicate())
    # A new `limit` each time, so the page cache does not answer for the backend.
    answers = 0
    while not finished.done():
        assert await _found(catalog, marker, limit=4 + answers % 96) == want
        answers += 1
    out, err = await finished
    assert process.returncode == 0, err.decode()[-2000:]
    assert answers >= 1
    return json.loads(out.decode().strip().splitlines()[-1]), err.decode()


async def _new_writes_are_listed(
    writer: aiohttp.ClientSession, catalog: aiohttp.ClientSession, marker: str, want: set[str]
) -> None:
    """After a rebuild: the catalog still lists `want`, and the live sink writes to the new
    index or table."""
    assert await _found(catalog, marker) == want
    after = await published_course(writer, title=f"After {marker}")
    await eventually_async(
        lambda: _has(catalog, marker, {*want, after["id"]}), deadline_s=10, what="listed after"
    )


async def test_the_catalog_topic_replays_every_course_it_has_seen(
    http: aiohttp.ClientSession, settings: Settings, worker: WorkerProcess
) -> None:
    """What both rebuilds read back (the PostgreSQL one entirely, both after their swap)."""
    courses = [await published_course(http, title=f"Replayed {n}") for n in range(3)]
    seen: dict[str, dict[str, Any]] = {}

    async def write(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            seen[entry["course_id"]] = entry

    read, ends = await replay_catalog(settings, AvroCodec(settings.schema_registry_url), write)
    assert {c["id"] for c in courses} <= set(seen)
    assert all(seen[c["id"]]["listed"] for c in courses)
    assert read >= len(seen) and sum(ends.values()) >= read
    # From the ends on, only what arrived since is read.
    again, later = await replay_catalog(
        settings, AvroCodec(settings.schema_registry_url), write, start=ends
    )
    assert again <= sum(later.values()) - sum(ends.values())

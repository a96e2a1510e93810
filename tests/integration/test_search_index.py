"""The catalog's search backends through outages and rebuilds, against the real servers:
the Elasticsearch index (the session's worker) and the PostgreSQL catalog table (a second
worker without SEARCH_URL)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
from elasticsearch import AsyncElasticsearch

from course_management.catalog_replay import replay_catalog
from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.infra.catalog_es import ALIAS, current_index
from tests.integration.test_enrollment import ADMIN, published_course
from tests.support import WorkerProcess, eventually_async


async def _found(http: aiohttp.ClientSession, marker: str, limit: int = 100) -> set[str]:
    response = await http.get("/api/v1/courses", params={"q": marker, "limit": str(limit)})
    if response.status != 200:
        return set()
    return {c["id"] for c in (await response.json())["items"]}


async def test_the_index_catches_up_after_elasticsearch_was_stopped_and_started(
    http: aiohttp.ClientSession, local_stack: Any, worker: WorkerProcess
) -> None:
    marker = "outage" + uuid.uuid4().hex[:8]
    before = await published_course(http, title=f"Before {marker}")
    # A precondition, not the freshness check (test_catalog_api asserts 2 s): generous.
    await eventually_async(
        lambda: _has(http, marker, {before["id"]}), deadline_s=30, what="indexed before"
    )
    search = local_stack.server("elasticsearch")
    search.stop()
    try:
        # Authoring goes on while the search node is down; the catalog says it is unavailable.
        during = [await published_course(http, title=f"During {marker} {n}") for n in range(5)]
        response = await http.get("/api/v1/courses", params={"q": marker + "x"})
        assert response.status == 503
        assert (await response.json())["type"].endswith("search-unavailable")
        ready = await http.get("/readyz")
        assert (await ready.json())["checks"]["search"] is False
    finally:
        search.restart()
    want = {before["id"], *(c["id"] for c in during)}
    await eventually_async(lambda: _has(http, marker, want), deadline_s=60, what="caught up")


async def _has(http: aiohttp.ClientSession, marker: str, want: set[str]) -> bool:
    return await _found(http, marker) == want


async def test_rebuild_builds_a_new_index_and_swaps_the_alias_without_downtime(
    http: aiohttp.ClientSession,
    settings: Settings,
    stack_env: dict[str, str],
    worker: WorkerProcess,
) -> None:
    marker = "rebuild" + uuid.uuid4().hex[:8]
    courses = [await published_course(http, title=f"Kept {marker} {n}") for n in range(3)]
    want = {c["id"] for c in courses}
    await eventually_async(lambda: _has(http, marker, want), deadline_s=30, what="indexed")
    es = AsyncElasticsearch(settings.search_url)
    try:
        old = await current_index(es)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "course_management",
            "search",
            "rebuild",
            env={**os.environ, **stack_env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        finished = asyncio.ensure_future(process.communicate())
        # Searches keep answering, complete, while the rebuild runs.
        answers = 0
        while not finished.done():
            assert await _found(http, marker) == want
            answers += 1
        out, err = await finished
        assert process.returncode == 0, err.decode()[-2000:]
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert "rebuilding" in err.decode()  # the progress bar
        new = await current_index(es)
        assert new == result["index"] and new != old and result["previous"] == old
        assert not await es.indices.exists(index=old)
        assert result["documents"] >= len(want)
        aliases = await es.indices.get_alias(name=ALIAS)
        assert list(aliases.body) == [new]
        assert answers >= 1
    finally:
        await es.close()
    assert await _found(http, marker) == want
    # The live sink writes to the new index from now on.
    after = await published_course(http, title=f"After {marker}")
    await eventually_async(
        lambda: _has(http, marker, {*want, after["id"]}), deadline_s=10, what="indexed after"
    )


@pytest.mark.rebalances
async def test_the_postgres_catalog_catches_up_after_postgresql_was_stopped_and_started(
    http: aiohttp.ClientSession,
    local_stack: Any,
    settings: Settings,
    postgres_worker: WorkerProcess,
) -> None:
    marker = "pgoutage" + uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(base_url=postgres_worker.base_url) as catalog:
        before = await published_course(http, title=f"Before {marker}")
        await eventually_async(
            lambda: _has(catalog, marker, {before["id"]}), deadline_s=30, what="listed before"
        )
        database = local_stack.server("postgresql")
        database.stop()
        try:
            # Authoring goes on (commands, the agent and Redis need no database); the
            # PostgreSQL catalog says it is unavailable instead of failing with a 500.
            during = [await published_course(http, title=f"During {marker} {n}") for n in range(5)]
            response = await catalog.get("/api/v1/courses", params={"q": marker + "x"})
            assert response.status == 503, await response.text()
            assert (await response.json())["type"].endswith("search-unavailable")
            ready = await catalog.get("/readyz")
            assert (await ready.json())["checks"]["postgres"] is False
            # Other reads of the database say so too, with a hint when to retry.
            mine = await http.get("/api/v1/users/someone/enrollments", headers=ADMIN)
            assert mine.status == 503, await mine.text()
            assert (await mine.json())["type"].endswith("/unavailable")
            assert mine.headers["Retry-After"] == "1"
        finally:
            database.restart()
        want = {before["id"], *(c["id"] for c in during)}
        await eventually_async(lambda: _has(catalog, marker, want), deadline_s=60, what="caught up")
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
    marker = "pgrebuild" + uuid.uuid4().hex[:8]
    courses = [await published_course(http, title=f"Kept {marker} {n}") for n in range(3)]
    want = {c["id"] for c in courses}
    connection = await asyncpg.connect(settings.database_url)
    async with aiohttp.ClientSession(base_url=postgres_worker.base_url) as catalog:
        await eventually_async(lambda: _has(catalog, marker, want), deadline_s=30, what="listed")
        try:
            table = "SELECT 'catalog_courses'::regclass::oid"
            old_table = await connection.fetchval(table)
            old_indexes = [r[0] for r in await connection.fetch(_INDEX_NAMES)]
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "course_management",
                "search",
                "rebuild",
                env={**os.environ, **stack_env, "SEARCH_URL": ""},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            finished = asyncio.ensure_future(process.communicate())
            # Searches keep answering, complete, while the rebuild runs (a new `limit`
            # each time, so the page cache does not answer for the table).
            answers = 0
            while not finished.done():
                assert await _found(catalog, marker, limit=4 + answers % 96) == want
                answers += 1
            out, err = await finished
            assert process.returncode == 0, err.decode()[-2000:]
            result = json.loads(out.decode().strip().splitlines()[-1])
            assert "rebuilding postgres" in err.decode()  # the progress bar
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
            assert answers >= 1
        finally:
            await connection.close()
        assert await _found(catalog, marker) == want
        # The live sink writes to the new table from now on.
        after = await published_course(http, title=f"After {marker}")
        await eventually_async(
            lambda: _has(catalog, marker, {*want, after["id"]}), deadline_s=10, what="after"
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

"""The search index through outages and rebuilds, against the real Elasticsearch node."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import aiohttp
from elasticsearch import AsyncElasticsearch

from course_management.config import Settings
from course_management.infra.catalog_es import ALIAS, current_index
from tests.integration.test_enrollment import published_course
from tests.support import WorkerProcess, eventually_async


async def _found(http: aiohttp.ClientSession, marker: str) -> set[str]:
    response = await http.get("/api/v1/courses", params={"q": marker, "limit": "100"})
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

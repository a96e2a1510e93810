"""Two workers share the partitions: a course reads the same from either of them.

Runs last (file order): it adds a second worker to the session's consumer group.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from course_management.config import Settings
from course_management.streams.local_state import MARKER
from tests.support import (
    ONE_MODULE,
    WorkerProcess,
    auth,
    eventually,
    eventually_async,
    http_get_json,
    http_get_text,
)

OWNER = auth("instructor-1", "instructor", name="Ada Instructor")
pytestmark = pytest.mark.rebalances


@pytest.fixture(scope="module")
def second_worker(
    stack_env: dict[str, str], worker: WorkerProcess, workdir: Path
) -> Iterator[WorkerProcess]:
    other = WorkerProcess(stack_env, workdir, worker_id="test-worker-2").start()
    try:
        other.wait_ready()
        # Both workers hold some partitions once the group has rebalanced.
        eventually(
            lambda: http_get_json(f"{worker.base_url}/readyz")[0] == 200, 60, "worker 1 ready"
        )
        yield other
    finally:
        other.stop()
        other.keep_log()
        eventually(
            lambda: http_get_json(f"{worker.base_url}/readyz")[0] == 200, 120, "worker 1 alone"
        )


async def test_any_course_reads_the_same_from_either_worker(
    worker: WorkerProcess, second_worker: WorkerProcess, settings: Settings
) -> None:
    async with aiohttp.ClientSession() as client:
        created: list[dict[str, Any]] = []
        for n in range(12):  # enough course ids to land on partitions of both workers
            via = worker if n % 2 else second_worker
            response = await client.post(
                f"{via.base_url}/api/v1/courses/create",
                json={"title": f"Shared {n}", "status": "published", "modules": [ONE_MODULE]},
                headers=OWNER,
            )
            assert response.status == 201, await response.text()
            created.append(await response.json())

        async def read_both() -> list[tuple[int, Any]]:
            results = []
            for course in created:
                for via in (worker, second_worker):
                    r = await client.get(f"{via.base_url}/api/v1/courses/{course['id']}")
                    results.append((r.status, await r.json()))
            return results

        for (status, body), course in zip(
            await read_both(), [c for c in created for _ in (0, 1)], strict=True
        ):
            assert status == 200 and body == course  # read-your-writes on either worker

        # Without the cache: each worker answers from its table or from the mirror.
        conn = await asyncpg.connect(settings.database_url)
        try:
            ids = [c["id"] for c in created]
            await eventually_async(
                lambda: conn.fetchval(
                    "SELECT count(*) = $2 FROM courses WHERE id = ANY($1)", ids, len(ids)
                ),
                what="the mirror rows",
            )
        finally:
            await conn.close()
        redis = aioredis.from_url(settings.redis_url)
        await redis.flushdb()
        await redis.aclose()
        for (status, body), course in zip(
            await read_both(), [c for c in created for _ in (0, 1)], strict=True
        ):
            assert status == 200 and body == course
        # Both paths were really taken: own partitions from the table, others' from the mirror.
        metrics = [
            await (await client.get(f"{w.base_url}/metrics")).text()
            for w in (worker, second_worker)
        ]
        assert any('cms_course_reads_total{source="miss_table"}' in m for m in metrics)
        assert any('cms_course_reads_total{source="miss_mirror"}' in m for m in metrics)


async def test_a_clean_stop_keeps_the_local_tables_and_a_kill_discards_them(
    second_worker: WorkerProcess, workdir: Path
) -> None:
    datadir = workdir / "worker-data" / second_worker.worker_id
    assert second_worker.stop() == 0
    assert (datadir / MARKER).exists()  # SIGTERM: changelogs flushed, stores closed
    second_worker.start().wait_ready()
    assert not (datadir / MARKER).exists()  # consumed: a crash of this run is detected
    assert "local tables discarded" not in second_worker.log_text()
    second_worker.kill()
    assert not (datadir / MARKER).exists()
    second_worker.start().wait_ready()
    metrics = http_get_text(f"{second_worker.base_url}/metrics")
    assert "cms_local_tables_discarded_total 1.0" in metrics
    assert "local tables discarded" in second_worker.log_text()

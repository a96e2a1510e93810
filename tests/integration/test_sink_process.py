"""`course-management sink`: the sinks in a process of their own (issue 13), sharing the
PostgreSQL group's partitions with the worker's in-process sinks. It joins the group, so it
runs with the tests that rebalance."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from course_management.config import Settings
from tests.support import OWNER, WorkerProcess, eventually_async, http_get_text


@pytest.fixture(scope="module")
def sink(
    stack_env: dict[str, str], provisioned: Any, workdir: Path, worker: WorkerProcess
) -> Iterator[WorkerProcess]:
    process = WorkerProcess(stack_env, workdir, worker_id="test-sink-1", command="sink")
    process.start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()
        process.keep_log()


def _mirrored(metrics: str) -> float:
    found = re.findall(
        r'cms_events_mirrored_total\{entity="course",outcome="applied"\} (\S+)', metrics
    )
    return float(found[0]) if found else 0.0


@pytest.mark.rebalances
async def test_a_sink_process_takes_its_share_of_the_mirror(
    sink: WorkerProcess, http: aiohttp.ClientSession, settings: Settings
) -> None:
    """Courses created through the worker reach the mirror through the sink process too:
    once the group has given it partitions, its own metrics count what it mirrored."""
    created: list[str] = []

    async def sink_mirrored_some() -> bool:
        response = await http.post(
            "/api/v1/courses/create", json={"title": f"Sunk {time.monotonic_ns()}"}, headers=OWNER
        )
        assert response.status == 201
        created.append((await response.json())["id"])
        return _mirrored(http_get_text(f"{sink.base_url}/metrics")) > 0

    await eventually_async(sink_mirrored_some, deadline_s=60, what="the sink process mirrored")
    conn = await asyncpg.connect(settings.database_url)
    try:

        async def all_mirrored() -> bool:
            rows = await conn.fetch("SELECT id FROM courses WHERE id = ANY($1::text[])", created)
            return len(rows) == len(created)

        await eventually_async(all_mirrored, what="every course in the mirror")
    finally:
        await conn.close()

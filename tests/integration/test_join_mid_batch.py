"""A worker that joins while the course agent is applying a backlog: the partitions move
between batches, never under one, so the worker that gave them up goes on (no exit 75,
no `Fenced`) and every enrollment is applied once.

CI's chaos run of 4aafb3c (seed 346) found a worker exiting with 75 during a join: the
rebalance did not wait for the batch in flight (`stream_wait_empty` was off), so the
partition's next owner appended to its changelog first (decision 65).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import (
    WorkerProcess,
    eventually,
    eventually_async,
    http_get_json,
    http_get_text,
    published_course,
    read_topic,
    user_enrolled_records,
)

pytestmark = pytest.mark.rebalances
COURSES = 8  # on every partition, so some move to the joiner and some stay
PER_COURSE = 5000  # at most: the feed stops once the group has rebalanced
MIN_PER_COURSE = 50
UNAPPLIED = "a batch could not be applied"  # the agent's line before exit 75


async def test_a_worker_joining_mid_backlog_fences_no_one(
    http: aiohttp.ClientSession,
    settings: Settings,
    stack_env: dict[str, str],
    worker: WorkerProcess,
    workdir: Path,
) -> None:
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    courses = [
        await published_course(http, title=f"Joined mid-backlog {n}") for n in range(COURSES)
    ]
    users = {
        c["id"]: [f"join-{n}-{k:04d}" for k in range(PER_COURSE)] for n, c in enumerate(courses)
    }
    ids = {c["id"].encode() for c in courses}

    def mine(rs: list[Any]) -> list[Any]:
        return [r for r in rs if r.key in ids]

    # Enrollments keep coming, interleaved over the courses, from before the joiner
    # starts until the group has rebalanced: batches are in flight when it does.
    joined = asyncio.Event()

    async def feed() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        k = 0
        try:
            while k < PER_COURSE and not (joined.is_set() and k >= MIN_PER_COURSE):
                for course in courses:
                    [(key, value)] = user_enrolled_records(
                        codec, course["id"], [users[course["id"]][k]], "join"
                    )
                    await producer.send("user-enrolled", value=value, key=key)
                k += 1
                await asyncio.sleep(0.01)  # pacing the load, not synchronisation
            await producer.flush()
        finally:
            await producer.stop()
        return k

    feeding = asyncio.ensure_future(feed())
    await read_topic(settings, "enrollment-events", lambda rs: len(mine(rs)) >= 20)
    assigned = await _rebalances(worker)
    exits_before = worker.log_text().count(UNAPPLIED)  # the session's log: earlier tests'
    joiner = WorkerProcess(stack_env, workdir, worker_id="test-worker-joiner").start()
    try:
        await asyncio.to_thread(joiner.wait_ready)

        async def rebalanced() -> bool:
            return await _rebalances(worker) > assigned

        await eventually_async(rebalanced, deadline_s=60, what="the session worker rebalanced")
        joined.set()
        fed = await feeding
        assert fed < PER_COURSE, "the feed should have outlasted the rebalance"
        users = {c: us[:fed] for c, us in users.items()}

        async def all_seats() -> bool:
            for course in courses:
                body = await (await http.get(f"/api/v1/courses/{course['id']}")).json()
                if int(body["enrollment_count"]) != fed:
                    return False
            return True

        await eventually_async(all_seats, deadline_s=180, what="every seat taken")
        events = await read_topic(
            settings, "enrollment-events", lambda rs: len(mine(rs)) >= COURSES * fed
        )
        created: dict[str, set[str]] = {}
        for record in mine(events):
            event = await codec.decode("enrollment-events-value", record.value)
            created.setdefault(event["user_id"], set()).add(event["event_id"])
        assert sorted(created) == sorted(u for us in users.values() for u in us)
        assert all(len(once) == 1 for once in created.values())  # one event id each
        assert worker.proc is not None and worker.proc.poll() is None, worker.log_tail()
        assert joiner.proc is not None and joiner.proc.poll() is None, joiner.log_tail()
        assert worker.log_text().count(UNAPPLIED) == exits_before
        assert UNAPPLIED not in joiner.log_text()
    finally:
        joiner.stop()
        joiner.keep_log()
        eventually(
            lambda: http_get_json(f"{worker.base_url}/readyz")[0] == 200, 120, "worker alone"
        )


async def _rebalances(worker: WorkerProcess) -> float:
    """How many partition assignments the worker's course agent has received."""
    metrics = await asyncio.to_thread(http_get_text, f"{worker.base_url}/metrics")
    for line in metrics.splitlines():
        if line.startswith("cms_rebalances_total "):
            return float(line.split()[1])
    raise AssertionError("no cms_rebalances_total in the worker's metrics")

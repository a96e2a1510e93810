"""A worker killed with SIGKILL in the middle of 1,000 enrollments loses and doubles nothing.

Runs with the tests that change the consumer group (last): it kills the session's worker
and starts it again on the same data folder, as an orchestrator would.

It found real faults (decisions 12, 17-21); when it fails it prints what the worker saw
(consumer lag, rewinds, what reached the course agent, the mirror's gaps). Marker `crash`
(`make test-crash` runs it alone).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from course_management.config import Settings
from course_management.topology import ENROLLMENT_INPUTS
from tests.support import ADMIN, WorkerProcess, enrollments_under_way, eventually_async, read_topic

pytestmark = [pytest.mark.rebalances, pytest.mark.crash]
N = 1000
RESTORED = "cms_changelog_records_restored_total "


async def test_sigkill_mid_stream_then_restart_holds_each_enrollment_once(
    http: aiohttp.ClientSession, settings: Settings, worker: WorkerProcess
) -> None:
    burst = await enrollments_under_way(http, settings, N, "crash")
    course, codec, users, mine = burst.course, burst.codec, burst.users, burst.mine
    worker.kill()  # SIGKILL: no flush, no commit, no goodbye
    worker.start().wait_ready()
    # The tables it held were restored from their changelogs before Faust started
    # (decision 44); everything below checks that nothing was lost or doubled by it.
    assert _counter(await (await http.get("/metrics")).text(), RESTORED) > 0

    # The table: every accepted enrollment holds a seat, once.
    async def seats() -> int:
        body = await (await http.get(f"/api/v1/courses/{course['id']}")).json()
        return int(body["enrollment_count"])

    try:
        await eventually_async(lambda: _is(seats, N), deadline_s=180, what="1000 seats taken")
    except AssertionError:
        print(f"seats {await seats()} of {N}; " + await _lag_lines(http))
        forwarded = set()
        for r in mine(await read_topic(settings, ENROLLMENT_INPUTS, lambda rs: True)):
            forwarded.add((await codec.decode("user-enrolled-value", r.value))["user_id"])
        print(f"users forwarded to the course agent: {len(forwarded)} of {N}")
        raise

    # The events. At least once: a record re-sent after the crash repeats its event_id, so
    # read until every user has one, however many repeats there are.
    created: dict[str, set[str]] = {}
    want = N
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while loop.time() < deadline:
        events = mine(
            await read_topic(settings, "enrollment-events", lambda rs, w=want: len(mine(rs)) >= w)
        )
        created = {}
        for record in events:
            event = await codec.decode("enrollment-events-value", record.value)
            assert event["event_type"] == "enrollment_created"
            created.setdefault(event["user_id"], set()).add(event["event_id"])
        if len(created) == N:
            break
        want = len(events) + (N - len(created))
    assert sorted(created) == users  # every accepted enrollment has its event...
    assert all(len(ids) == 1 for ids in created.values())  # ...one, by event_id

    # The mirror: one row each, never applied twice.
    conn = await asyncpg.connect(settings.database_url)
    try:
        try:
            await eventually_async(
                lambda: conn.fetchval(
                    "SELECT count(*) = $2 FROM enrollments WHERE course_id = $1", course["id"], N
                ),
                deadline_s=60,
                what="the mirror rows",
            )
        except AssertionError:  # say what the worker saw before failing
            rows = await conn.fetchval(
                "SELECT count(*) FROM enrollments WHERE course_id = $1", course["id"]
            )
            print(f"mirror rows {rows} of {N}; " + await _lag_lines(http))
            mirrored = {
                r["user_id"]
                for r in await conn.fetch(
                    "SELECT user_id FROM enrollments WHERE course_id = $1", course["id"]
                )
            }
            missing = sorted(
                (r.partition, r.offset)
                for r in mine(await read_topic(settings, "enrollment-events", lambda rs: True))
                if (await codec.decode("enrollment-events-value", r.value))["user_id"]
                not in mirrored
            )
            print(f"events of unmirrored users (partition, offset): {missing[:40]}")
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets("course-management")
            finally:
                await admin.close()
            print(
                "group offsets on enrollment-events: "
                + str(
                    {
                        tp.partition: m.offset
                        for tp, m in offsets.items()
                        if tp.topic == "enrollment-events"
                    }
                )
            )
            raise
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM enrollments WHERE course_id = $1 AND version <> 1",
                course["id"],
            )
            == 0
        )
    finally:
        await conn.close()
    for user in (users[0], users[N // 2], users[-1]):
        response = await http.get(
            f"/api/v1/courses/{course['id']}/enrollments/{user}", headers=ADMIN
        )
        assert response.status == 200


async def _lag_lines(http: aiohttp.ClientSession) -> str:
    metrics = await (await http.get("/metrics")).text()
    wanted = (
        "cms_consumer_lag{",
        "cms_events_mirrored_total{",
        "cms_enrollment_changes_total{",
        "cms_partition_rewinds_total{",
    )
    return "worker metrics:\n" + "\n".join(
        line for line in metrics.splitlines() if line.startswith(wanted)
    )


def _counter(metrics: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name)]
    assert values, f"{name} is not exposed"
    return values[0]


async def _is(read: Any, expected: int) -> bool:
    return bool(await read() == expected)

"""Redis unreachable while the course agent must update it: the agent waits for Redis
(logged), reads go on without the cache, and once Redis is back - with its data, as after
a network blip - no course reads an older seat count than its table holds."""

from __future__ import annotations

from typing import Any

import aiohttp

from course_management.config import Settings
from tests.support import (
    OWNER,
    WorkerProcess,
    enroll,
    eventually_async,
    produce,
    published_course,
    read_topic,
    user_enrolled_value,
)


async def test_the_agent_waits_for_redis_and_leaves_no_stale_seat_count(
    http: aiohttp.ClientSession, settings: Settings, local_stack: Any, worker: WorkerProcess
) -> None:
    course = await published_course(http)

    async def seats() -> int:
        body = await (await http.get(f"/api/v1/courses/{course['id']}")).json()
        return int(body["enrollment_count"])

    assert (await enroll(http, course["id"], "blip-a")).status == 201
    assert await seats() == 1  # and Redis holds 1
    retries_before = worker.log_text().count('"logger": "course_management.infra.retrying"')
    redis = local_stack.server("redis")
    redis.stop_keeping_data()
    try:
        value = await user_enrolled_value(settings, user_id="blip-b", course_id=course["id"])
        await produce(settings, "user-enrolled", [(b"blip-b", value)])

        def mine(records: list[Any]) -> list[Any]:
            return [r for r in records if r.key == course["id"].encode()]

        # The agent applied it (its event is out), then found Redis unreachable and waits.
        await read_topic(settings, "enrollment-events", lambda rs: len(mine(rs)) >= 2)
        await eventually_async(
            lambda: _more(worker, retries_before),
            deadline_s=30,
            what="the agent retrying its Redis write",
        )
        # Reads do without the cache meanwhile: the course from its table, the catalog
        # computed (a 500 before).
        read = await http.get(f"/api/v1/courses/{course['id']}")
        assert read.status == 200, await read.text()
        assert (await read.json())["id"] == course["id"]
        listing = await http.get("/api/v1/courses", params={"q": "enrollable"})
        assert listing.status == 200, await listing.text()
        # Writes cannot be rate-limited (nor completed) without Redis: 503 at once.
        write = await http.post(
            "/api/v1/courses/create", json={"title": "during the blip"}, headers=OWNER
        )
        assert write.status == 503 and write.headers["Retry-After"] == "1"
        assert (await write.json())["type"].endswith("/rate-limit-unavailable")
    finally:
        redis.start()
    await eventually_async(lambda: _is(seats, 2), deadline_s=30, what="the count after Redis")

    async def write_taken() -> bool:
        r = await http.post("/api/v1/courses/create", json={"title": "after"}, headers=OWNER)
        return r.status == 201

    await eventually_async(write_taken, deadline_s=30, what="writes taken again")


async def _more(worker: WorkerProcess, before: int) -> bool:
    return worker.log_text().count('"logger": "course_management.infra.retrying"') > before


async def _is(read: Any, expected: int) -> bool:
    try:
        return bool(await read() == expected)
    except (aiohttp.ClientError, KeyError, ValueError):
        return False

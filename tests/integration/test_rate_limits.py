"""Rate limits against real Redis: one budget shared by every worker (two limiters on two
connections stand for two workers), refilled over time; and through a worker of the
service whose budgets are small (it joins the consumer group: it runs with the tests that
rebalance)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from course_management.config import Settings
from course_management.infra.cache import CourseCache, CourseEntry
from course_management.infra.rate_limit import Budget, Charge, RateLimiter
from tests.support import ONE_MODULE, WorkerProcess, auth, eventually_async


async def test_one_budget_holds_across_workers_and_refills(settings: Settings) -> None:
    first, second = aioredis.from_url(settings.redis_url), aioredis.from_url(settings.redis_url)
    try:
        a, b = RateLimiter(first), RateLimiter(second)
        budget = Budget("test-read", 4, 2)  # 4 requests per 2 s
        caller = f"sub:rl-{time.monotonic_ns()}"
        answers = [await (a if n % 2 else b).take(budget, caller) for n in range(6)]
        assert [d.allowed for d in answers] == [True] * 4 + [False] * 2
        assert [d.remaining for d in answers[:4]] == [3, 2, 1, 0]
        assert answers[4].retry_after_s >= 1
        other = await a.take(budget, f"{caller}-other")
        assert other.allowed  # a caller of its own
        # One request comes back every window / quota = 0.5 s.
        await eventually_async(
            lambda: _allowed(b, budget, caller), deadline_s=5, what="the budget refilled"
        )
        # Concurrent requests from both "workers" never exceed the quota.
        fresh = f"{caller}-burst"
        burst = await asyncio.gather(
            *((a if n % 2 else b).take(Budget("test-burst", 10, 60), fresh) for n in range(40))
        )
        assert sum(d.allowed for d in burst) == 10
    finally:
        await first.aclose()
        await second.aclose()


async def _allowed(limiter: RateLimiter, budget: Budget, caller: str) -> bool:
    return (await limiter.take(budget, caller)).allowed


@pytest.fixture(scope="module")
def limited_worker(
    stack_env: dict[str, str], provisioned: Any, workdir: Path, worker: WorkerProcess
) -> Iterator[WorkerProcess]:
    process = WorkerProcess(stack_env, workdir, worker_id="test-worker-rl")
    process.start(
        {
            "RATE_LIMIT_READS_PER_MINUTE": "5",
            "RATE_LIMIT_WRITES_PER_MINUTE": "2",
            "RATE_LIMIT_SERVICE_READS_PER_MINUTE": "8",
            "RATE_LIMIT_SERVICE_WRITES_PER_MINUTE": "3",
        }
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()
        process.keep_log()


@pytest.mark.rebalances
async def test_a_worker_answers_429_with_the_drafts_headers(limited_worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession(base_url=limited_worker.base_url) as http:
        caller = f"rl-student-{time.monotonic_ns()}"
        me = auth(caller, "student")
        statuses = []
        for _ in range(6):
            r = await http.get("/api/v1/courses", headers=me)
            statuses.append(r.status)
        assert statuses == [200] * 5 + [429]
        assert r.content_type == "application/problem+json"
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers["RateLimit-Policy"] == '"read";q=5;w=60'
        assert r.headers["RateLimit"].startswith('"read";r=0;t=')
        # Writes have their own budget; a service has larger ones; health is not limited.
        author = auth(f"rl-instructor-{time.monotonic_ns()}", "instructor")
        writes = [
            (await http.post("/api/v1/courses/create", json={"title": "rl"}, headers=author)).status
            for _ in range(3)
        ]
        assert writes[:2] == [201, 201] and writes[2] == 429
        service_caller = auth(f"rl-service-{time.monotonic_ns()}", "service")
        service = [
            (await http.get("/api/v1/courses", headers=service_caller)).status for _ in range(9)
        ]
        assert service == [200] * 8 + [429]
        health = [(await http.get("/healthz")).status for _ in range(20)]
        assert health == [200] * 20


@pytest.mark.rebalances
async def test_a_hot_read_spends_its_budget_in_the_script_that_reads_it(
    limited_worker: WorkerProcess,
) -> None:
    """GET a course (and an unknown one) spends the read budget like any read: the budget
    is taken in the same Redis script that fetches the course."""
    async with aiohttp.ClientSession(base_url=limited_worker.base_url) as http:
        author = auth(f"rl-author-{time.monotonic_ns()}", "instructor")
        created = await http.post(
            "/api/v1/courses/create",
            json={"title": "hot", "status": "published", "modules": [ONE_MODULE]},
            headers=author,
        )
        assert created.status == 201, await created.text()
        path = f"/api/v1/courses/{(await created.json())['id']}"
        reader = auth(f"rl-reader-{time.monotonic_ns()}", "student")
        answers = []
        for n in range(6):
            target = path if n != 2 else "/api/v1/courses/00000000-0000-4000-8000-000000000000"
            r = await http.get(target, headers=reader)
            answers.append((r.status, r.headers.get("RateLimit", "")))
        assert [s for s, _ in answers] == [200, 200, 404, 200, 200, 429]
        assert [h.split(";")[1] for _, h in answers[:5]] == ["r=4", "r=3", "r=2", "r=1", "r=0"]
        assert r.content_type == "application/problem+json" and int(r.headers["Retry-After"]) >= 1


async def test_the_read_script_is_one_round_trip_for_the_limit_and_the_course(
    settings: Settings,
) -> None:
    """infra/cache.py against real Redis: one command spends the charge and returns the
    entry; over budget it returns nothing and the charge says so."""
    client = aioredis.from_url(settings.redis_url)
    calls: list[Any] = []
    real = client.execute_command

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return await real(*args, **kwargs)

    client.execute_command = counted  # type: ignore[method-assign]
    cache = CourseCache(client)
    course_id = f"rt-{time.monotonic_ns()}"
    course = {"id": course_id, "version": 3, "status": "published", "instructor": {"id": "i1"}}
    try:
        await cache.put_entries(
            [CourseEntry.of({**course, "enrollment_count": 2}, deleted=False, seq=5)], []
        )
        budget = Budget("test-rt", 3, 60)
        await cache.spend_and_get_course(course_id, Charge(budget, course_id))  # loads it
        calls.clear()
        first = Charge(budget, course_id)
        entry = await cache.spend_and_get_course(course_id, first)
        assert calls == ["EVALSHA"]
        assert entry is not None and (entry.version, entry.count, entry.owner) == (3, 2, "i1")
        assert entry.tag == "3.2.0.0"  # the ETag, kept ready
        assert entry.body is not None and json.loads(entry.body)["enrollment_count"] == 2
        assert first.decision is not None and first.decision.allowed
        await cache.spend_and_get_course(course_id, Charge(budget, course_id))
        over = Charge(budget, course_id)
        assert await cache.spend_and_get_course(course_id, over) is None
        assert over.decision is not None and not over.decision.allowed
        # An older entry never replaces a newer one; a reader's fill never replaces any.
        await cache.put_entries(
            [CourseEntry.of({**course, "enrollment_count": 1}, deleted=False, seq=4)], []
        )
        assert (
            await cache.fill_course(
                CourseEntry.of({**course, "enrollment_count": 0}, deleted=False, seq=0)
            )
            is False
        )
        again = await cache.spend_and_get_course(course_id)
        assert again is not None and (again.count, again.seq) == (2, 5)
    finally:
        await client.aclose()


async def test_the_read_script_returns_the_body_each_caller_may_see(settings: Settings) -> None:
    """Issue 24, item 3, against real Redis: the entry keeps the body with content keys
    and the public one without; a read fetches only the one its caller may see (the
    script compares a signed-in caller with the owner), and a course without content
    keys keeps one."""
    client = aioredis.from_url(settings.redis_url)
    cache = CourseCache(client)
    course_id = f"ck-{time.monotonic_ns()}"
    item = {"id": "i-1", "content_key": f"courses/{course_id}/a.mp4"}
    course = {
        "id": course_id,
        "version": 1,
        "status": "published",
        "instructor": {"id": "i1"},
        "enrollment_count": 0,
        "modules": [{"id": "m-1", "items": [item]}],
    }
    try:
        await cache.put_entries([CourseEntry.of(course, deleted=False, seq=1)], [])
        full = await cache.spend_and_get_course(course_id, view="body")
        public = await cache.spend_and_get_course(course_id, view="public")
        own = await cache.spend_and_get_course(course_id, view="owner=i1")
        other = await cache.spend_and_get_course(course_id, view="owner=i2")
        assert full is not None and public is not None and own is not None and other is not None
        assert full.public is None and b"a.mp4" in (full.body_for(True) or b"")
        assert public.body == b"" and b"a.mp4" not in (public.body_for(False) or b"a.mp4")
        # One body fetched either way: the owner's is the full one, another's the public one.
        assert (own.body, own.public) == (full.body, None)
        assert (other.body, other.public) == (b"", public.public)
        assert json.loads(public.body_for(False) or b"")["modules"][0]["items"][0] == {
            "id": "i-1",
            "content_key": None,
        }
        plain_id = f"{course_id}-plain"
        plain = {**course, "id": plain_id, "modules": [{"id": "m-1", "items": []}]}
        await cache.put_entries([CourseEntry.of(plain, deleted=False, seq=1)], [])
        only = await cache.spend_and_get_course(plain_id, view="public")
        assert only is not None and only.public is None and json.loads(only.body_for(False) or b"")
        # An entry of the release before (one body, no tag): the public one is drawn.
        old_id = f"{course_id}-old"
        old = {**course, "id": old_id}
        await client.hset(
            f"cms:ready:course:{old_id}",
            mapping={
                "version": 1, "seq": 1, "count": 0, "deleted": 0, "status": "published",
                "owner": "i1", "body": json.dumps(old),
            },
        )  # fmt: skip
        legacy = await cache.spend_and_get_course(old_id, view="public")
        assert legacy is not None and b"a.mp4" not in (legacy.body_for(False) or b"a.mp4")
        assert legacy.tag == "1.0.0.0"
    finally:
        await client.aclose()

"""Two workers (the session's, whose catalog is Elasticsearch, and one whose catalog is
PostgreSQL full text): a write answered by one is read at once on the other, a
Consistency-Token is honoured by every read on both, and a deleted course looks the same
on both (issue 11, findings 4 and 5, and the tokens of 5)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from course_management.config import Settings
from course_management.domain import consistency
from course_management.domain.consistency import Marks
from tests.support import ADMIN, OWNER, SERVICE, WorkerProcess, auth, published_course

pytestmark = pytest.mark.rebalances


@pytest.fixture(scope="module")
async def pair(
    worker: WorkerProcess, postgres_worker: WorkerProcess
) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    async with (
        aiohttp.ClientSession(base_url=worker.base_url) as first,
        aiohttp.ClientSession(base_url=postgres_worker.base_url) as second,
    ):
        yield first, second


async def _courses(http: aiohttp.ClientSession, n: int, **fields: Any) -> list[dict[str, Any]]:
    """Enough course ids that both workers own some of them."""
    return [await published_course(http, title=f"Two workers {k}", **fields) for k in range(n)]


async def test_a_write_answered_by_one_worker_is_read_at_once_on_the_other(
    pair: tuple[aiohttp.ClientSession, aiohttp.ClientSession], settings: Settings
) -> None:
    """Finding 4, without a token: 16 tries each of enrol-then-read and
    progress-then-read, half in each direction, while the mirror is held back (its
    enrollments table locked against writes, as a slow or busy database would): every
    read is the write or newer. (Before, a worker that does not own the course read the
    mirror: a 404 right after a 201, old progress right after a 200.)"""
    a, b = pair
    courses = await _courses(a, 8)
    wrong: list[str] = []
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE enrollments IN EXCLUSIVE MODE")  # reads go on
            for n, course in enumerate(courses * 2):
                writer, reader = (a, b) if n % 2 else (b, a)
                user = f"fresh-{n}"
                cid = course["id"]
                made = await writer.post(
                    f"/api/v1/courses/{cid}/enroll", headers=auth(user, "student")
                )
                assert made.status == 201, await made.text()
                path = f"/api/v1/courses/{cid}/enrollments/{user}"
                read = await reader.get(path, headers=SERVICE)
                if read.status != 200:
                    wrong.append(f"{n}: {read.status} right after a 201")
                item = course["modules"][0]["items"][0]["id"]
                progressed = await writer.post(
                    f"/api/v1/courses/{cid}/progress",
                    json={"item_id": item, "status": "completed"},
                    headers=auth(user, "student"),
                )
                assert progressed.status == 200
                after = await reader.get(path, headers=SERVICE)
                if after.status != 200 or (await after.json())["progress"]["completed_items"] != 1:
                    wrong.append(f"{n}: old progress right after a 200")
    finally:
        await conn.close()
    assert wrong == []


async def test_the_token_is_honoured_by_both_lists_and_the_catalog_on_both_backends(
    pair: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    a, b = pair
    for n, course in enumerate(await _courses(a, 4)):
        cid = course["id"]
        writer, reader = (a, b) if n % 2 else (b, a)
        user = f"token-{n}"
        made = await writer.post(f"/api/v1/courses/{cid}/enroll", headers=auth(user, "student"))
        assert made.status == 201
        token = {"Consistency-Token": made.headers["Consistency-Token"]}
        for client in (reader, writer):
            mine = await client.get(
                f"/api/v1/users/{user}/enrollments", headers={**SERVICE, **token}
            )
            assert [e["course_id"] for e in (await mine.json())["items"]] == [cid]
            theirs = await client.get(
                f"/api/v1/courses/{cid}/enrollments", headers={**OWNER, **token}
            )
            assert [e["user_id"] for e in (await theirs.json())["items"]] == [user]
            # The catalog: Elasticsearch on the session's worker, PostgreSQL on the other.
            page = await client.get(
                "/api/v1/courses", params={"q": course["title"], "limit": 100}, headers=token
            )
            assert page.status == 200
            counts = {c["id"]: c["enrollment_count"] for c in (await page.json())["items"]}
            assert counts.get(cid) == 1
        word = f"renamed{uuid.uuid4().hex[:8]}"
        renamed = await reader.put(
            f"/api/v1/courses/{cid}/update", json={"title": f"Now {word}"}, headers=OWNER
        )
        assert renamed.status == 200
        token = {"Consistency-Token": renamed.headers["Consistency-Token"]}
        for client in (writer, reader):
            page = await client.get("/api/v1/courses", params={"q": word}, headers=token)
            assert [c["id"] for c in (await page.json())["items"]] == [cid]


async def test_a_token_no_store_reaches_in_time_is_a_503_never_stale_data(
    pair: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    a, b = pair
    course = await published_course(a)
    cid = course["id"]
    future = consistency.encode(
        Marks(
            course=(cid, 10_000),
            catalog=(cid, 10**12),
            enrollment=(cid, "nobody", 7),
        )
    )
    headers = {**ADMIN, "Consistency-Token": future}
    for client in (a, b):
        reads = [
            f"/api/v1/courses/{cid}",
            f"/api/v1/courses/{cid}/enrollments/nobody",
            f"/api/v1/courses/{cid}/enrollments",
            "/api/v1/users/nobody/enrollments",
            "/api/v1/courses",
        ]
        answers = await asyncio.gather(*(client.get(path, headers=headers) for path in reads))
        for path, answer in zip(reads, answers, strict=True):
            assert answer.status == 503, path
            assert answer.headers["Retry-After"]
            assert (await answer.json())["type"].endswith("/not-yet-consistent")


async def test_a_deleted_course_is_gone_on_both_workers(
    pair: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    """Finding 5: the access check Content Delivery makes answers 404 on every worker."""
    a, b = pair
    for n, course in enumerate(await _courses(a, 4)):
        cid = course["id"]
        user = f"deleted-{n}"
        assert (
            await a.post(f"/api/v1/courses/{cid}/enroll", headers=auth(user, "student"))
        ).status == 201
        # Both workers have read it before (the mirror and the caches know the course).
        for client in (a, b):
            assert (
                await client.get(f"/api/v1/courses/{cid}/enrollments/{user}", headers=SERVICE)
            ).status == 200
        deleted = await (b if n % 2 else a).delete(f"/api/v1/courses/{cid}/delete", headers=OWNER)
        assert deleted.status == 204
        token = {"Consistency-Token": deleted.headers["Consistency-Token"]}
        for client in (a, b):
            for path in (
                f"/api/v1/courses/{cid}/enrollments/{user}",
                f"/api/v1/courses/{cid}",
                f"/api/v1/courses/{cid}/modules",
            ):
                assert (await client.get(path, headers=SERVICE)).status == 404, path
            listed = await client.get(
                f"/api/v1/users/{user}/enrollments", headers={**SERVICE, **token}
            )
            assert (await listed.json())["items"] == []

"""A worker killed with SIGKILL in the middle of a 10,000-row bulk enrolment job (issue
26): every row gets exactly one outcome, and the course's counts equal the outcomes.

Runs with the tests that change the consumer group (last), like test_crash_recovery.py:
it kills the session's worker and starts it again on the same data folder.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import pytest

from course_management.config import Settings
from course_management.domain.jobs import CHUNK_ROWS
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import OWNER, WorkerProcess, eventually_async, published_course, read_topic

pytestmark = [pytest.mark.rebalances, pytest.mark.crash]
N = 10_000
CAPACITY, WAITING = 7_000, 2_000


async def test_sigkill_mid_job_applies_each_row_once(
    http: aiohttp.ClientSession, settings: Settings, worker: WorkerProcess
) -> None:
    course = await published_course(
        http, title="A cohort, killed", capacity=CAPACITY, waitlist_capacity=WAITING
    )
    cid = course["id"]
    users = [f"cohort-{n:05d}" for n in range(N)]
    answer = await http.post(
        f"/api/v1/courses/{cid}/enrollments/batch",
        json={"user_ids": users},
        headers={**OWNER, "Idempotency-Key": f"crash-{cid}"},
    )
    assert answer.status == 202, await answer.text()
    location = answer.headers["Location"]

    async def under_way() -> bool:
        job = await (await http.get(location, headers=OWNER)).json()
        return bool(0 < sum(job["counts"].values()) < N)

    await eventually_async(under_way, deadline_s=60, what="the job under way")
    worker.kill()  # SIGKILL: no flush, no commit, no goodbye
    worker.start().wait_ready()

    async def done() -> dict[str, Any] | None:
        job: dict[str, Any] = await (await http.get(location, headers=OWNER)).json()
        return job if job["status"] == "done" else None

    job = await eventually_async(done, deadline_s=240, what="the job done after the restart")
    counts = job["counts"]
    assert sum(counts.values()) == N
    assert counts == {
        "enrolled": CAPACITY,
        "already_enrolled": 0,
        "waitlisted": WAITING,
        "refused": N - CAPACITY - WAITING,
        "invalid": 0,
    }

    # Each row's outcome, on the topic: any copy of a record re-sent after the crash
    # carries the same outcomes; no row has two.
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == cid.encode()]

    async def outcomes(records: list[Any]) -> dict[int, set[str]]:
        seen: dict[int, set[str]] = {}
        for record in mine(records):
            value = await codec.decode("course-management-job-progress-value", record.value)
            for row in value["rows"]:
                seen.setdefault(row["row"], set()).add(f"{row['user_id']}:{row['outcome']}")
        return seen

    want = N // CHUNK_ROWS  # records: one per chunk at least (a re-sent one repeats)
    for _ in range(5):
        records = await read_topic(
            settings, "course-management-job-progress", lambda rs, w=want: len(mine(rs)) >= w
        )
        seen = await outcomes(records)
        if len(seen) == N:
            break
        want = len(mine(records)) + 1
    assert sorted(seen) == list(range(1, N + 1))
    assert all(len(v) == 1 for v in seen.values()), [v for v in seen.values() if len(v) > 1][:5]

    # The course and the mirror say the same.
    shown = await (await http.get(f"/api/v1/courses/{cid}", headers=OWNER)).json()
    assert (shown["enrollment_count"], shown["waitlist_count"]) == (CAPACITY, WAITING)
    conn = await asyncpg.connect(settings.database_url)
    try:

        async def mirrored() -> bool:
            rows = await conn.fetchval(
                "SELECT count(*) FROM enrollment_job_rows r JOIN enrollment_jobs j"
                " ON j.id = r.job_id WHERE j.course_id = $1",
                cid,
            )
            enrolled = await conn.fetchval(
                "SELECT count(*) FROM enrollments WHERE course_id = $1", cid
            )
            return bool(rows == N and enrolled == CAPACITY)

        await eventually_async(mirrored, deadline_s=60, what="the mirror caught up")
        by_outcome = Counter(
            {
                r["outcome"]: r["n"]
                for r in await conn.fetch(
                    "SELECT outcome, count(*) AS n FROM enrollment_job_rows r"
                    " JOIN enrollment_jobs j ON j.id = r.job_id WHERE j.course_id = $1"
                    " GROUP BY outcome",
                    cid,
                )
            }
        )
        assert dict(by_outcome) == {k: v for k, v in counts.items() if v}
        enrolled = await conn.fetchval(
            "SELECT count(*) FROM enrollments WHERE course_id = $1 AND version = 1", cid
        )
        assert enrolled == CAPACITY  # one enrollment_created each, never applied twice
    finally:
        await conn.close()

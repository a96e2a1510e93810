"""`course-management ops check` finds damage done on purpose to the mirror and to the
catalog index, and `ops mirror rebuild` and `search rebuild` repair it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from elasticsearch import AsyncElasticsearch

from course_management.catalog import elastic
from course_management.config import Settings
from tests.support import ADMIN, auth, enroll, eventually, published_course, run_cli


def _differences(stack_env: dict[str, str], ids: set[str]) -> tuple[int, list[dict[str, Any]]]:
    """The check's exit code, and its differences about these courses (other tests' data
    is in the same stores)."""
    done = run_cli(stack_env, "ops", "check")
    assert done.returncode in (0, 1), done.stderr[-2000:]
    found = json.loads(done.stdout)["differences"]
    return done.returncode, [d for d in found if d["id"].split(":")[0] in ids]


async def test_check_finds_the_damage_and_the_rebuilds_repair_it(
    http: aiohttp.ClientSession, settings: Settings, stack_env: dict[str, str]
) -> None:
    damaged, kept = await published_course(http, title="Damaged"), await published_course(http)
    for user in ("check-u1", "check-u2"):
        assert (await enroll(http, damaged["id"], user)).status == 201
    rated = await http.post(
        f"/api/v1/courses/{damaged['id']}/ratings",
        json={"stars": 4},
        headers=auth("check-u2", "student"),
    )
    assert rated.status == 200, await rated.text()
    ids = {damaged["id"], kept["id"]}
    eventually(lambda: not _differences(stack_env, ids)[1], 60, "every store caught up")

    conn = await asyncpg.connect(settings.database_url)
    try:  # the mirror: a course too new, an enrollment gone, another with a wrong status
        await conn.execute("UPDATE courses SET version = version + 5 WHERE id = $1", damaged["id"])
        await conn.execute(
            "DELETE FROM enrollments WHERE course_id = $1 AND user_id = 'check-u1'", damaged["id"]
        )
        await conn.execute(
            "UPDATE enrollments SET status = 'cancelled' WHERE course_id = $1 AND user_id = $2",
            damaged["id"],
            "check-u2",
        )
        # a status change no event made in its history, its rating changed (issue 24:
        # neither was checked)
        await conn.execute(
            "INSERT INTO enrollment_transitions (event_id, course_id, user_id, version,"
            " status, at) VALUES ($1, $2, $3, 99, 'cancelled', now())",
            f"bogus-{damaged['id']}",
            damaged["id"],
            "check-u2",
        )
        await conn.execute(
            "UPDATE course_ratings SET stars = 1 WHERE course_id = $1 AND user_id = $2",
            damaged["id"],
            "check-u2",
        )
    finally:
        await conn.close()
    assert settings.search_url
    es = AsyncElasticsearch(settings.search_url)
    try:  # the index: the kept course's document gone
        await es.delete(index=elastic.ALIAS, id=kept["id"], refresh=True)
    finally:
        await es.close()

    code, found = _differences(stack_env, ids)
    assert code == 1
    assert {(d["store"], d["entity"], d["id"]) for d in found} == {
        ("mirror", "course", damaged["id"]),
        ("mirror", "enrollment", f"{damaged['id']}:check-u1"),
        ("mirror", "enrollment", f"{damaged['id']}:check-u2"),
        ("mirror", "enrollment history", f"{damaged['id']}:check-u2"),
        ("mirror", "rating", f"{damaged['id']}:check-u2"),
        ("catalog", "course", kept["id"]),
    }
    missing = next(d for d in found if d["id"].endswith("check-u1"))
    assert missing["found"] is None and missing["expected"]["status"] == "active"

    rebuilt = run_cli(stack_env, "ops", "mirror", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    report = json.loads(rebuilt.stdout)
    assert report["courses"]["rewritten"] >= 1
    assert report["histories"]["rewritten"] >= 1 and report["ratings"]["rewritten"] >= 1
    reindexed = run_cli(stack_env, "search", "rebuild")
    assert reindexed.returncode == 0, reindexed.stderr[-2000:]
    eventually(lambda: not _differences(stack_env, ids)[1], 60, "no difference left")
    enrollment = await http.get(
        f"/api/v1/courses/{damaged['id']}/enrollments/check-u1", headers=ADMIN
    )
    assert enrollment.status == 200


async def test_check_knows_paths_completions_and_timers(
    http: aiohttp.ClientSession, settings: Settings, stack_env: dict[str, str]
) -> None:
    """Issue 25, item 8: the learning path of a course in the mirror, the completions topic
    and the pending time locks."""
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    course = await published_course(
        http,
        title="Checked path",
        modules=[
            {
                "title": "A",
                "position": 0,
                "items": [{"type": "lesson", "title": "a", "position": 0}],
            },
            {
                "title": "B",
                "position": 1,
                "unlock_at": later,
                "items": [{"type": "lesson", "title": "b", "position": 0}],
            },
        ],
    )
    assert (await enroll(http, course["id"], "path-u1")).status == 201
    first = course["modules"][0]["items"][0]["id"]
    done = await http.post(
        f"/api/v1/courses/{course['id']}/progress",
        json={"item_id": first, "status": "completed"},
        headers=auth("path-u1", "student"),
    )
    assert done.status == 200, await done.text()
    ids = {course["id"]}
    eventually(lambda: not _differences(stack_env, ids)[1], 60, "every store caught up")

    timers = run_cli(stack_env, "ops", "timers", "--course", course["id"])
    assert timers.returncode == 0, timers.stderr[-2000:]
    pending = json.loads(timers.stdout)["pending"]
    assert [(t["module_id"], t["user_id"]) for t in pending] == [
        (course["modules"][1]["id"], "path-u1")
    ]
    assert pending[0]["late_s"] < 0  # an hour ahead

    backfill = run_cli(stack_env, "ops", "completions", "backfill")
    assert backfill.returncode == 0, backfill.stderr[-2000:]
    assert json.loads(backfill.stdout)["published"] == 0  # completed since the topic

    conn = await asyncpg.connect(settings.database_url)
    try:  # the mirror's rules of the course changed behind the service's back
        await conn.execute(
            "UPDATE courses SET snapshot = jsonb_set(snapshot, '{modules,1,unlock_at}', 'null')"
            " WHERE id = $1",
            course["id"],
        )
    finally:
        await conn.close()
    code, found = _differences(stack_env, ids)
    assert code == 1
    assert [(d["store"], d["entity"]) for d in found] == [("mirror", "course")]
    assert found[0]["expected"]["path"] != found[0]["found"]["path"]
    rebuilt = run_cli(stack_env, "ops", "mirror", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    eventually(lambda: not _differences(stack_env, ids)[1], 60, "no difference left")


async def test_check_and_rebuild_cover_the_waitlists_and_the_bulk_jobs(
    http: aiohttp.ClientSession, settings: Settings, stack_env: dict[str, str]
) -> None:
    """Issue 26: `course_waitlist` and the job tables against their topics."""
    course = await published_course(http, capacity=1, waitlist_capacity=2)
    cid = course["id"]
    for user in ("queue-u1", "queue-u2", "queue-u3"):
        assert (await enroll(http, cid, user)).status == 201
    job = await http.post(
        f"/api/v1/courses/{cid}/enrollments/batch",
        json={"user_ids": ["queue-u4", ""]},
        headers=auth("instructor-1", "instructor", name="Ada Instructor"),
    )
    assert job.status == 202, await job.text()
    job_id = (await job.json())["id"]
    ids = {cid, job_id}
    eventually(lambda: not _differences(stack_env, ids)[1], 60, "every store caught up")

    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "DELETE FROM course_waitlist WHERE course_id = $1 AND user_id = 'queue-u2'", cid
        )
        await conn.execute(
            "UPDATE course_waitlist SET left_seq = joined_seq + 1, left_reason = 'cancelled'"
            " WHERE course_id = $1 AND user_id = 'queue-u3'",
            cid,
        )
        await conn.execute("DELETE FROM enrollment_job_rows WHERE job_id = $1", job_id)
    finally:
        await conn.close()
    code, found = _differences(stack_env, ids)
    assert code == 1
    assert {(d["store"], d["entity"], d["id"]) for d in found} == {
        ("mirror", "waitlist", f"{cid}:queue-u2"),
        ("mirror", "waitlist", f"{cid}:queue-u3"),
        ("mirror", "job", job_id),
    }
    rebuilt = run_cli(stack_env, "ops", "mirror", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert json.loads(rebuilt.stdout)["queues"] == {"waitlist rows": 2, "jobs": 1}
    assert not _differences(stack_env, ids)[1]
    waiting = await http.get(f"/api/v1/courses/{cid}/enrollments?status=waitlisted", headers=ADMIN)
    assert [e["user_id"] for e in (await waiting.json())["items"]] == ["queue-u2", "queue-u3"]

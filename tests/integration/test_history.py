"""History and time travel against the real stack (issue 27, CONTRACT §5.3): a course
edited several times shows each change once with its actor and request id; `?version=N`
is the event's snapshot for every N; a learner's history goes through a cancellation
and a re-enrolment, and survives a rebuild of the mirror and a SIGKILL of the worker."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import (
    ADMIN,
    OWNER,
    WorkerProcess,
    auth,
    enroll,
    eventually_async,
    read_topic,
    run_cli,
)

CO = "history-co"
TA = "history-ta"
TWO_ITEMS = {
    "title": "M1",
    "position": 0,
    "items": [
        {"type": "lesson", "title": "Read", "position": 0},
        {"type": "quiz", "title": "Check", "position": 1, "max_score": 10},
    ],
}


async def _course(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    staff = [
        {"user_id": CO, "role": "co_instructor"},
        {"user_id": TA, "role": "teaching_assistant"},
    ]
    body = {
        "title": "Versioned",
        "status": "published",
        "modules": [TWO_ITEMS],
        "staff": staff,
        **fields,
    }
    answer = await http.post(
        "/api/v1/courses/create", json=body, headers={**OWNER, "X-Request-ID": "hist-create"}
    )
    assert answer.status == 201, await answer.text()
    return dict(await answer.json())


async def _update(
    http: aiohttp.ClientSession, cid: str, body: dict[str, Any], request_id: str, who: Any = None
) -> dict[str, Any]:
    answer = await http.put(
        f"/api/v1/courses/{cid}/update",
        json=body,
        headers={**(who or OWNER), "X-Request-ID": request_id},
    )
    assert answer.status == 200, await answer.text()
    return dict(await answer.json())


async def _history(
    http: aiohttp.ClientSession, path: str, headers: Any, limit: int = 2
) -> list[dict[str, Any]]:
    """Every entry, page after page (small pages, so the cursor is exercised)."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        answer = await http.get(path + query, headers=headers)
        assert answer.status == 200, await answer.text()
        page = await answer.json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def test_a_course_edited_several_times_shows_each_change_once(
    http: aiohttp.ClientSession,
) -> None:
    course = await _course(http)
    cid = course["id"]
    module = course["modules"][0]
    lesson, quiz = module["items"]
    await _update(http, cid, {"title": "Versioned, renamed"}, "hist-title")
    moved = {
        "modules": [
            {
                "id": module["id"],
                "title": "Module one",
                "position": 0,
                "items": [
                    {**quiz, "position": 0, "max_score": 20},
                    {**lesson, "position": 1},
                ],
            },
            {
                "title": "Added",
                "position": 1,
                "items": [{"type": "lesson", "title": "New", "position": 0}],
            },
        ]
    }
    after = await _update(http, cid, moved, "hist-structure", auth(CO, "student"))
    added = after["modules"][1]
    removed = {"modules": [{**after["modules"][0], "items": after["modules"][0]["items"][:1]}]}
    await _update(http, cid, removed, "hist-removal")

    path = f"/api/v1/courses/{cid}/history"

    async def all_four() -> list[dict[str, Any]] | None:
        entries = await _history(http, path, OWNER)
        return entries if len(entries) == 4 else None

    entries = await eventually_async(all_four, deadline_s=30, what="four versions in the history")
    assert [e["version"] for e in entries] == [4, 3, 2, 1]  # newest first
    assert [e["request_id"] for e in entries] == [
        "hist-removal",
        "hist-structure",
        "hist-title",
        "hist-create",
    ]
    assert [e["actor_id"] for e in entries] == ["instructor-1", CO, "instructor-1", "instructor-1"]
    assert [e["event_type"] for e in entries] == ["course_updated"] * 3 + ["course_created"]

    def changes(entry: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        return {c["path"]: (c["old"], c["new"]) for c in entry["changes"]}

    assert changes(entries[2]) == {"title": ("Versioned", "Versioned, renamed")}
    m, q, les = module["id"], quiz["id"], lesson["id"]
    structure = changes(entries[1])
    assert structure[f"modules/{m}/title"] == ("M1", "Module one")
    assert structure[f"modules/{m}/items/{q}/max_score"] == (10, 20)
    assert structure[f"modules/{m}/items/{q}/position"] == (1, 0)
    assert structure[f"modules/{m}/items/{les}/position"] == (0, 1)
    assert structure[f"modules/{added['id']}"][0] is None  # added whole
    assert structure[f"modules/{added['id']}"][1]["title"] == "Added"
    assert len(structure) == 5  # nothing derived: no version, updated_at, counts
    removal = changes(entries[0])
    assert removal[f"modules/{m}/items/{les}"][1] is None  # removed whole
    assert removal[f"modules/{added['id']}"][1] is None
    assert set(removal) == {f"modules/{m}/items/{les}", f"modules/{added['id']}"}
    created = changes(entries[3])
    assert created["title"] == (None, "Versioned")
    assert "version" not in created and "enrollment_count" not in created

    # who may read it: the owner, a co-instructor, an admin; not a TA, another instructor,
    # a student; nobody without a token
    for headers in (auth(CO, "student"), ADMIN):
        assert (await http.get(path, headers=headers)).status == 200
    for headers in (auth(TA, "student"), auth("someone-else", "instructor"), auth("s", "student")):
        refused = await http.get(path, headers=headers)
        assert refused.status == 403, await refused.text()
    assert (await http.get(path)).status == 401
    unknown = await http.get(f"/api/v1/courses/{uuid.uuid4()}/history", headers=ADMIN)
    assert unknown.status == 404
    bad = await http.get(path + "?limit=0", headers=OWNER)
    assert bad.status == 422 and "limit" in await bad.text()
    garbage = await http.get(path + "?cursor=not-a-cursor", headers=OWNER)
    assert garbage.status == 422 and "cursor" in await garbage.text()


async def test_every_version_is_its_event_s_snapshot(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await _course(http, title="Snapshots")
    cid = course["id"]
    for n in range(2, 6):
        await _update(http, cid, {"title": f"Snapshots v{n}"}, f"snap-{n}")
    draft = await http.post(
        "/api/v1/courses/create",
        json={"title": "Hidden", "modules": [TWO_ITEMS]},
        headers=OWNER,
    )
    draft_id = (await draft.json())["id"]

    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)

    def five(records: list[Any]) -> bool:
        return sum(r.key == cid.encode() for r in records) >= 5

    snapshots = {}
    for record in await read_topic(settings, "course-events", five):
        if record.key == cid.encode():
            value = await codec.decode("course-events-value", record.value)
            snapshots[value["version"]] = value["course"]
    assert sorted(snapshots) == [1, 2, 3, 4, 5]

    for version, snapshot in snapshots.items():

        async def served(v: int = version) -> bytes | None:
            answer = await http.get(f"/api/v1/courses/{cid}?version={v}", headers=OWNER)
            return await answer.read() if answer.status == 200 else None

        body = await eventually_async(served, deadline_s=30, what=f"version {version}")
        assert json.loads(body) == snapshot  # the event's snapshot (content keys and all)
        modules = await http.get(f"/api/v1/courses/{cid}/modules?version={version}")
        assert modules.status == 200
        assert (await modules.json())["modules"] == [
            {**m, "items": [{**i, "content_key": None} for i in m["items"]]}
            for m in snapshot["modules"]
        ]  # anonymous: as a reader of the course now, without content keys

    base = f"/api/v1/courses/{cid}"
    assert (await http.get(f"{base}?version=6")).status == 404
    for bad in ("0", "-1", "abc", "1.5", "99999999999", "2147483648"):
        answer = await http.get(f"{base}?version={bad}")
        assert answer.status == 400, bad
        problem = await answer.json()
        assert problem["errors"][0]["field"] == "version"
    assert (await http.get(f"/api/v1/courses/{draft_id}?version=1")).status == 404
    assert (await http.get(f"/api/v1/courses/{draft_id}?version=1", headers=OWNER)).status == 200

    # deleted: its versions are its owner's and the admins', nobody else's
    deleted = await http.delete(f"{base}/delete", headers=OWNER)
    assert deleted.status in (200, 204), await deleted.text()
    assert (await http.get(f"{base}?version=2")).status == 404
    assert (await http.get(f"{base}?version=2", headers=auth("s", "student"))).status == 404
    for headers in (OWNER, ADMIN):
        answer = await http.get(f"{base}?version=2", headers=headers)
        assert answer.status == 200 and (await answer.json())["title"] == "Snapshots v2"
    gone = await http.get(f"{base}?version=6", headers=OWNER)  # the deletion itself
    assert gone.status == 404


def _learner_rows(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["event_type"], e["status"], e["item_id"], e["item_status"]) for e in entries]


async def _report(
    http: aiohttp.ClientSession, cid: str, user: str, request_id: str, **body: Any
) -> None:
    answer = await http.post(
        f"/api/v1/courses/{cid}/progress",
        json=body,
        headers={**auth(user, "student"), "X-Request-ID": request_id},
    )
    assert answer.status == 200, await answer.text()


async def _learner_history(
    http: aiohttp.ClientSession, cid: str, user: str, expected: int
) -> list[dict[str, Any]]:
    path = f"/api/v1/courses/{cid}/enrollments/{user}/history"

    async def complete() -> list[dict[str, Any]] | None:
        entries = await _history(http, path, auth(user, "student"), limit=3)
        return entries if len(entries) >= expected else None

    return await eventually_async(complete, deadline_s=30, what=f"{expected} history rows")


async def test_a_learner_s_history_through_cancel_re_enrol_and_a_rebuild(
    http: aiohttp.ClientSession, settings: Settings, stack_env: dict[str, str]
) -> None:
    course = await _course(http, title="A learner's record")
    cid = course["id"]
    lesson, quiz = course["modules"][0]["items"]
    user = f"hist-learner-{uuid.uuid4().hex[:6]}"
    assert (await enroll(http, cid, user)).status == 201
    await _report(http, cid, user, "rep-1", item_id=lesson["id"], status="completed")
    cancel = await http.delete(
        f"/api/v1/courses/{cid}/enrollments/{user}", headers=auth(user, "student")
    )
    assert cancel.status == 204, await cancel.text()
    assert (await enroll(http, cid, user)).status == 201
    await _report(http, cid, user, "rep-2", item_id=quiz["id"], status="completed", score=7)

    entries = await _learner_history(http, cid, user, 6)
    assert _learner_rows(entries) == [
        ("enrollment_created", "active", None, None),
        ("progress_updated", "active", lesson["id"], "completed"),
        ("enrollment_cancelled", "cancelled", None, None),
        ("enrollment_created", "active", None, None),
        ("progress_updated", "active", quiz["id"], "completed"),
        ("course_completed", "completed", quiz["id"], "completed"),
    ]
    assert entries[4]["score"] == 7 and entries[4]["module_id"] == course["modules"][0]["id"]
    assert entries[1]["request_id"] == "rep-1" and entries[4]["request_id"] == "rep-2"
    times = [e["occurred_at"] for e in entries]
    assert times == sorted(times)

    # who may read it: the learner, the owner and staff, admins, services; not another
    # student; a learner never enrolled is a 404
    path = f"/api/v1/courses/{cid}/enrollments/{user}/history"
    for headers in (OWNER, auth(TA, "student"), ADMIN, auth("svc", "service")):
        assert (await http.get(path, headers=headers)).status == 200
    assert (await http.get(path, headers=auth("other-student", "student"))).status == 403
    assert (await http.get(path, headers=auth("someone-else", "instructor"))).status == 403
    never = f"/api/v1/courses/{cid}/enrollments/never-{user}/history"
    assert (await http.get(never, headers=ADMIN)).status == 404

    # the mirror loses the learner's rows; `ops mirror rebuild` writes them again
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "DELETE FROM learner_history WHERE course_id = $1 AND user_id = $2 AND"
            " event_type = 'enrollment_cancelled'",
            cid,
            user,
        )
        await conn.execute("DELETE FROM course_versions WHERE course_id = $1 AND version = 1", cid)
    finally:
        await conn.close()
    damaged = await _history(http, path, ADMIN)
    assert len(damaged) == 5
    rebuilt = run_cli(stack_env, "ops", "mirror", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    history = json.loads(rebuilt.stdout)["history"]
    assert history["learner histories"] >= 1 and history["course histories"] >= 1
    assert await _history(http, path, ADMIN) == entries
    versions = await _history(http, f"/api/v1/courses/{cid}/history", OWNER)
    assert [v["version"] for v in versions] == [1]

    # `course-management history` prints what the route answers
    printed = run_cli(stack_env, "history", "learner", cid, user)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert json.loads(printed.stdout) == entries


@pytest.mark.rebalances
@pytest.mark.crash
async def test_a_learner_s_history_survives_a_sigkill(
    http: aiohttp.ClientSession, worker: WorkerProcess
) -> None:
    course = await _course(http, title="Killed mid-record")
    cid = course["id"]
    lesson, quiz = course["modules"][0]["items"]
    user = f"hist-killed-{uuid.uuid4().hex[:6]}"
    assert (await enroll(http, cid, user)).status == 201
    await _report(http, cid, user, "kill-1", item_id=lesson["id"], status="completed")
    await _learner_history(http, cid, user, 2)
    worker.kill()  # SIGKILL: no flush, no commit
    worker.start().wait_ready()
    # a new session: the shared one's pooled connections went with the killed process
    async with aiohttp.ClientSession(base_url=worker.base_url) as fresh:
        await _report(fresh, cid, user, "kill-2", item_id=quiz["id"], status="started", score=3)
        entries = await _learner_history(fresh, cid, user, 3)
    assert _learner_rows(entries) == [
        ("enrollment_created", "active", None, None),
        ("progress_updated", "active", lesson["id"], "completed"),
        ("progress_updated", "active", quiz["id"], "started"),
    ]
    assert len({json.dumps(e, sort_keys=True) for e in entries}) == 3  # nothing twice

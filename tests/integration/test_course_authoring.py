"""Course authoring routes against the real stack: roles, versions, events, mirror, cache."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import ONE_MODULE, auth, eventually_async, read_topic

OWNER = auth("instructor-1", "instructor", name="Ada Instructor")
OTHER = auth("instructor-2", "instructor", name="Bob Other")
ADMIN = auth("admin-1", "admin")
STUDENT = auth("student-1", "student")
SERVICE = auth("content-delivery", "service")
ANONYMOUS: dict[str, str] = {}


async def new_course(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    body = {"title": "Authoring", "modules": [ONE_MODULE], **fields}
    response = await http.post("/api/v1/courses/create", json=body, headers=OWNER)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def update(
    http: aiohttp.ClientSession,
    course_id: str,
    body: dict[str, Any],
    headers: dict[str, str],
    **extra: str,
) -> aiohttp.ClientResponse:
    return await http.put(
        f"/api/v1/courses/{course_id}/update", json=body, headers={**headers, **extra}
    )


ROLES = {
    "anonymous": ANONYMOUS,
    "student": STUDENT,
    "service": SERVICE,
    "owner": OWNER,
    "other": OTHER,
    "admin": ADMIN,
}


@pytest.mark.parametrize(
    ("role", "draft_read", "published_read", "update_status", "delete_status"),
    [
        ("anonymous", 404, 200, 401, 401),
        ("student", 404, 200, 403, 403),
        ("service", 404, 200, 403, 403),
        ("owner", 200, 200, 200, 204),
        ("other", 404, 200, 403, 403),
        ("admin", 200, 200, 200, 204),
    ],
)
async def test_role_by_route_matrix(
    http: aiohttp.ClientSession,
    role: str,
    draft_read: int,
    published_read: int,
    update_status: int,
    delete_status: int,
) -> None:
    headers = ROLES[role]
    draft = await new_course(http)
    published = await new_course(http, status="published")
    assert (await http.get(f"/api/v1/courses/{draft['id']}", headers=headers)).status == draft_read
    assert (
        await http.get(f"/api/v1/courses/{draft['id']}/modules", headers=headers)
    ).status == draft_read
    assert (
        await http.get(f"/api/v1/courses/{published['id']}", headers=headers)
    ).status == published_read
    assert (
        await http.get(f"/api/v1/courses/{published['id']}/modules", headers=headers)
    ).status == published_read
    assert (
        await update(http, published["id"], {"title": "Renamed"}, headers)
    ).status == update_status
    assert (
        await http.delete(f"/api/v1/courses/{published['id']}/delete", headers=headers)
    ).status == delete_status
    create = await http.post("/api/v1/courses/create", json={"title": "x"}, headers=headers)
    assert create.status == {"anonymous": 401, "student": 403, "service": 403}.get(role, 201)


async def test_update_returns_the_new_version_and_reads_follow(http: aiohttp.ClientSession) -> None:
    course = await new_course(http)
    response = await update(http, course["id"], {"description": "changed", "tags": ["x"]}, OWNER)
    assert response.status == 200
    body = await response.json()
    assert body["version"] == 2 and body["description"] == "changed"
    assert response.headers["ETag"] == '"2.0.0.0"'
    read = await (await http.get(f"/api/v1/courses/{course['id']}", headers=OWNER)).json()
    assert read == body


async def test_a_stale_if_match_is_412(http: aiohttp.ClientSession) -> None:
    course = await new_course(http)
    assert (
        await update(http, course["id"], {"title": "v2"}, OWNER, **{"If-Match": '"1"'})
    ).status == 200
    stale = await update(http, course["id"], {"title": "v3"}, OWNER, **{"If-Match": '"1"'})
    assert stale.status == 412
    assert (await stale.json())["type"].endswith("/version-mismatch")


async def test_two_concurrent_updates_both_land_in_some_order(http: aiohttp.ClientSession) -> None:
    course = await new_course(http)
    first, second = await asyncio.gather(
        update(http, course["id"], {"description": "from A"}, OWNER),
        update(http, course["id"], {"category": "from-B"}, ADMIN),
    )
    assert first.status == second.status == 200
    versions = sorted([(await first.json())["version"], (await second.json())["version"]])
    assert versions == [2, 3]
    final = await (await http.get(f"/api/v1/courses/{course['id']}", headers=OWNER)).json()
    assert (final["description"], final["category"], final["version"]) == ("from A", "from-B", 3)


async def test_field_rules_name_the_field(http: aiohttp.ClientSession) -> None:
    course = await new_course(http)
    for body, field in (
        ({"level": "expert"}, "level"),
        ({"status": "archived"}, "status"),
        ({"instructor": {"id": "me"}}, "instructor"),
        ({"modules": [{"id": "nope", "title": "M", "position": 0}]}, "modules[0].id"),
    ):
        response = await update(http, course["id"], body, OWNER)
        assert response.status == 422, body
        assert field in [e["field"] for e in (await response.json())["errors"]]


async def test_delete_hides_the_course_and_the_mirror_keeps_it(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await new_course(http, status="published")
    assert (
        await http.delete(f"/api/v1/courses/{course['id']}/delete", headers=OWNER)
    ).status == 204
    assert (await http.get(f"/api/v1/courses/{course['id']}")).status == 404
    assert (await http.get(f"/api/v1/courses/{course['id']}", headers=ADMIN)).status == 404
    assert (await update(http, course["id"], {"title": "ghost"}, OWNER)).status == 404
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await eventually_async(
            lambda: conn.fetchrow(
                "SELECT version, deleted_at FROM courses WHERE id = $1 AND deleted_at IS NOT NULL",
                course["id"],
            ),
            what="the mirror's deleted mark",
        )
        assert row["version"] == 2
    finally:
        await conn.close()


async def test_events_are_in_order_one_per_applied_change(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await new_course(http)
    await update(http, course["id"], {"title": "v2"}, OWNER)
    await update(http, course["id"], {"title": "v2"}, OWNER)  # no change: no event
    await update(http, course["id"], {"status": "bogus"}, OWNER)  # refused: no event
    await update(http, course["id"], {"title": "v3"}, OWNER)
    await http.delete(f"/api/v1/courses/{course['id']}/delete", headers=OWNER)
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == course["id"].encode()]

    records = mine(await read_topic(settings, "course-events", lambda rs: len(mine(rs)) >= 4))
    events = [await codec.decode("course-events-value", r.value) for r in records]
    assert [(e["event_type"], e["version"]) for e in events] == [
        ("course_created", 1),
        ("course_updated", 2),
        ("course_updated", 3),
        ("course_deleted", 4),
    ]
    assert events[2]["course"]["title"] == "v3"
    assert len({e["event_id"] for e in events}) == 4


async def test_modules_come_back_in_order_with_their_items(http: aiohttp.ClientSession) -> None:
    modules = [
        {
            "title": "Second",
            "position": 2,
            "items": [
                {"type": "quiz", "title": "Q", "position": 5, "max_score": 10},
                {"type": "lesson", "title": "L", "position": 1},
            ],
        },
        {
            "title": "First",
            "position": 1,
            "items": [{"type": "lesson", "title": "Hi", "position": 0}],
        },
    ]
    course = await new_course(http, modules=modules, status="published")
    body = await (await http.get(f"/api/v1/courses/{course['id']}/modules")).json()
    assert [m["title"] for m in body["modules"]] == ["First", "Second"]
    assert [i["title"] for i in body["modules"][1]["items"]] == ["L", "Q"]
    assert body["version"] == 1


async def test_the_cache_never_serves_a_stale_course_after_a_write(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await new_course(http)
    path = f"/api/v1/courses/{course['id']}"
    assert (await (await http.get(path, headers=OWNER)).json())["version"] == 1  # cached now
    client = aioredis.from_url(settings.redis_url)
    try:
        key = f"cms:ready:course:{course['id']}"
        assert await client.hget(key, "version") == b"1"
        for n in range(2, 7):
            written = await (await update(http, course["id"], {"title": f"v{n}"}, OWNER)).json()
            read = await (await http.get(path, headers=OWNER)).json()
            assert read["version"] == written["version"] == n
            assert read["title"] == f"v{n}"
        cached = json.loads(await client.hget(key, "body"))  # the answer, ready-made
        assert cached["version"] == 6 and cached["title"] == "v6"
    finally:
        await client.aclose()


async def test_an_unknown_course_is_404_on_every_route(http: aiohttp.ClientSession) -> None:
    unknown = str(uuid.uuid4())
    assert (await http.get(f"/api/v1/courses/{unknown}/modules")).status == 404
    assert (await update(http, unknown, {"title": "x"}, ADMIN)).status == 404
    assert (await http.delete(f"/api/v1/courses/{unknown}/delete", headers=ADMIN)).status == 404


async def test_the_mirror_holds_modules_and_items_of_the_latest_version(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await new_course(http)
    module = course["modules"][0]
    body = {
        "modules": [
            {
                "id": module["id"],
                "title": "Renamed",
                "position": 0,
                "items": [
                    {
                        "id": module["items"][0]["id"],
                        "type": "lesson",
                        "title": "Hello",
                        "position": 0,
                    },
                    {
                        "type": "assignment",
                        "title": "Do it",
                        "position": 1,
                        "max_score": 20,
                        "due_at": "2027-01-31T23:59:00Z",
                    },
                ],
            },
        ]
    }
    updated = await (await update(http, course["id"], body, OWNER)).json()
    conn = await asyncpg.connect(settings.database_url)
    try:
        await eventually_async(
            lambda: conn.fetchval("SELECT version = 2 FROM courses WHERE id = $1", course["id"]),
            what="version 2 in the mirror",
        )
        modules = await conn.fetch(
            "SELECT id, title FROM course_modules WHERE course_id = $1", course["id"]
        )
        items = await conn.fetch(
            "SELECT id, type, max_score, module_id FROM course_items WHERE course_id = $1"
            " ORDER BY position",
            course["id"],
        )
        assert [(m["id"], m["title"]) for m in modules] == [(module["id"], "Renamed")]
        assert [(i["id"], i["type"], i["max_score"]) for i in items] == [
            (it["id"], it["type"], it["max_score"]) for it in updated["modules"][0]["items"]
        ]
        assert {i["module_id"] for i in items} == {module["id"]}
    finally:
        await conn.close()


async def test_replayed_or_older_events_never_move_the_mirror_backwards(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    from datetime import UTC, datetime

    from course_management.infra.database import connect_pool, mirror_course_event

    course = await new_course(http)
    v2 = await (await update(http, course["id"], {"title": "v2"}, OWNER)).json()
    pool = await connect_pool(settings.database_url)
    try:
        await eventually_async(
            lambda: pool.fetchval("SELECT version = 2 FROM courses WHERE id = $1", course["id"]),
            what="version 2 in the mirror",
        )
        for stale in (course, v2):  # an old version, then the same version again
            event = {
                "event_id": str(uuid.uuid4()),
                "event_type": "course_updated",
                "occurred_at": datetime.now(UTC),
                "course_id": course["id"],
                "version": stale["version"],
                "actor_id": "replayer",
                "course": stale,
            }
            assert await mirror_course_event(pool, event) is False
        row = await pool.fetchrow("SELECT version, title FROM courses WHERE id = $1", course["id"])
        assert (row["version"], row["title"]) == (2, "v2")
    finally:
        await pool.close()

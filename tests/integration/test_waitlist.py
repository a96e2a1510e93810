"""The waitlist against the real stack (issue 26, item 1; CONTRACT §5.2): joining answers
201 `waitlisted` with the place, a repeat 200, a full waitlist 409; a freed seat goes to
the head in the same decision; the lists by status, the milestones, `waitlist_count`,
and a race of many enrolments into a small course."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import (
    ADMIN,
    OWNER,
    auth,
    enroll,
    eventually_async,
    published_course,
    read_topic,
)


async def listed(
    http: aiohttp.ClientSession, course_id: str, status: str, limit: int = 100
) -> list[dict[str, Any]]:
    """Every enrollment of `status`, page after page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = f"status={status}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        answer = await http.get(f"/api/v1/courses/{course_id}/enrollments?{query}", headers=OWNER)
        assert answer.status == 200, await answer.text()
        page = await answer.json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def cancel(http: aiohttp.ClientSession, course_id: str, user: str) -> int:
    answer = await http.delete(
        f"/api/v1/courses/{course_id}/enrollments/{user}", headers=auth(user, "student")
    )
    return answer.status


async def test_a_full_course_queues_promotes_and_lists_in_queue_order(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await published_course(http, capacity=1, waitlist_capacity=3)
    assert (course["waitlist_capacity"], course["waitlist_count"]) == (3, 0)
    cid = course["id"]
    assert (await enroll(http, cid, "seated")).status == 201
    places = []
    for user in ("first", "second", "third"):
        answer = await enroll(http, cid, user)
        assert answer.status == 201, await answer.text()
        body = await answer.json()
        assert (body["status"], body["enrolled_at"]) == ("waitlisted", None)
        places.append(body["waitlist_position"])
    assert places == [1, 2, 3]
    repeat = await enroll(http, cid, "second")
    assert repeat.status == 200 and (await repeat.json())["waitlist_position"] == 2
    full = await enroll(http, cid, "fourth")
    assert full.status == 409 and (await full.json())["type"].endswith("/course-full")
    # a waiting learner is not enrolled: Content Delivery's check answers 404
    waiting = await http.get(f"/api/v1/courses/{cid}/enrollments/first", headers=ADMIN)
    assert waiting.status == 404
    shown = await (await http.get(f"/api/v1/courses/{cid}", headers=OWNER)).json()
    assert (shown["enrollment_count"], shown["waitlist_count"]) == (1, 3)

    assert await cancel(http, cid, "second") == 204  # off the queue from its middle
    assert await cancel(http, cid, "seated") == 204  # a seat freed: "first" takes it
    promoted = await http.get(f"/api/v1/courses/{cid}/enrollments/first", headers=ADMIN)
    assert promoted.status == 200 and (await promoted.json())["status"] == "active"

    async def mirrored() -> list[dict[str, Any]] | None:
        rows = await listed(http, cid, "waitlisted", limit=1)
        return rows if [r["user_id"] for r in rows] == ["third"] else None

    rows = await eventually_async(mirrored, deadline_s=30, what="the waitlist mirrored")
    assert rows[0]["waitlist_position"] == 1
    assert {r["user_id"] for r in await listed(http, cid, "active")} == {"first"}
    assert {r["user_id"] for r in await listed(http, cid, "cancelled")} == {"seated"}

    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == cid.encode()]

    records = mine(await read_topic(settings, "learner-milestones", lambda rs: len(mine(rs)) >= 5))
    milestones = [await codec.decode("learner-milestones-value", r.value) for r in records]
    assert [
        (m["event_type"], m["user_id"], m["waitlist_position"], m["reason"]) for m in milestones
    ] == [
        ("waitlisted", "first", 1, None),
        ("waitlisted", "second", 2, None),
        ("waitlisted", "third", 3, None),
        ("waitlist_left", "second", None, "cancelled"),
        ("waitlist_left", "first", None, "promoted"),
    ]
    events = [
        await codec.decode("enrollment-events-value", r.value)
        for r in mine(
            await read_topic(settings, "enrollment-events", lambda rs: len(mine(rs)) >= 3)
        )
    ]
    assert [(e["event_type"], e["user_id"], e["reactivated"]) for e in events] == [
        ("enrollment_created", "seated", False),
        ("enrollment_cancelled", "seated", None),
        ("enrollment_created", "first", False),
    ]


async def test_a_taken_off_learner_is_listed_cancelled_with_the_reason(
    http: aiohttp.ClientSession,
) -> None:
    course = await published_course(http, capacity=1, waitlist_capacity=2)
    cid = course["id"]
    assert (await enroll(http, cid, "holder")).status == 201
    assert (await enroll(http, cid, "hopeful")).status == 201
    archived = await http.put(
        f"/api/v1/courses/{cid}/update",
        json={"status": "archived"},
        headers={**OWNER, "If-Match": f'"{course["version"]}"'},
    )
    assert archived.status == 200, await archived.text()
    assert await cancel(http, cid, "holder") == 204

    async def taken_off() -> list[dict[str, Any]] | None:
        rows = await listed(http, cid, "cancelled")
        return rows if {r["user_id"] for r in rows} == {"holder", "hopeful"} else None

    rows = {r["user_id"]: r for r in await eventually_async(taken_off, what="both listed")}
    assert rows["hopeful"]["cancel_reason"] == "course-not-published"
    assert rows["hopeful"]["enrolled_at"] is None
    assert "cancel_reason" not in rows["holder"] or rows["holder"]["cancel_reason"] is None


async def test_a_race_fills_exactly_the_seats_and_the_waitlist(
    http: aiohttp.ClientSession,
) -> None:
    course = await published_course(http, capacity=5, waitlist_capacity=7)
    cid = course["id"]
    answers = await asyncio.gather(*(enroll(http, cid, f"racer-{n}") for n in range(40)))
    bodies = [(a.status, await a.json()) for a in answers]
    active = [b for s, b in bodies if s == 201 and b["status"] == "active"]
    waiting = [b for s, b in bodies if s == 201 and b["status"] == "waitlisted"]
    refused = [b for s, b in bodies if s == 409]
    assert (len(active), len(waiting), len(refused)) == (5, 7, 28)
    assert sorted(b["waitlist_position"] for b in waiting) == list(range(1, 8))
    assert all(b["type"].endswith("/course-full") for b in refused)
    shown = await (await http.get(f"/api/v1/courses/{cid}", headers=OWNER)).json()
    assert (shown["enrollment_count"], shown["waitlist_count"]) == (5, 7)


async def test_bad_waitlist_capacities_are_422_naming_the_field(
    http: aiohttp.ClientSession,
) -> None:
    for bad in (-1, 1_000_001, "ten", 2.5):
        answer = await http.post(
            "/api/v1/courses/create",
            json={"title": "Bad", "waitlist_capacity": bad},
            headers=OWNER,
        )
        assert answer.status == 422, bad
        problem = await answer.json()
        assert any(e["field"] == "waitlist_capacity" for e in problem["errors"]), problem
    bad_status = await http.get(
        f"/api/v1/courses/{(await published_course(http))['id']}/enrollments?status=gone",
        headers=OWNER,
    )
    assert bad_status.status == 422
    assert (await bad_status.json())["errors"][0]["field"] == "status"


async def test_bad_staff_entries_are_422_naming_the_field_and_change_nothing(
    http: aiohttp.ClientSession,
) -> None:
    course = await published_course(http)
    cases: list[tuple[Any, str]] = [
        ([{"user_id": "x", "role": "dean"}], "staff[0].role"),
        ([{"user_id": "", "role": "co_instructor"}], "staff[0].user_id"),
        ([{"user_id": "x\u0001", "role": "co_instructor"}], "staff[0].user_id"),
        ([{"role": "co_instructor"}], "staff[0].user_id"),
        ([{"user_id": "instructor-1", "role": "co_instructor"}], "staff"),
        (
            [
                {"user_id": "x", "role": "co_instructor"},
                {"user_id": "x", "role": "teaching_assistant"},
            ],
            "staff",
        ),
        (None, "staff"),
    ]
    for staff, field in cases:
        answer = await http.put(
            f"/api/v1/courses/{course['id']}/update", json={"staff": staff}, headers=OWNER
        )
        assert answer.status == 422, (staff, await answer.text())
        fields = [e["field"] for e in (await answer.json())["errors"]]
        assert field in fields, (staff, fields)
    shown = await (await http.get(f"/api/v1/courses/{course['id']}", headers=OWNER)).json()
    assert (shown["staff"], shown["version"]) == ([], course["version"])

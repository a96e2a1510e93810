"""Who may do what: every route, every kind of caller, every ownership case, one table
(issue 12; OWASP API1/API5 object-level checks on every id in a path, API3 mass
assignment of server-owned fields, API4 page-size caps), against the session's worker.

The world: instructor A owns a published course P (one item) and a draft D, both with C
as co-instructor and TA as teaching assistant (issue 26: their tokens say only
`student`); student S is enrolled in P; student T is not; B is another instructor.
`{fresh}` is a new published course of A (with the same staff) made for that one call,
`{fresh_s}` one in which S is enrolled (for the calls that delete or cancel).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.support import ONE_MODULE, auth

RUN = uuid.uuid4().hex[:8]
S, T, A, B = f"s-{RUN}", f"t-{RUN}", f"a-{RUN}", f"b-{RUN}"
C, TA = f"co-{RUN}", f"ta-{RUN}"
STAFF = [
    {"user_id": C, "role": "co_instructor"},
    {"user_id": TA, "role": "teaching_assistant"},
]
CALLERS: dict[str, dict[str, str]] = {
    "anonymous": {},
    "student": auth(S, "student"),
    "other student": auth(T, "student"),
    "owner": auth(A, "instructor", name="Owner"),
    "other instructor": auth(B, "instructor"),
    "admin": auth(f"admin-{RUN}", "admin"),
    "service": auth(f"svc-{RUN}", "service"),
    # staff by their `sub`, whatever their tokens' roles (CONTRACT §5.2)
    "co-instructor": auth(C, "student"),
    "teaching assistant": auth(TA, "student"),
}
ORDER = list(CALLERS)


def everyone(status: int) -> tuple[int, ...]:
    return (status,) * len(ORDER)


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    path: str
    body: dict[str, Any] | None
    # anonymous, student, other student, owner, other instructor, admin, service,
    # co-instructor, teaching assistant
    expected: tuple[int, ...]


ITEM = "{item}"
UPLOAD = {"filename": "notes.pdf", "content_type": "application/pdf", "size_bytes": 1000}
ROWS = [
    Row(
        "create",
        "POST",
        "/api/v1/courses/create",
        {"title": "m"},
        (401, 403, 403, 201, 201, 201, 403, 403, 403),
    ),
    Row("read published", "GET", "/api/v1/courses/{P}", None, everyone(200)),
    Row(
        "read draft",
        "GET",
        "/api/v1/courses/{D}",
        None,
        (404, 404, 404, 200, 404, 200, 404, 200, 200),
    ),
    Row("read missing", "GET", "/api/v1/courses/{X}", None, everyone(404)),
    # issue 27: past versions as the course now, its history for those who author it
    Row("version 1", "GET", "/api/v1/courses/{P}?version=1", None, everyone(200)),
    Row(
        "draft version 1",
        "GET",
        "/api/v1/courses/{D}/modules?version=1",
        None,
        (404, 404, 404, 200, 404, 200, 404, 200, 200),
    ),
    Row(
        "history",
        "GET",
        "/api/v1/courses/{P}/history",
        None,
        (401, 403, 403, 200, 403, 200, 403, 200, 403),
    ),
    Row(
        "draft history",
        "GET",
        "/api/v1/courses/{D}/history",
        None,
        (401, 404, 404, 200, 404, 200, 404, 200, 403),
    ),
    Row(
        "S's history",
        "GET",
        "/api/v1/courses/{P}/enrollments/{S}/history",
        None,
        (401, 200, 403, 200, 403, 200, 200, 200, 200),
    ),
    # issue 28: live streams (the 200s are streams, closed at once) and webhooks
    Row(
        "course stream",
        "GET",
        "/api/v1/courses/{P}/events",
        None,
        (401, 403, 403, 200, 403, 200, 200, 200, 200),
    ),
    Row(
        "draft stream",
        "GET",
        "/api/v1/courses/{D}/events",
        None,
        (401, 404, 404, 200, 404, 200, 200, 200, 200),
    ),
    Row(
        "S's stream",
        "GET",
        "/api/v1/courses/{P}/enrollments/{S}/events",
        None,
        (401, 200, 403, 200, 403, 200, 200, 200, 200),
    ),
    Row(
        "subscribe",
        "POST",
        "/api/v1/webhooks",
        {"url": "http://127.0.0.1:9/hook", "event_types": ["course_deleted"], "course_id": "{P}"},
        (401, 403, 403, 403, 403, 201, 201, 403, 403),
    ),
    Row(
        "read a subscription",
        "GET",
        "/api/v1/webhooks/{W}",
        None,
        (401, 404, 404, 404, 404, 200, 200, 404, 404),
    ),
    Row(
        "replay a subscription",
        "POST",
        "/api/v1/webhooks/{W}/replay",
        {"from": "2026-12-01T00:00:00Z"},
        (401, 404, 404, 404, 404, 202, 202, 404, 404),
    ),
    Row(
        "end a subscription",
        "DELETE",
        "/api/v1/webhooks/{fresh_w}",
        None,
        (401, 404, 404, 404, 404, 204, 204, 404, 404),
    ),
    Row("modules published", "GET", "/api/v1/courses/{P}/modules", None, everyone(200)),
    Row(
        "modules draft",
        "GET",
        "/api/v1/courses/{D}/modules",
        None,
        (404, 404, 404, 200, 404, 200, 404, 200, 200),
    ),
    Row(
        "update",
        "PUT",
        "/api/v1/courses/{P}/update",
        {"description": "d"},
        (401, 403, 403, 200, 403, 200, 403, 200, 403),
    ),
    Row(
        "update draft",  # another instructor cannot tell a draft exists: 404
        "PUT",
        "/api/v1/courses/{D}/update",
        {"description": "d"},
        (401, 404, 404, 200, 404, 200, 404, 200, 403),
    ),
    Row(
        "delete",
        "DELETE",
        "/api/v1/courses/{fresh}/delete",
        None,
        (401, 403, 403, 204, 403, 204, 403, 403, 403),
    ),
    Row(
        "enrol oneself",
        "POST",
        "/api/v1/courses/{fresh}/enroll",
        None,
        (401, 201, 201, 403, 403, 422, 422, 201, 201),
    ),
    Row(
        "enrol S by name",
        "POST",
        "/api/v1/courses/{fresh}/enroll",
        {"user_id": S},
        (401, 201, 403, 403, 403, 201, 201, 403, 403),
    ),
    Row(
        "enrol in a draft",
        "POST",
        "/api/v1/courses/{D}/enroll",
        {"user_id": S},
        # a draft does not exist for whoever may not see it (issue 24): 404, not 409
        (401, 404, 403, 403, 403, 409, 404, 403, 403),
    ),
    Row(
        "course's enrollments",
        "GET",
        "/api/v1/courses/{P}/enrollments",
        None,
        (401, 200, 200, 200, 403, 200, 200, 200, 200),
    ),
    Row(
        "draft's enrollments",
        "GET",
        "/api/v1/courses/{D}/enrollments",
        None,
        (401, 404, 404, 200, 404, 200, 200, 200, 200),
    ),
    Row(
        "S's enrollment",
        "GET",
        "/api/v1/courses/{P}/enrollments/{S}",
        None,
        (401, 200, 403, 200, 403, 200, 200, 200, 200),
    ),
    Row(
        "T's enrollment",
        "GET",
        "/api/v1/courses/{P}/enrollments/{T}",
        None,
        (401, 403, 404, 404, 403, 404, 404, 404, 404),
    ),
    Row(
        "cancel S",
        "DELETE",
        "/api/v1/courses/{fresh_s}/enrollments/{S}",
        None,
        (401, 204, 403, 403, 403, 204, 403, 403, 403),
    ),
    Row(
        "progress",
        "POST",
        "/api/v1/courses/{P}/progress",
        {"item_id": ITEM, "status": "started"},
        (401, 200, 404, 403, 403, 403, 422, 404, 404),  # T: not enrolled, 404 on every route
    ),
    Row(
        "progress of S",
        "POST",
        "/api/v1/courses/{P}/progress",
        {"item_id": ITEM, "status": "started", "user_id": S},
        (401, 200, 403, 403, 403, 403, 200, 403, 200),
    ),
    Row(
        "S's enrollments",
        "GET",
        "/api/v1/users/{S}/enrollments",
        None,
        (401, 200, 403, 403, 403, 200, 200, 403, 403),
    ),
    Row(
        "rate",
        "POST",
        "/api/v1/courses/{P}/ratings",
        {"stars": 4},
        (401, 200, 404, 403, 403, 403, 403, 404, 404),  # T: not enrolled
    ),
    Row("ratings", "GET", "/api/v1/courses/{P}/ratings", None, everyone(200)),
    Row(
        "draft's ratings",
        "GET",
        "/api/v1/courses/{D}/ratings",
        None,
        (404, 404, 404, 200, 404, 200, 404, 200, 200),
    ),
    Row(
        "upload",
        "POST",
        "/api/v1/courses/{P}/uploads",
        UPLOAD,
        (401, 403, 403, 201, 403, 201, 403, 201, 403),
    ),
    Row(
        "change staff",
        "PUT",
        "/api/v1/courses/{fresh}/update",
        {"staff": []},
        (401, 403, 403, 200, 403, 200, 403, 403, 403),
    ),
    Row("catalog", "GET", "/api/v1/courses", None, everyone(200)),
    Row("health", "GET", "/healthz", None, everyone(200)),
    Row("readiness", "GET", "/readyz", None, everyone(200)),
    Row("metrics", "GET", "/metrics", None, everyone(200)),
    Row("openapi", "GET", "/openapi.json", None, everyone(200)),
]

# API3: every server-owned field, on every write that takes a body (as its owner would
# send it): 422 naming the field, nothing written.
SERVER_OWNED = {
    "id": str(uuid.uuid4()),
    "instructor": {"id": "x", "name": "x"},
    "rating": {"average": 5, "count": 9},
    "enrollment_count": 9,
    "version": 9,
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
}
MASS_ASSIGNMENT = [
    *(
        ("owner", "POST", "/api/v1/courses/create", {"title": "m", k: v}, k)
        for k, v in SERVER_OWNED.items()
    ),
    *(("owner", "PUT", "/api/v1/courses/{P}/update", {k: v}, k) for k, v in SERVER_OWNED.items()),
    (
        "admin",
        "POST",
        "/api/v1/courses/{P}/enroll",
        {"user_id": T, "status": "completed"},
        "status",
    ),
    (
        "admin",
        "POST",
        "/api/v1/courses/{P}/enroll",
        {"user_id": T, "enrolled_at": "2020-01-01T00:00:00Z"},
        "enrolled_at",
    ),
    (
        "student",
        "POST",
        "/api/v1/courses/{P}/progress",
        {"item_id": ITEM, "status": "completed", "completed_at": "2020-01-01T00:00:00Z"},
        "completed_at",
    ),
    ("student", "POST", "/api/v1/courses/{P}/ratings", {"stars": 4, "user_id": T}, "user_id"),
    (
        "student",
        "POST",
        "/api/v1/courses/{P}/ratings",
        {"stars": 4, "rated_at": "2020-01-01T00:00:00Z"},
        "rated_at",
    ),
    (
        "owner",
        "POST",
        "/api/v1/courses/{P}/uploads",
        {**UPLOAD, "key": "courses/other/x.pdf"},
        "key",
    ),
]
# API4: every list caps its page.
LISTS = [
    ("anonymous", "/api/v1/courses"),
    ("owner", "/api/v1/courses/{P}/enrollments"),
    ("student", "/api/v1/users/{S}/enrollments"),
    ("anonymous", "/api/v1/courses/{P}/ratings"),
]


@dataclass
class World:
    http: aiohttp.ClientSession
    ids: dict[str, str]

    async def course(self, **fields: Any) -> dict[str, Any]:
        body = {"title": f"Matrix {RUN}", "modules": [ONE_MODULE], "staff": STAFF, **fields}
        r = await self.http.post("/api/v1/courses/create", json=body, headers=CALLERS["owner"])
        assert r.status == 201, await r.text()
        return dict(await r.json())

    async def path(self, template: str) -> str:
        values = dict(self.ids)
        if "{fresh}" in template or "{fresh_s}" in template:
            fresh = (await self.course(status="published"))["id"]
            values["fresh"] = values["fresh_s"] = fresh
            if "{fresh_s}" in template:
                r = await self.http.post(
                    f"/api/v1/courses/{fresh}/enroll", headers=CALLERS["student"]
                )
                assert r.status == 201
        if "{fresh_w}" in template:
            values["fresh_w"] = await self.subscription()
        return template.format(**values)

    async def subscription(self) -> str:
        """A webhook subscription of the service caller (to an event P never has)."""
        body = {"url": "http://127.0.0.1:9/hook", "event_types": ["course_deleted"]}
        body["course_id"] = self.ids["P"]
        r = await self.http.post("/api/v1/webhooks", json=body, headers=CALLERS["service"])
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])

    def body(self, body: dict[str, Any] | None) -> dict[str, Any] | None:
        if body is None:
            return None
        return {
            k: (self.ids["item"] if v == ITEM else v.format(**self.ids) if v == "{P}" else v)
            for k, v in body.items()
        }


@pytest.fixture(scope="module")
async def world(http: aiohttp.ClientSession) -> AsyncIterator[World]:
    w = World(http, {})
    published = await w.course(status="published")
    draft = await w.course()
    w.ids.update(
        P=published["id"],
        D=draft["id"],
        X=str(uuid.uuid4()),
        S=S,
        T=T,
        item=published["modules"][0]["items"][0]["id"],
    )
    r = await http.post(f"/api/v1/courses/{w.ids['P']}/enroll", headers=CALLERS["student"])
    assert r.status == 201
    w.ids["W"] = await w.subscription()
    yield w


async def test_every_route_answers_every_caller_as_the_table_says(world: World) -> None:
    wrong = []
    for row in ROWS:
        for caller, expected in zip(ORDER, row.expected, strict=True):
            path = await world.path(row.path)
            body = world.body(row.body)
            kwargs: dict[str, Any] = {"headers": CALLERS[caller]}
            if body is not None:
                kwargs["json"] = body
            r = await world.http.request(row.method, path, **kwargs)
            if r.content_type == "text/event-stream":
                r.close()  # a live stream: its headers said enough
            if r.status != expected:
                wrong.append(f"{row.name} as {caller}: {r.status}, expected {expected}")
            if r.status >= 400 and r.status != 401:
                assert r.content_type == "application/problem+json", (row.name, caller)
    assert wrong == []


async def test_a_student_sees_only_their_own_enrollment_in_a_course_list(world: World) -> None:
    url = f"/api/v1/courses/{world.ids['P']}/enrollments"
    mine = await (await world.http.get(url, headers=CALLERS["student"])).json()
    assert [e["user_id"] for e in mine["items"]] == [S]
    theirs = await (await world.http.get(url, headers=CALLERS["other student"])).json()
    assert theirs["items"] == []


async def test_server_owned_fields_cannot_be_assigned(world: World) -> None:
    wrong = []
    for caller, method, template, body, field in MASS_ASSIGNMENT:
        r = await world.http.request(
            method, await world.path(template), json=world.body(body), headers=CALLERS[caller]
        )
        fields = [e["field"] for e in (await r.json()).get("errors", [])] if r.status == 422 else []
        if r.status != 422 or field not in fields:
            wrong.append(f"{method} {template} with {field}: {r.status} {fields}")
    assert wrong == []
    course = await (await world.http.get(f"/api/v1/courses/{world.ids['P']}")).json()
    assert course["instructor"]["id"] == A and course["version"] < 9


async def test_every_list_caps_its_page_size(world: World) -> None:
    for caller, template in LISTS:
        path = await world.path(template)
        for limit, status in (("100", 200), ("101", 422), ("0", 422), ("-1", 422)):
            r = await world.http.get(path, params={"limit": limit}, headers=CALLERS[caller])
            assert r.status == status, (template, limit, r.status)
            if status == 422:
                assert (await r.json())["errors"][0]["field"] == "limit"

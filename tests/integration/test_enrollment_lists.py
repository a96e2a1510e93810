"""Enrollment lists: pages with opaque cursors, and who sees what."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.support import ADMIN, OWNER, SERVICE, auth, enroll, eventually_async, published_course


async def pages(
    http: aiohttp.ClientSession, path: str, headers: dict[str, str], limit: int
) -> list[list[dict[str, Any]]]:
    found, cursor = [], None
    while True:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await http.get(path, params=params, headers=headers)
        assert response.status == 200, await response.text()
        body = await response.json()
        found.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return found


async def test_a_course_list_pages_without_repeats_or_gaps(http: aiohttp.ClientSession) -> None:
    course = await published_course(http)
    users = [f"lister-{n:02d}" for n in range(25)]
    await asyncio.gather(*(enroll(http, course["id"], u) for u in users))
    path = f"/api/v1/courses/{course['id']}/enrollments"

    async def all_mirrored() -> bool:
        body = await (await http.get(path, params={"limit": "100"}, headers=ADMIN)).json()
        return len(body["items"]) == 25

    await eventually_async(all_mirrored, what="25 mirrored enrollments")
    for who in (OWNER, ADMIN, SERVICE):
        got = await pages(http, path, who, limit=10)
        assert [len(p) for p in got] == [10, 10, 5]
        assert [e["user_id"] for p in got for e in p] == users
    own = await (await http.get(path, headers=auth("lister-07", "student"))).json()
    assert [e["user_id"] for e in own["items"]] == ["lister-07"]
    assert (await http.get(path, headers=auth("instructor-2", "instructor"))).status == 403


async def test_a_users_list_and_its_guards(http: aiohttp.ClientSession) -> None:
    courses = [await published_course(http) for _ in range(3)]
    for course in courses:
        assert (await enroll(http, course["id"], "collector")).status == 201
    path = "/api/v1/users/collector/enrollments"

    async def three() -> bool:
        body = await (await http.get(path, headers=auth("collector", "student"))).json()
        return len(body["items"]) == 3

    await eventually_async(three, what="3 mirrored enrollments")
    got = await pages(http, path, SERVICE, limit=2)
    assert sorted(e["course_id"] for p in got for e in p) == sorted(c["id"] for c in courses)
    assert (await http.get(path, headers=auth("someone-else", "student"))).status == 403
    assert (await http.get(path)).status == 401


async def test_bad_paging_parameters_are_422_naming_them(http: aiohttp.ClientSession) -> None:
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "e30"}, "cursor"),
    ):
        response = await http.get("/api/v1/users/u/enrollments", params=params, headers=ADMIN)
        assert response.status == 422, params
        assert (await response.json())["errors"][0]["field"] == field

"""The catalog and ratings through HTTP, against the worker and the whole real stack.

Every test runs twice: through the session's worker (SEARCH_URL set: Elasticsearch) and
through a second worker started without SEARCH_URL (PostgreSQL full-text search). The
second one joins the consumer group, so its runs are marked `rebalances` and come last.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support import (
    ADMIN,
    ONE_MODULE,
    OWNER,
    WorkerProcess,
    auth,
    enroll,
    eventually_async,
    published_course,
)


@pytest.fixture(params=["elasticsearch", pytest.param("postgres", marks=pytest.mark.rebalances)])
async def http(
    request: pytest.FixtureRequest, http: aiohttp.ClientSession
) -> AsyncIterator[aiohttp.ClientSession]:
    """The API of a worker with the given catalog backend (overrides the session's `http`)."""
    if request.param == "elasticsearch":
        yield http
        return
    process: WorkerProcess = request.getfixturevalue("postgres_worker")
    async with aiohttp.ClientSession(base_url=process.base_url) as session:
        yield session


def word() -> str:
    """A word no other course has, to find one course by full text."""
    return "w" + uuid.uuid4().hex[:10]


async def listing(http: aiohttp.ClientSession, **params: Any) -> dict[str, Any]:
    response = await http.get("/api/v1/courses", params={k: str(v) for k, v in params.items()})
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def ids(http: aiohttp.ClientSession, **params: Any) -> list[str]:
    return [c["id"] for c in (await listing(http, **params))["items"]]


async def test_a_new_published_course_is_listed_once_indexed(
    http: aiohttp.ClientSession,
) -> None:
    """Listed soon after its create answers (the time is printed, not asserted: the
    search sink waits for the index's refresh, about a second, behind whatever batch is
    ahead of it; the deadline only bounds the wait)."""
    marker = word()
    assert await ids(http, q=marker) == []  # the empty answer is now cached
    course = await published_course(http, title=f"Fresh {marker}")
    answered = time.monotonic()

    async def listed() -> bool:
        return course["id"] in await ids(http, q=marker)

    await eventually_async(listed, deadline_s=15.0, what="the new course in the catalog")
    print(f"listed {time.monotonic() - answered:.3f} s after the create response")
    body = await listing(http, q=marker)
    item = body["items"][0]
    assert item["instructor"] == {"id": "instructor-1", "name": "Ada Instructor"}
    # A summary (issue 24, item 3): no modules, no content keys; their counts.
    assert "modules" not in item and (item["module_count"], item["item_count"]) == (1, 1)
    assert body["facets"]["category"] == {course["category"]: 1}
    assert course["id"] in await ids(http, instructor_id="instructor-1", q=marker)
    assert await ids(http, instructor_id="someone-else", q=marker) == []


async def test_newest_means_newly_published_not_newly_drafted(
    http: aiohttp.ClientSession,
) -> None:
    """Issue 24, item 12 (decision 53): a course drafted first and published last is the
    newest; `published_at` is set by the publication, and stays."""
    marker = word()
    drafted = await http.post(
        "/api/v1/courses/create",
        json={"title": f"Drafted long ago {marker}", "modules": [ONE_MODULE]},
        headers=OWNER,
    )
    assert drafted.status == 201
    early = await drafted.json()
    assert early["published_at"] is None
    later = await published_course(http, title=f"Published at once {marker}")
    assert later["published_at"] == later["created_at"]
    published = await http.put(
        f"/api/v1/courses/{early['id']}/update", json={"status": "published"}, headers=OWNER
    )
    assert published.status == 200, await published.text()
    body = await published.json()
    assert body["published_at"] > body["created_at"] and body["published_at"] > later["created_at"]

    async def both_listed() -> bool:
        return len(await ids(http, q=marker)) == 2

    await eventually_async(both_listed, deadline_s=15, what="both courses listed")
    assert await ids(http, q=marker, sort="newest") == [early["id"], later["id"]]


async def test_drafts_and_deleted_courses_are_never_listed(http: aiohttp.ClientSession) -> None:
    marker = word()
    draft = await http.post(
        "/api/v1/courses/create", json={"title": f"Draft {marker}"}, headers=OWNER
    )
    assert draft.status == 201
    doomed = await published_course(http, title=f"Doomed {marker}")
    await eventually_async(
        lambda: _contains(http, marker, doomed["id"]), deadline_s=10, what="listed"
    )
    assert [c["status"] for c in (await listing(http, q=marker))["items"]] == ["published"]
    gone = await http.delete(f"/api/v1/courses/{doomed['id']}/delete", headers=OWNER)
    assert gone.status == 204

    async def unlisted() -> bool:
        return await ids(http, q=marker) == []

    await eventually_async(unlisted, deadline_s=10, what="the deleted course gone")


async def _contains(http: aiohttp.ClientSession, marker: str, course_id: str) -> bool:
    return course_id in await ids(http, q=marker)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"sort": "cheapest"}, "sort"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"level": "expert"}, "level"),
        ({"language": "english please"}, "language"),
        ({"q": "x" * 5001}, "q"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    http: aiohttp.ClientSession, params: dict[str, str], field: str
) -> None:
    response = await http.get("/api/v1/courses", params=params)
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert [e["field"] for e in body["errors"]] == [field]


async def test_a_cursor_from_another_query_is_refused(http: aiohttp.ClientSession) -> None:
    for n in range(3):
        await published_course(http, title=f"Cursor course {n}", category="cursors")

    async def two_pages() -> str | None:
        cursor: str | None = (await listing(http, category="cursors", limit=1))["next_cursor"]
        return cursor

    cursor = await eventually_async(two_pages, deadline_s=10, what="a second page")
    response = await http.get(
        "/api/v1/courses", params={"category": "other", "limit": "1", "cursor": cursor}
    )
    assert response.status == 422
    assert [e["field"] for e in (await response.json())["errors"]] == ["cursor"]


@pytest.mark.parametrize(
    "text",
    ['"unbalanced', "title:(a OR b)", "/.*[/", "a" * 64, "\\", "*?~^", "(((", "é ü 中文"],
)
async def test_query_syntax_is_plain_text(http: aiohttp.ClientSession, text: str) -> None:
    response = await http.get("/api/v1/courses", params={"q": text})
    assert response.status == 200, await response.text()
    assert set(await response.json()) == {"items", "next_cursor", "facets"}


async def test_a_query_past_what_search_takes_is_refused_naming_q(
    http: aiohttp.ClientSession,
) -> None:
    """Issue 24: a word over 64 characters was cut, words past the 32nd dropped."""
    for text in ("a" * 65, " ".join(f"w{n}" for n in range(33))):
        response = await http.get("/api/v1/courses", params={"q": text})
        assert response.status == 422
        assert [e["field"] for e in (await response.json())["errors"]] == ["q"]


async def test_ratings_from_enrolled_students_replace_and_average_exactly(
    http: aiohttp.ClientSession,
) -> None:
    marker = word()
    course = await published_course(http, title=f"Rated {marker}")
    cid = course["id"]

    async def rate(user: str, stars: Any, **extra: Any) -> aiohttp.ClientResponse:
        return await http.post(
            f"/api/v1/courses/{cid}/ratings",
            json={"stars": stars, **extra},
            headers=auth(user, "student"),
        )

    outsider = await rate("never-enrolled", 5)
    assert outsider.status == 404  # not-enrolled is 404 on every route (issue 24)
    assert (await outsider.json())["type"].endswith("/not-enrolled")
    for user in ("rater-a", "rater-b"):
        assert (await enroll(http, cid, user)).status == 201
    first = await rate("rater-a", 5, review="Great")
    assert first.status == 200, await first.text()
    assert (await first.json())["course_rating"] == {"average": 5.0, "count": 1}
    second = await rate("rater-b", 2)
    assert (await second.json())["course_rating"] == {"average": 3.5, "count": 2}
    replaced = await rate("rater-a", 3)  # one rating per student: replaces the 5
    body = await replaced.json()
    assert body["course_rating"] == {"average": 2.5, "count": 2}
    assert body["stars"] == 3 and body["review"] is None
    same = await rate("rater-a", 3)  # nothing changes
    assert (await same.json())["course_rating"] == {"average": 2.5, "count": 2}
    read = await (await http.get(f"/api/v1/courses/{cid}")).json()
    assert read["rating"] == {"average": 2.5, "count": 2}

    async def catalog_shows_it() -> bool:
        items = (await listing(http, q=marker))["items"]
        return bool(items) and items[0]["rating"] == {"average": 2.5, "count": 2}

    await eventually_async(catalog_shows_it, deadline_s=10, what="the rating in the catalog")

    # Bad input and the wrong callers.
    assert (await rate("rater-a", 6)).status == 422
    assert (await rate("rater-a", "5")).status == 422
    too_long = await rate("rater-a", 4, review="x" * 2001)
    assert too_long.status == 422
    assert [e["field"] for e in (await too_long.json())["errors"]] == ["review"]
    unknown = await rate("rater-a", 4, mood="happy")
    assert unknown.status == 422
    by_owner = await http.post(f"/api/v1/courses/{cid}/ratings", json={"stars": 5}, headers=OWNER)
    assert by_owner.status == 403
    by_admin = await http.post(f"/api/v1/courses/{cid}/ratings", json={"stars": 5}, headers=ADMIN)
    assert by_admin.status == 403
    anonymous = await http.post(f"/api/v1/courses/{cid}/ratings", json={"stars": 5})
    assert anonymous.status == 401
    missing = await http.post(
        f"/api/v1/courses/{uuid.uuid4()}/ratings", json={"stars": 5}, headers=auth("x", "student")
    )
    assert missing.status == 404


async def test_popular_follows_enrollments(http: aiohttp.ClientSession) -> None:
    marker = word()
    quiet = await published_course(http, title=f"Quiet {marker}")
    busy = await published_course(http, title=f"Busy {marker}")
    for n in range(3):
        assert (await enroll(http, busy["id"], f"fan-{marker}-{n}")).status == 201

    async def ranked() -> bool:
        items = (await listing(http, q=marker, sort="popular"))["items"]
        return [(c["id"], c["enrollment_count"]) for c in items] == [
            (busy["id"], 3),
            (quiet["id"], 0),
        ]

    await eventually_async(ranked, deadline_s=10, what="popular order with counts")


async def test_catalog_pages_are_cached_and_invalidated(http: aiohttp.ClientSession) -> None:
    marker = word()

    async def repeat_is_a_hit() -> bool:
        # Another test's catalog write may bump the generation between the two reads
        # (every batch a catalog sink applies does): then the repeat is rightly a miss,
        # and the pair is tried again. A cache that never serves fails at the deadline.
        await listing(http, q=marker)
        before = await _hits(http)
        await listing(http, q=marker)
        return await _hits(http) == before + 1  # the same page again came from Redis

    await eventually_async(repeat_is_a_hit, deadline_s=10, what="a repeated page from Redis")
    course = await published_course(http, title=f"Cached {marker}")
    await eventually_async(
        lambda: _contains(http, marker, course["id"]), deadline_s=5, what="invalidated"
    )


async def _hits(http: aiohttp.ClientSession) -> float:
    text = await (await http.get("/metrics")).text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("cms_catalog_pages_total{") and 'cache="hit"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total

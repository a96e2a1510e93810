"""Hostile input gets a 4xx problem+json answer, never a 5xx (issue 12), in process: the
real aiohttp server and middleware over fake ports, so that only the API's own handling
is under test (the agent's is covered by the integration tests)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from course_management.domain.outcomes import Reply
from tests.unit.test_api_in_process import (
    COURSE_ID,
    INSTRUCTOR,
    PROBLEM,
    SERVICE,
    STUDENT,
    Api,
    api,
    course,
)

__all__ = ["api"]  # the fixture

CREATE = "/api/v1/courses/create"
UPDATE = f"/api/v1/courses/{COURSE_ID}/update"
PROGRESS = f"/api/v1/courses/{COURSE_ID}/progress"
UPLOADS = f"/api/v1/courses/{COURSE_ID}/uploads"
RATINGS = f"/api/v1/courses/{COURSE_ID}/ratings"
JSON = {"Content-Type": "application/json"}


def raw(body: str | bytes) -> dict[str, Any]:
    return {"data": body.encode() if isinstance(body, str) else body}


DEEP = "[" * 5000 + "]" * 5000
CASES: list[tuple[str, str, str, dict[str, str], dict[str, Any]]] = [
    ("deep arrays", "POST", CREATE, INSTRUCTOR, raw('{"title": "x", "tags": ' + DEEP + "}")),
    ("deep objects", "POST", CREATE, INSTRUCTOR, raw('{"a":' * 5000 + "1" + "}" * 5000)),
    ("deep body", "POST", CREATE, INSTRUCTOR, raw(DEEP)),
    (
        "huge int capacity",
        "POST",
        CREATE,
        INSTRUCTOR,
        raw('{"title": "x", "capacity": 1' + "0" * 30 + "}"),
    ),
    (
        "huge int position",
        "POST",
        CREATE,
        INSTRUCTOR,
        raw(
            '{"title": "x", "modules": [{"title": "m", "position": 1'
            + "0" * 30
            + ', "items": []}]}'
        ),
    ),
    (
        "huge int in if-match",
        "PUT",
        UPDATE,
        {**INSTRUCTOR, "If-Match": '"99999999999999999999999"'},
        raw('{"title": "x"}'),
    ),
    (
        "huge int size",
        "POST",
        UPLOADS,
        INSTRUCTOR,
        raw(
            '{"filename": "a.pdf", "content_type": "application/pdf", "size_bytes": 1'
            + "0" * 40
            + "}"
        ),
    ),
    (
        "huge score",
        "POST",
        PROGRESS,
        STUDENT,
        raw('{"item_id": "i", "status": "completed", "score": 1e400}'),
    ),
    ("huge stars", "POST", RATINGS, STUDENT, raw('{"stars": 1' + "0" * 40 + "}")),
    (
        "NaN",
        "POST",
        PROGRESS,
        STUDENT,
        raw('{"item_id": "i", "status": "completed", "score": NaN}'),
    ),
    (
        "Infinity",
        "POST",
        PROGRESS,
        STUDENT,
        raw('{"item_id": "i", "status": "completed", "score": Infinity}'),
    ),
    ("invalid UTF-8", "POST", CREATE, INSTRUCTOR, raw(b'{"title": "\xff\xfe"}')),
    ("lone surrogate", "POST", CREATE, INSTRUCTOR, raw('{"title": "a\\ud800b"}')),
    ("lone surrogate key", "POST", CREATE, INSTRUCTOR, raw('{"title": "a", "\\udfff": 1}')),
    ("NUL in title", "POST", CREATE, INSTRUCTOR, raw('{"title": "a\\u0000b"}')),
    ("NUL in a query", "GET", "/api/v1/courses?q=a%00b", {}, {}),
    ("NUL in a cursor", "GET", "/api/v1/courses?cursor=%00", {}, {}),
    ("huge query string", "GET", "/api/v1/courses?q=" + "a" * 20000, {}, {}),
    ("many query words", "GET", "/api/v1/courses?q=" + "+".join(["w"] * 3000), {}, {}),
    (
        "text/plain body",
        "POST",
        CREATE,
        {**INSTRUCTOR, "Content-Type": "text/plain"},
        {"data": b'{"title": "x"}'},
    ),
    (
        "form body",
        "POST",
        CREATE,
        {**INSTRUCTOR, "Content-Type": "application/x-www-form-urlencoded"},
        {"data": b"title=x"},
    ),
    ("duplicate keys", "POST", CREATE, INSTRUCTOR, raw('{"title": "x", "title": "y"}')),
    (
        "duplicate nested keys",
        "POST",
        CREATE,
        INSTRUCTOR,
        raw(
            '{"title": "x", "modules": [{"title": "m", "title": "n", "position": 0, "items": []}]}'
        ),
    ),
    ("limit beyond 64 bits", "GET", "/api/v1/courses?limit=99999999999999999999999", {}, {}),
    (
        "enrollment limit beyond 64 bits",
        "GET",
        f"/api/v1/courses/{COURSE_ID}/enrollments?limit=1" + "0" * 30,
        SERVICE,
        {},
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "path", "headers", "kwargs"), CASES, ids=[c[0] for c in CASES]
)
async def test_hostile_input_gets_a_4xx_problem(
    api: Api, name: str, method: str, path: str, headers: dict[str, str], kwargs: dict[str, Any]
) -> None:
    api.reads.courses[COURSE_ID] = course()
    for kind in ("create_course", "update_course", "rate_course"):
        api.writes.replies[kind] = Reply("applied", course())
    api.writes.replies["progress"] = Reply("applied", {"completed_items": 0})
    sent = {**headers}
    if "data" in kwargs and "Content-Type" not in sent:
        sent.update(JSON)
    status, body, response = await api.call(method, path, headers=sent, **kwargs)
    assert 400 <= status < 500, (name, status, body)
    assert response.content_type == PROBLEM, (name, response.content_type)
    assert json.dumps(body)  # a document, not text


async def test_huge_headers_are_a_431_problem(api: Api) -> None:
    status, body, response = await api.call(
        "GET", f"/api/v1/courses/{COURSE_ID}", headers={"X-Big": "a" * 20000}
    )
    assert status == 431 and response.content_type == PROBLEM, (status, body)


async def test_control_characters_never_reach_a_response_header(api: Api) -> None:
    """Found by the fuzzer: a user id with a control character made the enrol answer's
    `Location` header unwritable (the connection was dropped)."""
    from tests.unit.test_api_in_process import bearer

    enrolled = {"course_id": COURSE_ID, "user_id": "x", "status": "active"}
    api.writes.replies["enroll"] = Reply("created", enrolled)
    admin = bearer("admin-1", "admin")
    status, body, _ = await api.call(
        "POST",
        f"/api/v1/courses/{COURSE_ID}/enroll",
        json={"user_id": "\u00f7\u001ev"},
        headers=admin,
    )
    assert status == 422 and body["errors"][0]["field"] == "user_id"
    odd = bearer("student-\u00f7\u001e", "student")  # a token's sub is the issuer's text
    status, _, response = await api.call("POST", f"/api/v1/courses/{COURSE_ID}/enroll", headers=odd)
    assert status == 201
    assert response.headers["Location"].endswith("/enrollments/student-%C3%B7%1E")

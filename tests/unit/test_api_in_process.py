"""The HTTP edge in-process: the app factory over fake ports (tests/unit/api_fakes.py),
driven by aiohttp's test client. Routing, authentication, validation, problem+json, and
the mapping of domain outcomes and refusals to statuses. No server of any kind."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from course_management.api.app import create_app
from course_management.api.auth import TokenVerifier, issue_token
from course_management.api.middleware import SERVER_LIMITS
from course_management.api.ports import Unavailable
from course_management.domain import consistency
from course_management.domain.consistency import Marks
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind, Reply
from tests.unit.api_fakes import (
    FakeContent,
    FakeHistory,
    FakeLive,
    FakeReadiness,
    FakeReads,
    FakeWebhooks,
    FakeWrites,
)

SECRET = "in-process-secret-that-is-long-enough-0123456789"
COURSE_ID = str(uuid.uuid4())
PROBLEM = "application/problem+json"


def bearer(sub: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, sub, list(roles), name=sub)}"}


INSTRUCTOR = bearer("instructor-1", "instructor")
OTHER_INSTRUCTOR = bearer("instructor-2", "instructor")
STUDENT = bearer("student-1", "student")
SERVICE = bearer("content-delivery", "service")


def course(status: str = "published", owner: str = "instructor-1", version: int = 3) -> dict:
    now = datetime(2026, 12, 1, tzinfo=UTC).isoformat()
    return {
        "id": COURSE_ID,
        "title": "Streams",
        "description": "",
        "category": "data",
        "tags": [],
        "level": "beginner",
        "language": "en",
        "status": status,
        "instructor": {"id": owner, "name": owner},
        "capacity": None,
        "enrollment_opens_at": None,
        "enrollment_closes_at": None,
        "modules": [],
        "rating": {"average": None, "count": 0},
        "enrollment_count": 0,
        "version": version,
        "created_at": now,
        "updated_at": now,
    }


def refused(kind: RefusalKind, detail: str = "no") -> Reply:
    return Reply.refusing(Refusal(kind, detail))


@dataclass
class Api:
    client: TestClient
    writes: FakeWrites
    reads: FakeReads
    readiness: FakeReadiness
    history: FakeHistory
    live: FakeLive
    webhooks: FakeWebhooks

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
        response = await self.client.request(method, path, **kw)
        raw = await response.read()
        body = json.loads(raw) if raw and "json" in response.content_type else raw
        return response.status, body, response


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    writes, reads, readiness, history = FakeWrites(), FakeReads(), FakeReadiness(), FakeHistory()
    live, webhooks = FakeLive(), FakeWebhooks()
    app = create_app(
        writes=writes,
        reads=reads,
        history=history,
        live=live,
        webhooks=webhooks,
        readiness=readiness,
        verifier=TokenVerifier(secret=SECRET, public_key_pem=None, issuer=None, audience=None),
        content=FakeContent(),
        upload_limits={"multipart_threshold": 100 * 2**20, "part_size": 64 * 2**20},
    )
    server = TestServer(app)
    await server.start_server(**SERVER_LIMITS)  # as the worker's runner has them
    client = TestClient(server)
    await client.start_server()
    try:
        yield Api(client, writes, reads, readiness, history, live, webhooks)
    finally:
        await client.close()


# -- routing ---------------------------------------------------------------------------


async def test_an_unknown_route_is_a_404_problem(api: Api) -> None:
    status, body, response = await api.call("GET", "/api/v1/nothing-here")
    assert status == 404 and response.content_type == PROBLEM
    assert body["type"].endswith("/not-found") and body["status"] == 404
    assert response.headers["X-Request-ID"]


async def test_a_wrong_method_is_405_with_allow(api: Api) -> None:
    status, _, response = await api.call("DELETE", "/api/v1/courses/create")
    assert status == 405 and response.content_type == PROBLEM
    assert "POST" in response.headers["Allow"]


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.call("GET", "/healthz"))[:2] == (200, {"status": "ok"})
    assert (await api.call("GET", "/readyz"))[0] == 200
    api.readiness.checks["kafka"] = False
    status, body, _ = await api.call("GET", "/readyz")
    assert status == 503 and body == {"ready": False, "checks": {"kafka": False, "postgres": True}}


# -- authentication and roles ----------------------------------------------------------


async def test_a_write_without_a_token_is_401_with_www_authenticate(api: Api) -> None:
    status, _, response = await api.call("POST", "/api/v1/courses/create", json={"title": "x"})
    assert status == 401 and response.content_type == PROBLEM
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.writes.commands == []


async def test_a_badly_signed_token_is_401_invalid_token(api: Api) -> None:
    forged = issue_token("another-secret-that-is-long-enough-0123456789", "x", ["admin"])
    status, _, response = await api.call(
        "POST",
        "/api/v1/courses/create",
        json={"title": "x"},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_a_student_may_not_create(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/api/v1/courses/create", json={"title": "x"}, headers=STUDENT
    )
    assert status == 403 and body["type"].endswith("/forbidden")
    assert api.writes.commands == []


async def test_anyone_reads_a_published_course_and_only_its_owner_a_draft(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course("published")
    status, body, response = await api.call("GET", f"/api/v1/courses/{COURSE_ID}")
    assert status == 200 and body["id"] == COURSE_ID and response.headers["ETag"] == '"3.0.0.0"'
    api.reads.courses[COURSE_ID] = course("draft")
    assert (await api.call("GET", f"/api/v1/courses/{COURSE_ID}"))[0] == 404
    other = await api.call("GET", f"/api/v1/courses/{COURSE_ID}", headers=OTHER_INSTRUCTOR)
    assert other[0] == 404
    owner = await api.call("GET", f"/api/v1/courses/{COURSE_ID}", headers=INSTRUCTOR)
    assert owner[0] == 200


def with_content() -> dict:
    item = {
        "id": "i-1",
        "type": "lesson",
        "title": "Intro",
        "position": 0,
        "content_key": f"courses/{COURSE_ID}/intro.mp4",
        "duration_seconds": 60,
        "max_score": None,
    }
    module = {"id": "m-1", "title": "M", "position": 0, "items": [item]}
    return {**course(), "modules": [module]}


@pytest.mark.parametrize(
    ("who", "shown"),
    [
        ({}, False),
        (STUDENT, False),
        (OTHER_INSTRUCTOR, False),
        (INSTRUCTOR, True),  # the owner
        (SERVICE, True),  # Content Delivery
        (bearer("admin-1", "admin"), True),
    ],
)
async def test_content_keys_are_shown_to_editors_and_services_only(
    api: Api, who: dict[str, str], shown: bool
) -> None:
    """Issue 24, item 3: a content key names a stored object; anyone else gets null, on
    the course read and the modules read alike (with the same ETag, `Vary: Authorization`)."""
    api.reads.courses[COURSE_ID] = with_content()
    key = f"courses/{COURSE_ID}/intro.mp4"
    for path in (f"/api/v1/courses/{COURSE_ID}", f"/api/v1/courses/{COURSE_ID}/modules"):
        status, body, response = await api.call("GET", path, headers=who)
        assert status == 200, body
        [item] = body["modules"][0]["items"]
        assert item["content_key"] == (key if shown else None), path
        assert item["duration_seconds"] == 60
        assert response.headers["Vary"] == "Authorization"


async def test_if_none_match_answers_304(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course()
    status, _, response = await api.call(
        "GET", f"/api/v1/courses/{COURSE_ID}", headers={"If-None-Match": '"3.0.0.0"'}
    )
    assert status == 304 and response.headers["ETag"] == '"3.0.0.0"'


async def test_the_modules_read_has_the_course_etag_and_answers_304(api: Api) -> None:
    """Issue 24, item 9: `GET .../modules` sent `"3"` where the course sends `"3.0"`, and
    ignored If-None-Match."""
    api.reads.courses[COURSE_ID] = course()
    path = f"/api/v1/courses/{COURSE_ID}/modules"
    status, body, response = await api.call("GET", path)
    assert status == 200 and body["version"] == 3
    assert response.headers["ETag"] == '"3.0.0.0"'
    status, _, response = await api.call("GET", path, headers={"If-None-Match": '"3.0.0.0"'})
    assert status == 304 and response.headers["ETag"] == '"3.0.0.0"'
    assert (await api.call("GET", path, headers={"If-None-Match": '"2.0.0.0"'}))[0] == 200


async def test_the_etag_changes_with_the_seat_count_and_if_match_takes_it(api: Api) -> None:
    """Issue 11, finding 3: an enrolment changes `enrollment_count` without a new version;
    a GET with the old ETag must not answer 304."""
    api.reads.courses[COURSE_ID] = course()
    _, _, first = await api.call("GET", f"/api/v1/courses/{COURSE_ID}")
    api.reads.courses[COURSE_ID] = {**course(), "enrollment_count": 1}
    status, body, second = await api.call(
        "GET", f"/api/v1/courses/{COURSE_ID}", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert status == 200 and body["enrollment_count"] == 1
    assert second.headers["ETag"] != first.headers["ETag"]
    # An update based on that read: its If-Match is the read's ETag; the version decides.
    api.writes.replies["update_course"] = Reply("applied", {**course(), "version": 4})
    await api.call(
        "PUT",
        f"/api/v1/courses/{COURSE_ID}/update",
        json={"title": "Renamed"},
        headers={**INSTRUCTOR, "If-Match": second.headers["ETag"]},
    )
    assert api.writes.commands[-1].expected_version == 3


async def test_a_write_answer_carries_its_consistency_token_and_reads_take_it_back(
    api: Api,
) -> None:
    token = consistency.encode(Marks(course=(COURSE_ID, 4), catalog=(COURSE_ID, 9)))
    api.writes.replies["update_course"] = Reply("applied", {**course(), "version": 4}, token)
    _, _, response = await api.call(
        "PUT", f"/api/v1/courses/{COURSE_ID}/update", json={"title": "T"}, headers=INSTRUCTOR
    )
    assert response.headers["Consistency-Token"] == token
    api.reads.courses[COURSE_ID] = course()
    await api.call("GET", f"/api/v1/courses/{COURSE_ID}", headers={"Consistency-Token": token})
    await api.call("GET", "/api/v1/courses", headers={"Consistency-Token": token})
    assert api.reads.seen_marks[-2:] == [consistency.decode(token)] * 2


async def test_a_malformed_consistency_token_is_a_400_naming_the_header(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course()
    for bad in ("not-a-token", "eyJmIjoyfQ", "e30", "x" * 5000):
        status, body, _ = await api.call(
            "GET", f"/api/v1/courses/{COURSE_ID}", headers={"Consistency-Token": bad}
        )
        assert status == 400, bad
        assert body["errors"][0]["field"] == "Consistency-Token"


# -- validation and problems -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "status", "slug"),
    [
        (b'{"title": ', "application/json", 400, "malformed-json"),
        (b"[1, 2]", "application/json", 400, "malformed-json"),
        (b"title=x", "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
        (b'{"title": "x", "version": 9}', "application/json", 422, "validation"),
    ],
    ids=["truncated", "not-an-object", "form", "server-owned-field"],
)
async def test_malformed_bodies_get_a_problem_naming_why(
    api: Api, data: bytes, content_type: str, status: int, slug: str
) -> None:
    got, body, response = await api.call(
        "POST",
        "/api/v1/courses/create",
        data=data,
        headers={**INSTRUCTOR, "Content-Type": content_type},
    )
    assert got == status and response.content_type == PROBLEM
    assert body["type"].endswith(f"/{slug}") and body["status"] == status
    if slug == "validation":
        assert body["errors"] == [{"field": "version", "message": "unknown field (not writable)"}]
    assert api.writes.commands == []


async def test_a_body_over_1_mib_is_413(api: Api) -> None:
    body = json.dumps({"title": "x", "description": "d" * (1024 * 1024)})
    status, problem, _ = await api.call(
        "POST",
        "/api/v1/courses/create",
        data=body,
        headers={**INSTRUCTOR, "Content-Type": "application/json"},
    )
    assert status == 413 and problem["type"].endswith("/body-too-large")


async def test_a_malformed_if_match_is_400(api: Api) -> None:
    status, body, _ = await api.call(
        "PUT",
        f"/api/v1/courses/{COURSE_ID}/update",
        json={"title": "y"},
        headers={**INSTRUCTOR, "If-Match": "yesterday"},
    )
    assert status == 400 and body["type"].endswith("/bad-if-match")


async def test_a_bad_catalog_parameter_is_422_naming_it(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/v1/courses?limit=0")
    assert status == 422 and [e["field"] for e in body["errors"]] == ["limit"]
    assert api.reads.queries == []


# -- outcomes and refusals become statuses ----------------------------------------------


async def test_a_create_is_201_with_location_and_etag_and_carries_the_caller(api: Api) -> None:
    api.writes.replies["create_course"] = Reply(Outcome.CREATED, course(version=1))
    status, body, response = await api.call(
        "POST", "/api/v1/courses/create", json={"title": "Streams"}, headers=INSTRUCTOR
    )
    assert status == 201 and body["version"] == 1
    assert response.headers["ETag"] == '"1.0.0.0"'
    [command] = api.writes.commands
    assert response.headers["Location"] == f"/api/v1/courses/{command.course_id}"
    assert command.actor.id == "instructor-1" and command.payload == {"title": "Streams"}


async def test_an_update_sends_if_match_and_maps_refusals(api: Api) -> None:
    path = f"/api/v1/courses/{COURSE_ID}/update"
    for kind, status in [
        (RefusalKind.VERSION_MISMATCH, 412),
        (RefusalKind.NOT_COURSE_OWNER, 403),
        (RefusalKind.COURSE_NOT_FOUND, 404),
    ]:
        api.writes.replies["update_course"] = refused(kind, "because")
        got, body, response = await api.call(
            "PUT", path, json={"title": "y"}, headers={**INSTRUCTOR, "If-Match": '"2"'}
        )
        assert got == status and response.content_type == PROBLEM
        assert body["type"].endswith(f"/{kind.value}") and body["detail"] == "because"
    assert {c.expected_version for c in api.writes.commands} == {2}


async def test_a_refused_validation_names_its_fields(api: Api) -> None:
    refusal = Refusal(
        RefusalKind.INVALID, "invalid fields: title", ({"field": "title", "message": "too long"},)
    )
    api.writes.replies["update_course"] = Reply.refusing(refusal)
    status, body, _ = await api.call(
        "PUT", f"/api/v1/courses/{COURSE_ID}/update", json={"title": "y"}, headers=INSTRUCTOR
    )
    assert status == 422 and body["errors"] == [{"field": "title", "message": "too long"}]
    assert body["title"] == "Unprocessable Content"


async def test_enroll_is_201_new_200_again_409_full(api: Api) -> None:
    path = f"/api/v1/courses/{COURSE_ID}/enroll"
    enrollment = {"course_id": COURSE_ID, "user_id": "student-1", "status": "active"}
    api.writes.replies["enroll"] = Reply(Outcome.CREATED, enrollment)
    assert (await api.call("POST", path, headers=STUDENT))[0] == 201
    api.writes.replies["enroll"] = Reply(Outcome.UNCHANGED, enrollment)
    status, body, response = await api.call("POST", path, headers=STUDENT)
    assert status == 200 and body == enrollment
    assert response.headers["Location"] == f"/api/v1/courses/{COURSE_ID}/enrollments/student-1"
    api.writes.replies["enroll"] = refused(RefusalKind.COURSE_FULL)
    status, body, _ = await api.call("POST", path, headers=STUDENT)
    assert status == 409 and body["type"].endswith("/course-full")


async def test_a_service_must_name_the_user_it_enrolls(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", f"/api/v1/courses/{COURSE_ID}/enroll", json={}, headers=SERVICE
    )
    assert status == 422 and body["errors"][0]["field"] == "user_id"
    assert api.writes.inputs == []


async def test_not_enrolled_is_404_to_progress_and_to_cancel(api: Api) -> None:
    """One rule (issue 24, item 4): the enrolment does not exist, on every route."""
    api.reads.courses[COURSE_ID] = course()
    api.writes.replies["progress"] = refused(RefusalKind.NOT_ENROLLED)
    api.writes.replies["cancel_enrollment"] = refused(RefusalKind.NOT_ENROLLED)
    progress = await api.call(
        "POST",
        f"/api/v1/courses/{COURSE_ID}/progress",
        json={"item_id": "i1", "status": "completed"},
        headers=STUDENT,
    )
    assert progress[0] == 404 and progress[1]["type"].endswith("/not-enrolled")
    cancel = await api.call(
        "DELETE", f"/api/v1/courses/{COURSE_ID}/enrollments/student-1", headers=STUDENT
    )
    assert cancel[0] == 404 and cancel[1]["type"].endswith("/not-enrolled")


async def test_a_delete_is_204_without_a_body(api: Api) -> None:
    api.writes.replies["delete_course"] = Reply(Outcome.REMOVED, None)
    status, body, _ = await api.call(
        "DELETE", f"/api/v1/courses/{COURSE_ID}/delete", headers=INSTRUCTOR
    )
    assert status == 204 and body == b""


async def test_an_unavailable_kafka_is_503_with_its_type(api: Api) -> None:
    api.writes.replies["create_course"] = Unavailable("kafka-unavailable", "retry later")
    status, body, response = await api.call(
        "POST", "/api/v1/courses/create", json={"title": "x"}, headers=INSTRUCTOR
    )
    assert status == 503 and response.content_type == PROBLEM
    assert body["type"].endswith("/kafka-unavailable") and body["detail"] == "retry later"


async def test_an_unreachable_store_is_503_with_retry_after(api: Api) -> None:
    api.reads.failure = ConnectionRefusedError("connection refused")
    status, body, response = await api.call("GET", f"/api/v1/courses/{COURSE_ID}")
    assert status == 503 and body["type"].endswith("/unavailable")
    assert response.headers["Retry-After"] == "1"


async def test_a_bug_is_500_problem_and_never_leaks_the_error(api: Api) -> None:
    api.reads.failure = ZeroDivisionError("secret detail")
    status, body, response = await api.call("GET", f"/api/v1/courses/{COURSE_ID}")
    assert status == 500 and response.content_type == PROBLEM
    assert "secret" not in json.dumps(body)


async def test_the_catalog_passes_the_parsed_query(api: Api) -> None:
    status, body, response = await api.call("GET", "/api/v1/courses?q=Kafka+streams&level=beginner")
    assert status == 200 and body == api.reads.catalog_page
    [query] = api.reads.queries
    assert query.terms == ("kafka", "streams") and query.filters == {"level": "beginner"}
    assert response.headers["Cache-Control"] == "public, max-age=5"


async def test_enrollments_are_visible_to_the_student_and_not_to_another(api: Api) -> None:
    enrollment = {"course_id": COURSE_ID, "user_id": "student-1", "status": "active"}
    api.reads.enrollments[(COURSE_ID, "student-1")] = enrollment
    api.reads.courses[COURSE_ID] = course()
    path = f"/api/v1/courses/{COURSE_ID}/enrollments/student-1"
    assert (await api.call("GET", path, headers=STUDENT))[:2] == (200, enrollment)
    assert (await api.call("GET", path, headers=bearer("student-2", "student")))[0] == 403
    assert (await api.call("GET", path, headers=INSTRUCTOR))[0] == 200  # the owner
    assert (await api.call("GET", path, headers=SERVICE))[0] == 200


# -- request headers (issue 24, item 6) ------------------------------------------------


async def _raw(api: Api, head: bytes) -> tuple[int, dict[str, Any]]:
    """A request as raw bytes (a client library would refuse or re-encode these headers):
    its status and problem body."""
    import asyncio

    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head + b"Host: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    body = answer.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(body) if body.startswith(b"{") else {}


@pytest.mark.parametrize(
    "header",
    [
        b"X-Request-ID: r-\xe9",  # latin-1, as some clients send it
        b"X-Request-ID: r-\xc3\xa9",  # UTF-8
        b"Authorization: Bearer \xe9",
        b"Idempotency-Key: k-\xe9",
        b'If-Match: "1\xe9"',
        b"Consistency-Token: \xe9",
    ],
)
async def test_a_header_with_a_byte_outside_ascii_is_a_400_naming_it(
    api: Api, header: bytes
) -> None:
    name = header.split(b":", 1)[0].decode()
    for head in (
        b"GET /api/v1/courses HTTP/1.1\r\n" + header + b"\r\n",
        b"POST /api/v1/courses/create HTTP/1.1\r\nContent-Length: 0\r\n" + header + b"\r\n",
    ):
        status, body = await _raw(api, head)
        assert status == 400, (head, body)
        assert body["type"].endswith("/invalid-header")
        assert [e["field"] for e in body["errors"]] == [name]
    assert api.writes.commands == [] and api.writes.inputs == []


async def test_a_write_with_a_non_ascii_request_id_is_refused_not_applied(api: Api) -> None:
    headers = {**INSTRUCTOR, "X-Request-ID": "r-é", "Idempotency-Key": "k-é"}
    status, body, response = await api.call(
        "POST", "/api/v1/courses/create", json={"title": "x"}, headers=headers
    )
    assert status == 400
    assert sorted(e["field"] for e in body["errors"]) == ["Idempotency-Key", "X-Request-ID"]
    assert response.headers["X-Request-ID"] != "r-é"  # a fresh one, echoed
    assert api.writes.commands == []


async def test_a_rating_is_listed_with_the_timestamp_format_of_its_post(api: Api) -> None:
    """Issue 24, item 11: the list wrote `isoformat()` (microseconds, or none when zero)
    where the POST reply writes milliseconds and Z."""
    api.reads.courses[COURSE_ID] = course()
    api.reads.ratings[COURSE_ID] = [
        {
            "user_id": "a",
            "stars": 5,
            "review": None,
            "rated_at": datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC),
        },
        {
            "user_id": "b",
            "stars": 4,
            "review": "ok",
            "rated_at": datetime(2026, 12, 6, 1, 2, 3, tzinfo=UTC),
        },
    ]
    status, body, _ = await api.call("GET", f"/api/v1/courses/{COURSE_ID}/ratings")
    assert status == 200
    assert [r["rated_at"] for r in body["items"]] == [
        "2026-12-06T01:02:03.456Z",
        "2026-12-06T01:02:03.000Z",
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "t", "capacity": True}, "capacity"),  # was a course of one seat
        ({"title": "t", "capacity": "5"}, "capacity"),
        ({"title": "t", "capacity": 5.5}, "capacity"),
        ({"title": "t", "enrollment_opens_at": "2027-01-01T00:00:00"}, "enrollment_opens_at"),
        ({"title": 7}, "title"),
        (
            {
                "title": "t",
                "modules": [
                    {"title": "m", "position": True, "items": []},
                ],
            },
            "modules[0].position",
        ),
    ],
)
async def test_values_are_not_coerced_into_another_type(
    api: Api, body: dict[str, Any], field: str
) -> None:
    """Issue 24, item 16: strict types, and RFC 3339 timestamps carry their offset."""
    status, problem, _ = await api.call(
        "POST", "/api/v1/courses/create", json=body, headers=INSTRUCTOR
    )
    assert status == 422, problem
    assert field in [e["field"] for e in problem["errors"]]
    assert api.writes.commands == []


async def test_a_timestamp_with_its_offset_is_taken(api: Api) -> None:
    api.writes.replies["create_course"] = Reply("created", course())
    body = {"title": "t", "capacity": 5, "enrollment_opens_at": "2027-01-01T01:00:00+01:00"}
    status, _, _ = await api.call("POST", "/api/v1/courses/create", json=body, headers=INSTRUCTOR)
    assert status == 201
    opens = api.writes.commands[-1].payload["enrollment_opens_at"]
    assert datetime.fromisoformat(opens) == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("path", "query", "kind", "named"),
    [
        ("/api/v1/courses", "categroy=x", "unknown-parameter", ["categroy"]),
        ("/api/v1/courses", "category=a&category=b", "repeated-parameter", ["category"]),
        ("/api/v1/courses", "limit=5&limit=6", "repeated-parameter", ["limit"]),
        (f"/api/v1/courses/{COURSE_ID}/enrollments", "limt=5", "unknown-parameter", ["limt"]),
        (
            f"/api/v1/courses/{COURSE_ID}/ratings",
            "cursor=a&cursor=b",
            "repeated-parameter",
            ["cursor"],
        ),
        (f"/api/v1/courses/{COURSE_ID}", "verbose=1", "unknown-parameter", ["verbose"]),
    ],
)
async def test_an_unknown_or_repeated_query_parameter_is_a_400_naming_it(
    api: Api, path: str, query: str, kind: str, named: list[str]
) -> None:
    """Issue 24, item 2: they were ignored (or the first value taken) and answered 200."""
    api.reads.courses[COURSE_ID] = course()
    status, body, _ = await api.call("GET", f"{path}?{query}", headers=SERVICE)
    assert status == 400, body
    assert body["type"].endswith(f"/{kind}")
    assert [e["field"] for e in body["errors"]] == named


async def test_a_query_past_what_search_takes_is_a_422_naming_q(api: Api) -> None:
    many = " ".join(f"w{n}" for n in range(33))
    long = "x" * 65
    for q in (many, long):
        status, body, _ = await api.call("GET", "/api/v1/courses", params={"q": q})
        assert status == 422, body
        assert [e["field"] for e in body["errors"]] == ["q"]
    within = " ".join(f"w{n}" for n in range(31)) + " " + "y" * 64
    assert (await api.call("GET", "/api/v1/courses", params={"q": within}))[0] == 200


async def test_a_draft_is_not_there_for_whoever_may_not_see_it_on_any_route(api: Api) -> None:
    """Issue 24, item 4: enrolling in a draft answered 409 `course-not-published` where a
    read answered 404: a student could probe for drafts."""
    api.reads.courses[COURSE_ID] = course("draft")
    api.writes.replies["enroll"] = refused(RefusalKind.COURSE_NOT_PUBLISHED)
    api.writes.replies["progress"] = refused(RefusalKind.NOT_ENROLLED)
    api.writes.replies["rate_course"] = refused(RefusalKind.NOT_ENROLLED)
    answers = [
        await api.call("POST", f"/api/v1/courses/{COURSE_ID}/enroll", headers=STUDENT),
        await api.call(
            "POST",
            f"/api/v1/courses/{COURSE_ID}/progress",
            json={"item_id": "i1", "status": "completed"},
            headers=STUDENT,
        ),
        await api.call(
            "POST", f"/api/v1/courses/{COURSE_ID}/ratings", json={"stars": 4}, headers=STUDENT
        ),
        await api.call("GET", f"/api/v1/courses/{COURSE_ID}"),
    ]
    assert [(a[0], a[1]["type"].rsplit("/", 1)[-1]) for a in answers] == [
        (404, "course-not-found")
    ] * 4
    # an admin, who may see the draft, is told why
    admin = bearer("admin-1", "admin")
    status, body, _ = await api.call(
        "POST",
        f"/api/v1/courses/{COURSE_ID}/enroll",
        json={"user_id": "student-1"},
        headers=admin,
    )
    assert status == 409 and body["type"].endswith("/course-not-published")


async def test_not_the_owner_is_one_problem_type_on_writes_and_enrolment_reads(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course()
    listing = await api.call(
        "GET", f"/api/v1/courses/{COURSE_ID}/enrollments", headers=OTHER_INSTRUCTOR
    )
    assert listing[0] == 403 and listing[1]["type"].endswith("/not-course-owner")


async def test_listing_the_enrolments_of_an_unknown_course_is_404_to_everyone(api: Api) -> None:
    """Issue 24, item 10: an admin or a service got `200 []` where an owner got 404."""
    path = f"/api/v1/courses/{uuid.uuid4()}/enrollments"
    for headers in (SERVICE, bearer("admin-1", "admin"), INSTRUCTOR):
        status, body, _ = await api.call("GET", path, headers=headers)
        assert status == 404 and body["type"].endswith("/course-not-found"), headers
    api.reads.courses[COURSE_ID] = course("draft")  # a draft's: services read them too
    listing = await api.call("GET", f"/api/v1/courses/{COURSE_ID}/enrollments", headers=SERVICE)
    assert listing[0] == 200


async def test_the_asyncapi_document_is_served_beside_the_openapi_one(api: Api) -> None:
    """Issue 24, item 15 (its validity: tests/unit/test_asyncapi.py)."""
    from course_management.api.asyncapi import asyncapi_document

    status, body, response = await api.call("GET", "/asyncapi.json")
    assert status == 200 and response.content_type == "application/json"
    assert body["asyncapi"] == "3.0.0"
    expected = json.loads(json.dumps(asyncapi_document(body["info"]["version"]), default=str))
    assert body == expected


async def test_an_update_takes_nested_timestamps_under_strict_validation(api: Api) -> None:
    """A before-validator on `modules` handed its items on as Python objects, which the
    strict validation of the JSON text then refused (`due_at` as a string)."""
    api.reads.courses[COURSE_ID] = course()
    api.writes.replies["update_course"] = Reply("applied", {**course(), "version": 4})
    item = {
        "type": "assignment",
        "title": "Do it",
        "position": 0,
        "max_score": 20,
        "due_at": "2027-01-31T23:59:00Z",
    }
    body = {"modules": [{"title": "M", "position": 0, "items": [item]}]}
    status, problem, _ = await api.call(
        "PUT", f"/api/v1/courses/{COURSE_ID}/update", json=body, headers=INSTRUCTOR
    )
    assert status == 200, problem
    refused = await api.call(
        "PUT", f"/api/v1/courses/{COURSE_ID}/update", json={"title": None}, headers=INSTRUCTOR
    )
    assert refused[0] == 422 and refused[1]["errors"][0]["field"] == "title"


# -- history and past versions (issue 27) ----------------------------------------------


async def test_a_version_that_is_not_1_to_2_31_is_a_400_naming_version(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course("published")
    for bad in ("0", "-3", "x", "1e3", "", "2147483648", "12345678901"):
        status, body, response = await api.call("GET", f"/api/v1/courses/{COURSE_ID}?version={bad}")
        assert status == 400 and response.content_type == PROBLEM, bad
        assert body["type"].endswith("/bad-version")
        assert body["errors"][0]["field"] == "version"


async def test_a_version_past_the_current_one_is_a_404(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course("published", version=3)
    status, body, _ = await api.call("GET", f"/api/v1/courses/{COURSE_ID}?version=4")
    assert status == 404 and body["type"].endswith("/version-not-found")


async def test_a_past_version_is_served_as_stored_to_an_editor_and_without_keys_to_others(
    api: Api,
) -> None:
    api.reads.courses[COURSE_ID] = course("published", version=3)
    old = {**course("published", version=2), "modules": [
        {"id": "m", "title": "M", "position": 0, "items": [
            {"id": "i", "type": "lesson", "title": "L", "position": 0, "content_key": "k/1"}
        ]}
    ]}  # fmt: skip
    stored = json.dumps(old, separators=(",", ":"))
    api.history.versions[(COURSE_ID, 2)] = stored
    response = await api.client.get(f"/api/v1/courses/{COURSE_ID}?version=2", headers=INSTRUCTOR)
    assert response.status == 200 and (await response.read()).decode() == stored
    status, body, _ = await api.call("GET", f"/api/v1/courses/{COURSE_ID}/modules?version=2")
    assert status == 200 and body["version"] == 2
    assert body["modules"][0]["items"][0]["content_key"] is None
    api.history.versions[(COURSE_ID, 3)] = None  # the deletion
    status, body, _ = await api.call("GET", f"/api/v1/courses/{COURSE_ID}?version=3")
    assert status == 404 and body["type"].endswith("/version-not-found")


async def test_a_course_s_history_is_for_those_who_author_it(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course("published")
    api.history.courses[COURSE_ID] = [
        {
            "version": v,
            "event_type": "course_updated",
            "actor_id": "instructor-1",
            "occurred_at": datetime(2026, 12, 6, tzinfo=UTC),
            "request_id": f"r-{v}",
            "changes": json.dumps([{"path": "title", "old": str(v - 1), "new": str(v)}]),
        }
        for v in (1, 2, 3)
    ]
    path = f"/api/v1/courses/{COURSE_ID}/history"
    status, body, _ = await api.call("GET", path + "?limit=2", headers=INSTRUCTOR)
    assert status == 200
    assert [e["version"] for e in body["items"]] == [3, 2]
    assert body["items"][0]["changes"] == [{"path": "title", "old": "2", "new": "3"}]
    status, rest, _ = await api.call(
        "GET", path + f"?limit=2&cursor={body['next_cursor']}", headers=INSTRUCTOR
    )
    assert [e["version"] for e in rest["items"]] == [1] and rest["next_cursor"] is None
    for headers, expected in ((STUDENT, 403), (OTHER_INSTRUCTOR, 403), ({}, 401)):
        status, _, _ = await api.call("GET", path, headers=headers)
        assert status == expected
    status, body, _ = await api.call("GET", path + "?cursor=bm9wZQ", headers=INSTRUCTOR)
    assert status == 422 and body["errors"][0]["field"] == "cursor"


# -- live streams (issue 28) -----------------------------------------------------------


async def test_a_stream_sends_each_event_with_its_id_and_type(api: Api) -> None:
    from types import SimpleNamespace

    from course_management.domain.stream_ids import StreamPosition, scope_of

    api.reads.courses[COURSE_ID] = course("published")
    scope = scope_of(COURSE_ID)
    api.live.given = [
        (
            SimpleNamespace(event_type="course_updated", data=b'{"version": 4}'),
            StreamPosition(scope, (8, 0, 0)),
        )
    ]
    response = await api.client.get(f"/api/v1/courses/{COURSE_ID}/events", headers=INSTRUCTOR)
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    text = (await response.read()).decode()
    assert f"id: {scope}.8.0.0" in text
    assert "event: course_updated" in text and 'data: {"version": 4}' in text


async def test_a_stream_refuses_a_bad_start_naming_it(api: Api) -> None:
    from course_management.domain.stream_ids import StreamPosition, scope_of

    api.reads.courses[COURSE_ID] = course("published")
    path = f"/api/v1/courses/{COURSE_ID}/events"
    other = StreamPosition(scope_of(str(uuid.uuid4())), (1, 2, 3)).encode()
    for headers, field in (
        ({"Last-Event-ID": "garbage"}, "Last-Event-ID"),
        ({"Last-Event-ID": other}, "Last-Event-ID"),
    ):
        status, body, _ = await api.call("GET", path, headers={**INSTRUCTOR, **headers})
        assert status == 400 and body["errors"][0]["field"] == field
    for since in ("yesterday", "2126-01-01T00:00:00Z", "2026-12-01T00:00:00"):
        status, body, _ = await api.call("GET", f"{path}?since={since}", headers=INSTRUCTOR)
        assert status == 400 and body["errors"][0]["field"] == "since", since
    assert api.live.opened == []


async def test_a_course_stream_is_for_its_owner_and_staff_admins_and_services(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course("published")
    path = f"/api/v1/courses/{COURSE_ID}/events"
    for headers, expected in ((STUDENT, 403), (OTHER_INSTRUCTOR, 403), ({}, 401), (SERVICE, 200)):
        status, _, _ = await api.call("GET", path, headers=headers)
        assert status == expected
    learner = f"/api/v1/courses/{COURSE_ID}/enrollments/student-1/events"
    assert (await api.call("GET", learner, headers=STUDENT))[0] == 200
    assert (await api.call("GET", learner, headers=bearer("student-2", "student")))[0] == 403


async def test_over_the_stream_limit_a_stream_is_a_503_with_retry_after(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course("published")
    api.live.full = True
    status, body, response = await api.call(
        "GET", f"/api/v1/courses/{COURSE_ID}/events", headers=INSTRUCTOR
    )
    assert status == 503 and body["type"].endswith("/too-many-streams")
    assert response.headers["Retry-After"]


# -- webhooks (issue 28) ---------------------------------------------------------------

HOOK = {"url": "https://127.0.0.1:9443/hook", "event_types": ["course_updated"]}


async def test_a_webhook_is_made_by_admins_and_services_with_its_secret_once(api: Api) -> None:
    status, body, response = await api.call("POST", "/api/v1/webhooks", json=HOOK, headers=SERVICE)
    assert status == 201 and body["secret"].startswith("whsec_")
    assert response.headers["Location"] == f"/api/v1/webhooks/{body['id']}"
    for headers, expected in ((STUDENT, 403), (INSTRUCTOR, 403), ({}, 401)):
        status, _, _ = await api.call("POST", "/api/v1/webhooks", json=HOOK, headers=headers)
        assert status == expected
    path = f"/api/v1/webhooks/{body['id']}"
    assert (await api.call("GET", path, headers=SERVICE))[0] == 200
    assert (await api.call("GET", path, headers=bearer("user-management", "service")))[0] == 404
    assert (await api.call("GET", path, headers=bearer("admin-1", "admin")))[0] == 200
    status, _, _ = await api.call(
        "POST", f"{path}/replay", json={"from": "2026-12-01T00:00:00Z"}, headers=SERVICE
    )
    assert status == 202 and api.webhooks.replays[0][0] == body["id"]
    assert (await api.call("DELETE", path, headers=SERVICE))[0] == 204
    assert (await api.call("GET", path, headers=SERVICE))[0] == 404


async def test_a_bad_webhook_is_a_422_naming_its_field_and_makes_nothing(api: Api) -> None:
    api.reads.courses[COURSE_ID] = course("published")
    cases = [
        ({**HOOK, "url": "http://10.0.0.1/"}, "url"),
        ({**HOOK, "url": "https://169.254.169.254/"}, "url"),
        ({**HOOK, "url": "https://[::ffff:a9fe:a9fe]/"}, "url"),
        ({**HOOK, "url": "https://192.168.1.1/"}, "url"),
        ({**HOOK, "url": "https://user:pw@127.0.0.1/"}, "url"),
        ({**HOOK, "url": "x" * 2001}, "url"),
        ({**HOOK, "url": "no scheme"}, "url"),
        ({**HOOK, "event_types": []}, "event_types"),
        ({**HOOK, "event_types": ["course_updated", "course_updated"]}, "event_types"),
        ({**HOOK, "event_types": ["everything"]}, "event_types"),
        ({**HOOK, "course_id": "no-such-course"}, "course_id"),
        ({**HOOK, "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        status, problem, _ = await api.call("POST", "/api/v1/webhooks", json=body, headers=SERVICE)
        assert status == 422, (body, problem)
        assert [e["field"] for e in problem["errors"]] == [field], (body, problem)
    assert api.webhooks.made == {}
    path = "/api/v1/webhooks/wh_none/replay"
    assert (await api.call("POST", path, json={"from": "x"}, headers=SERVICE))[0] == 404
    status, _, _ = await api.call(
        "POST", "/api/v1/webhooks", json={**HOOK, "course_id": COURSE_ID}, headers=SERVICE
    )
    assert status == 201
    made = next(iter(api.webhooks.made))
    for since in ("yesterday", "2026-12-01T00:00:00", 5):
        status, problem, _ = await api.call(
            "POST", f"/api/v1/webhooks/{made}/replay", json={"from": since}, headers=SERVICE
        )
        assert status == 422 and problem["errors"][0]["field"] == "from", since

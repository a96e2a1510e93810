"""Authentication, bad input and the operational routes, against the running worker."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt
import pytest

from tests.support import (
    JWT_AUDIENCE,
    JWT_ISSUER,
    JWT_SECRET,
    WorkerProcess,
    auth,
    eventually_async,
    token,
)

CREATE = "/api/v1/courses/create"
INSTRUCTOR = auth("instructor-1", "instructor")


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


BAD_TOKENS = {
    "expired": token("u1", "instructor", ttl_seconds=-300),
    "wrong-signature": jwt.encode(
        {
            "sub": "u1",
            "roles": ["instructor"],
            "exp": int(time.time()) + 300,
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
        },
        "some-other-secret-that-is-long-enough-000000",
        algorithm="HS256",
    ),
    "alg-none": jwt.encode(
        {
            "sub": "u1",
            "roles": ["instructor"],
            "exp": int(time.time()) + 300,
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
        },
        key=None,
        algorithm="none",
    ),
    "wrong-audience": token("u1", "instructor", audience="another-service"),
    "wrong-issuer": token("u1", "instructor", issuer="https://evil.example"),
    "malformed": "abc.def",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_tokens_get_401_with_www_authenticate(
    http: aiohttp.ClientSession, case: str
) -> None:
    response = await http.post(CREATE, json={"title": "x"}, headers=_bearer(BAD_TOKENS[case]))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.content_type == "application/problem+json"
    assert (await response.json())["status"] == 401


async def test_a_missing_token_gets_401(http: aiohttp.ClientSession) -> None:
    response = await http.post(CREATE, json={"title": "x"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_bad_token_on_a_public_route_is_still_refused(http: aiohttp.ClientSession) -> None:
    response = await http.get(
        "/api/v1/courses/00000000-0000-0000-0000-000000000000",
        headers=_bearer(BAD_TOKENS["expired"]),
    )
    assert response.status == 401


async def test_a_student_cannot_create(http: aiohttp.ClientSession) -> None:
    response = await http.post(CREATE, json={"title": "x"}, headers=auth("s1", "student"))
    assert response.status == 403
    assert (await response.json())["type"].endswith("/forbidden")


async def test_malformed_json_is_400(http: aiohttp.ClientSession) -> None:
    response = await http.post(
        CREATE, data=b'{"title": ', headers={**INSTRUCTOR, "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert response.content_type == "application/problem+json"


async def test_a_json_array_is_400(http: aiohttp.ClientSession) -> None:
    response = await http.post(
        CREATE, data=b"[]", headers={**INSTRUCTOR, "Content-Type": "application/json"}
    )
    assert response.status == 400


async def test_a_wrong_content_type_is_415(http: aiohttp.ClientSession) -> None:
    response = await http.post(
        CREATE,
        data=b"title=x",
        headers={**INSTRUCTOR, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 415


async def test_a_body_over_one_mib_is_413(http: aiohttp.ClientSession) -> None:
    body = json.dumps({"title": "x", "description": "d" * (1024 * 1024 + 10)}).encode()
    response = await http.post(
        CREATE, data=body, headers={**INSTRUCTOR, "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert response.content_type == "application/problem+json"


def _modules(count: int, items: int) -> list[dict[str, object]]:
    lessons = [{"type": "lesson", "title": "t", "position": i} for i in range(items)]
    return [{"title": f"M{m}", "position": m, "items": lessons} for m in range(count)]


@pytest.mark.parametrize(
    ("modules", "who_refuses"),
    [
        # ~900 KB of JSON, under the 1 MiB body cap: refused before it becomes a command.
        (_modules(200, 60), "the API"),
        # ~140 KB of JSON whose course (ids, every field) is over 256 KiB: the agent.
        (_modules(20, 100), "the course agent"),
    ],
)
async def test_a_course_too_large_for_kafka_is_422_and_the_worker_goes_on(
    http: aiohttp.ClientSession,
    worker: WorkerProcess,
    modules: list[dict[str, object]],
    who_refuses: str,
) -> None:
    body = {"title": "Huge", "modules": modules}
    response = await http.post(CREATE, json=body, headers=INSTRUCTOR)
    assert response.status == 422, f"{who_refuses}: {(await response.text())[:300]}"
    assert [e["field"] for e in (await response.json())["errors"]] == ["modules"]
    # Before, the agent could not publish the event and the worker stopped (exit code 75),
    # again after every restart: the command stayed at the head of its partition.
    small = await http.post(CREATE, json={"title": "Small"}, headers=INSTRUCTOR)
    assert small.status == 201, await small.text()
    assert worker.proc is not None and worker.proc.poll() is None


async def test_unknown_and_server_owned_fields_are_422_naming_them(
    http: aiohttp.ClientSession,
) -> None:
    response = await http.post(
        CREATE, json={"title": "x", "id": "mine", "version": 9, "colour": "red"}, headers=INSTRUCTOR
    )
    assert response.status == 422
    problem = await response.json()
    assert {e["field"] for e in problem["errors"]} == {"id", "version", "colour"}


@pytest.mark.parametrize(
    "title",
    ["x" * 10_000, "🎓" * 50, "a\x00b", "'; DROP TABLE courses; --"],
    ids=["10k", "emoji", "nul", "sql"],
)
async def test_hostile_titles_are_stored_exactly_or_refused_cleanly(
    http: aiohttp.ClientSession, title: str
) -> None:
    response = await http.post(CREATE, json={"title": title}, headers=INSTRUCTOR)
    assert response.status in (201, 422)
    if response.status == 201:
        assert (await response.json())["title"] == title
    else:
        assert (await response.json())["errors"][0]["field"] == "title"


async def test_request_id_is_echoed_or_generated(http: aiohttp.ClientSession) -> None:
    echoed = await http.get("/healthz", headers={"X-Request-ID": "trace-me-123"})
    assert echoed.headers["X-Request-ID"] == "trace-me-123"
    generated = await http.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) >= 16


async def test_unknown_route_is_a_404_problem(http: aiohttp.ClientSession) -> None:
    response = await http.get("/api/v1/nothing-here")
    assert response.status == 404
    assert response.content_type == "application/problem+json"


async def test_openapi_document_is_served(http: aiohttp.ClientSession) -> None:
    response = await http.get("/openapi.json")
    doc = await response.json()
    assert doc["openapi"] == "3.1.0"
    assert "/api/v1/courses/create" in doc["paths"]


async def test_metrics_count_requests(http: aiohttp.ClientSession) -> None:
    await http.get("/healthz")
    text = await (await http.get("/metrics")).text()
    assert 'cms_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "cms_events_published_total" in text


async def test_consumer_lag_is_exported_per_partition(http: aiohttp.ClientSession) -> None:
    async def exported() -> bool:
        text = await (await http.get("/metrics")).text()
        return (
            'cms_consumer_lag{consumer="course-agent",partition="0",topic="course-commands"}'
            in text
            and 'consumer="course-management-router",partition="0",topic="user-enrolled"' in text
        )

    await eventually_async(exported, deadline_s=15, what="the lag gauge")


def test_jwt_secret_in_tests_is_the_workers() -> None:
    assert len(JWT_SECRET) >= 32


def test_the_worker_logs_json_lines(worker: WorkerProcess) -> None:
    lines = [line for line in worker.log_path.read_text().splitlines() if line.strip()]
    assert any('"message": "request"' in line for line in lines)
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not_json == []


async def test_fausts_table_and_router_endpoints_are_off(http: aiohttp.ClientSession) -> None:
    for path in ("/table/courses", "/router/courses/x", "/table"):
        assert (await http.get(path)).status == 404

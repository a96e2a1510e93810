"""Through the local stack's gateway (HAProxy, config/haproxy/haproxy.cfg) to the worker:
routing, the JWT check, the per-caller rate limit, the body limit and the request id.
This is the gateway that runs here; Kong's file (config/kong/kong.yml) is only checked
(tests/unit/test_gateway_config.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest

from devstack.gateway import Gateway
from tests.support import (
    JWT_AUDIENCE,
    JWT_ISSUER,
    JWT_SECRET,
    ONE_MODULE,
    WorkerProcess,
    token,
)

BUDGET = 30  # requests per minute per caller, at this test's gateway


@pytest.fixture(scope="module")
def gateway(worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gate = Gateway(
        Path(tmp_path_factory.mktemp("gateway")),
        worker.base_url.removeprefix("http://"),
        JWT_SECRET,
        JWT_ISSUER,
        JWT_AUDIENCE,
        requests_per_minute=BUDGET,
    )
    gate.start()
    try:
        yield gate
    finally:
        gate.stop()


@pytest.fixture
async def through(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=gateway.url) as session:
        yield session


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_a_write_and_a_read_go_through_with_a_request_id(
    through: aiohttp.ClientSession,
) -> None:
    owner = _bearer(token("gw-instructor", "instructor", name="Gateway Instructor"))
    body = {"title": "Through the gateway", "status": "published", "modules": [ONE_MODULE]}
    created = await through.post("/api/v1/courses/create", json=body, headers=owner)
    assert created.status == 201, await created.text()
    assert created.headers["X-Request-ID"]  # made by the gateway, echoed by the service
    course_id = (await created.json())["id"]
    read = await through.get(f"/api/v1/courses/{course_id}", headers={"X-Request-ID": "gw-1"})
    assert read.status == 200 and read.headers["X-Request-ID"] == "gw-1"
    assert (await through.get("/api/v1/courses", params={"q": "gateway"})).status == 200
    assert (await through.get("/docs")).status == 200


@pytest.mark.parametrize(
    "why",
    ["no token", "expired", "another issuer", "another audience", "bad signature", "alg none"],
)
async def test_the_gateway_refuses_a_bad_or_missing_token(
    through: aiohttp.ClientSession, why: str
) -> None:
    claims = {"sub": "gw-student", "roles": ["student"], "iss": JWT_ISSUER, "aud": JWT_AUDIENCE}
    claims["exp"] = 2_000_000_000
    if why == "expired":
        claims["exp"] = 1_600_000_000
    if why == "another issuer":
        claims["iss"] = "https://elsewhere.example"
    if why == "another audience":
        claims["aud"] = "another-service"
    secret = (
        "a-different-secret-that-is-long-enough-0123456789"
        if why == "bad signature"
        else JWT_SECRET
    )
    value = jwt.encode(claims, secret, algorithm="HS256")
    if why == "alg none":
        value = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    headers = {} if why == "no token" else _bearer(value)
    response = await through.post("/api/v1/courses/some-course/enroll", headers=headers)
    assert response.status == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "(gateway)" in (await response.json())["detail"]  # refused before the service


async def test_internal_routes_are_not_reachable(through: aiohttp.ClientSession) -> None:
    for path in ("/metrics", "/readyz", "/healthz"):
        assert (await through.get(path)).status == 404
    assert (await through.get("/gateway/healthz")).status == 200


async def test_a_body_over_the_limit_is_refused_at_the_gateway(
    through: aiohttp.ClientSession,
) -> None:
    owner = _bearer(token("gw-big", "instructor"))
    response = await through.post(
        "/api/v1/courses/create", data=b"x" * (1024 * 1024 + 1), headers=owner
    )
    assert response.status == 413
    assert "gateway" in (await response.json())["detail"]


async def test_each_caller_has_its_own_budget(through: aiohttp.ClientSession) -> None:
    greedy, other = _bearer(token("gw-greedy", "student")), _bearer(token("gw-other", "student"))
    statuses = [
        (await through.get("/api/v1/users/gw-greedy/enrollments", headers=greedy)).status
        for _ in range(BUDGET + 1)
    ]
    assert statuses[:BUDGET] == [200] * BUDGET
    refused = await through.get("/api/v1/users/gw-greedy/enrollments", headers=greedy)
    assert statuses[-1] == 429 and refused.status == 429
    assert refused.headers["Retry-After"] == "60"
    assert (await through.get("/api/v1/users/gw-other/enrollments", headers=other)).status == 200

"""The rate-limit middleware in process (the real server and middleware, a fake limiter):
budgets by caller and kind, 429 with Retry-After, the draft's headers, and what happens
while Redis is down. The limiter itself runs against real Redis in
tests/integration/test_rate_limits.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from course_management.api.app import ENDPOINTS, create_app
from course_management.api.auth import TokenVerifier
from course_management.api.middleware import SERVER_LIMITS
from course_management.api.ports import Unavailable
from course_management.api.rate_limits import Budgets, rate_limit_middleware
from course_management.domain.outcomes import Refusal, RefusalKind, Reply
from course_management.infra.cache import ReadBypass
from course_management.infra.rate_limit import Budget
from tests.unit.api_fakes import (
    FakeContent,
    FakeHistory,
    FakeLimiter,
    FakeLive,
    FakeReadiness,
    FakeReads,
    FakeWebhooks,
    FakeWrites,
)
from tests.unit.test_api_in_process import COURSE_ID, INSTRUCTOR, PROBLEM, SECRET, SERVICE, course

BUDGETS = Budgets(
    read=Budget("read", 3, 60),
    write=Budget("write", 2, 60),
    service_read=Budget("service-read", 5, 60),
    service_write=Budget("service-write", 4, 60),
)


@pytest.fixture
async def limited() -> AsyncIterator[tuple[TestClient, FakeLimiter]]:
    async with _limited_app(FakeReads()) as app:
        yield app


@contextlib.asynccontextmanager
async def _limited_app(
    reads: FakeReads, writes: FakeWrites | None = None
) -> AsyncIterator[tuple[TestClient, FakeLimiter]]:
    limiter, writes = FakeLimiter(), writes or FakeWrites()
    reads.courses[COURSE_ID] = course()
    writes.replies.setdefault("create_course", Reply("created", course()))
    endpoints = {ep.handler.__name__: ep for ep in ENDPOINTS}
    app = create_app(
        writes=writes,
        reads=reads,
        history=FakeHistory(),
        live=FakeLive(),
        webhooks=FakeWebhooks(),
        readiness=FakeReadiness(),
        verifier=TokenVerifier(secret=SECRET, public_key_pem=None, issuer=None, audience=None),
        content=FakeContent(),
        upload_limits={"multipart_threshold": 1, "part_size": 1},
        rate_limit=rate_limit_middleware(
            limiter,  # type: ignore[arg-type]
            BUDGETS,
            endpoints,
            ReadBypass(cooldown_s=0.0),
        ),
    )
    server = TestServer(app)
    await server.start_server(**SERVER_LIMITS)
    client = TestClient(server)
    await client.start_server()
    try:
        yield client, limiter
    finally:
        await client.close()


async def _get(client: TestClient, headers: dict[str, str] | None = None) -> Any:
    return await client.get(f"/api/v1/courses/{COURSE_ID}", headers=headers or {})


async def test_a_caller_over_its_read_budget_gets_429_with_retry_after(limited: Any) -> None:
    client, _ = limited
    for remaining in (2, 1, 0):
        ok = await _get(client)
        assert ok.status == 200
        assert ok.headers["RateLimit-Policy"] == '"read";q=3;w=60'
        assert ok.headers["RateLimit"] == f'"read";r={remaining};t=60'
    over = await _get(client)
    assert over.status == 429 and over.content_type == PROBLEM
    assert over.headers["Retry-After"] == "7"
    assert (await over.json())["type"].endswith("/rate-limited")
    # Another caller (a token's sub) has a budget of its own; health is never limited.
    assert (await _get(client, INSTRUCTOR)).status == 200
    assert (await client.get("/healthz")).status == 200


async def test_writes_and_services_have_budgets_of_their_own(limited: Any) -> None:
    client, limiter = limited
    for _ in range(2):
        created = await client.post(
            "/api/v1/courses/create", json={"title": "t"}, headers=INSTRUCTOR
        )
        assert created.status == 201
    assert (
        await client.post("/api/v1/courses/create", json={"title": "t"}, headers=INSTRUCTOR)
    ).status == 429
    assert (await _get(client, INSTRUCTOR)).status == 200  # reads: a separate budget
    for _ in range(5):
        assert (await _get(client, SERVICE)).status == 200
    assert (await _get(client, SERVICE)).status == 429
    assert limiter.spent[("service-read", "sub:content-delivery")] == 6


async def test_while_redis_is_down_reads_go_on_and_writes_answer_503(limited: Any) -> None:
    client, limiter = limited
    limiter.down = True
    assert (await _get(client)).status == 200
    refused = await client.post("/api/v1/courses/create", json={"title": "t"}, headers=INSTRUCTOR)
    assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    assert (await refused.json())["type"].endswith("/rate-limit-unavailable")


async def test_a_hot_read_that_spent_its_charge_is_not_charged_again() -> None:
    """GET course spends its request in the read's own script (infra/cache.py): the
    middleware takes that decision, adds its headers or answers 429, and does not ask the
    limiter again."""
    reads = FakeReads(settle_with=[1, 0, 30_000])  # allowed; TAT 30 s ahead
    reads.courses[COURSE_ID] = course()
    async with _limited_app(reads) as (client, limiter):
        ok = await _get(client)
        assert ok.status == 200 and ok.headers["RateLimit"] == '"read";r=1;t=30'
        reads.settle_with = [0, 4_000, 60_000]  # over budget: next one in 4 s
        over = await _get(client)
        assert over.status == 429 and over.headers["Retry-After"] == "4"
        assert limiter.spent == {}  # the limiter was never asked


async def test_refusals_and_503s_carry_the_limit_headers_too() -> None:
    """Issue 24, item 7: the rate-limit headers were only on successes and the route's own
    problems, not on refusals of the domain or a dependency's 503."""
    writes = FakeWrites()
    writes.replies["create_course"] = Unavailable("kafka-unavailable", "down")
    writes.replies["update_course"] = Reply.refusing(Refusal(RefusalKind.VERSION_MISMATCH, "x"))
    async with _limited_app(FakeReads(), writes) as (client, _):
        answers = [
            await client.post("/api/v1/courses/create", json={"title": "t"}, headers=INSTRUCTOR),
            await client.put(
                f"/api/v1/courses/{COURSE_ID}/update",
                json={"title": "u"},
                headers={**INSTRUCTOR, "If-Match": '"3"'},
            ),
        ]
        assert [a.status for a in answers] == [503, 412]
        for answer in answers:
            assert answer.content_type == PROBLEM
            assert answer.headers["RateLimit-Policy"] == '"write";q=2;w=60'
            assert answer.headers["RateLimit"].startswith('"write";r=')
        assert answers[0].headers["Retry-After"] == "1"

"""The API's rate limits: which budget a request spends, and the answer when it is spent.

Budgets are per caller: the token's `sub`, or the client's address when anonymous (the
rightmost `X-Forwarded-For` address when the gateway in front is trusted to set it).
Reads (GET, HEAD) and writes have separate budgets; callers with the `service` role have
their own, larger ones. They are kept in Redis (infra/rate_limit.py), so they hold across
workers. Over budget: 429 problem+json with `Retry-After`. Every limited answer carries
the IETF httpapi draft's `RateLimit-Policy` and `RateLimit` headers.

While Redis is unreachable (decision 39): reads go on unlimited (they do not need Redis,
and the gateway's coarse limit still holds); writes answer 503 `rate-limit-unavailable`
with `Retry-After` at once, since they could not complete without Redis anyway (the
agent waits for it, decision 22) and failing fast sheds their load.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from course_management.api.http import CHARGE_KEY, PRINCIPAL_KEY, REQUEST_ID_KEY, problem_response
from course_management.api.middleware import response_of
from course_management.api.openapi import Endpoint, RequestHandler
from course_management.api.problems import Problem
from course_management.infra.cache import ReadBypass
from course_management.infra.metrics import RATE_LIMITED
from course_management.infra.rate_limit import Budget, Charge, RateDecision, RateLimiter

UNLIMITED_TAGS = frozenset({"operations"})  # health, readiness, metrics, the OpenAPI document


@dataclass(frozen=True)
class Budgets:
    read: Budget
    write: Budget
    service_read: Budget
    service_write: Budget
    trust_forwarded: bool = False

    def of(self, write: bool, service: bool) -> Budget:
        if service:
            return self.service_write if write else self.service_read
        return self.write if write else self.read


def _caller(request: web.Request, trust_forwarded: bool) -> str:
    who = request.get(PRINCIPAL_KEY)
    if who is not None:
        return f"sub:{who.user_id}"
    if trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return f"ip:{last[:64]}"
    return f"ip:{request.remote or 'unknown'}"


def _headers(budget: Budget, decision: RateDecision) -> dict[str, str]:
    return {
        "RateLimit-Policy": f'"{budget.name}";q={budget.quota};w={budget.window_s}',
        "RateLimit": f'"{budget.name}";r={decision.remaining};t={decision.reset_s}',
    }


def rate_limit_middleware(
    limiter: RateLimiter, budgets: Budgets, endpoints: Mapping[str, Endpoint], bypass: ReadBypass
) -> Middleware:
    """Spend a request of the caller's budget before the route runs; on a route whose read
    spends it itself (`Endpoint.read_spends_limit`: the hot point reads), leave it to the
    read, which fetches its data in the same Redis script, and decide after."""

    @web.middleware
    async def rate_limit(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
        endpoint = endpoints.get(request.match_info.route.name or "")
        if endpoint is None or endpoint.tag in UNLIMITED_TAGS:
            return await handler(request)
        who = request.get(PRINCIPAL_KEY)
        write = request.method not in ("GET", "HEAD")
        charge = Charge(
            budgets.of(write, service=bool(who and who.has("service"))),
            _caller(request, budgets.trust_forwarded),
        )
        if endpoint.read_spends_limit and not write:
            request[CHARGE_KEY] = charge
            response = await _answer(request, handler, charge)
            # Spent by the read's script, or now if the route answered before reading.
            return _decided(charge, await _spent(charge, limiter, bypass), response)
        decision = await _spent(charge, limiter, bypass)
        if decision is not None and not decision.allowed:
            return _decided(charge, decision, None)
        if decision is None and write:
            RATE_LIMITED.labels(charge.budget.name, "unavailable").inc()
            return problem_response(
                Problem.of(
                    503,
                    "rate-limit-unavailable",
                    "writes are not taken while the rate limits cannot be checked",
                ),
                headers={"Retry-After": "1"},
            )
        return _decided(charge, decision, await _answer(request, handler))

    return rate_limit


async def _answer(
    request: web.Request, handler: RequestHandler, charge: Charge | None = None
) -> web.StreamResponse | None:
    try:
        return await handler(request)
    except Exception as exc:  # a 4xx or 503 of the route: it still spent the budget
        if charge is not None and charge.decision is not None and not charge.decision.allowed:
            return None  # refused by the read's own script: the 429 replaces it
        return response_of(exc, request.get(REQUEST_ID_KEY, ""))


async def _spent(charge: Charge, limiter: RateLimiter, bypass: ReadBypass) -> RateDecision | None:
    """The charge's decision: the one its read made, or spent now (None: Redis is
    unreachable)."""
    if charge.decision is not None:
        return charge.decision
    decision = await bypass.call(lambda: limiter.take(charge.budget, charge.caller))
    if decision is None:
        RATE_LIMITED.labels(charge.budget.name, "unavailable").inc()
    return decision


class _Refused(dict[str, Any]):
    """The refusal counter of each budget, made once."""

    def __missing__(self, name: str) -> Any:
        child = self[name] = RATE_LIMITED.labels(name, "refused")
        return child


_REFUSED = _Refused()


@functools.lru_cache(maxsize=1024)
def _refusal_body(name: str, quota: int, window_s: int, retry_after_s: int) -> bytes:
    """The 429 problem's bytes, made once per budget and wait (a refusal must cost less
    than a served read)."""
    problem = Problem.of(
        429,
        "rate-limited",
        f"over the {name} budget of {quota} requests per {window_s} s; "
        f"retry after {retry_after_s} s",
    )
    return json.dumps(problem.to_dict()).encode()


def _decided(
    charge: Charge, decision: RateDecision | None, response: web.StreamResponse | None
) -> web.StreamResponse:
    """The route's response with the limit's headers, or 429 when over budget (a read
    that spent its charge itself has an answer to discard then). With no decision (Redis
    unreachable) a read goes on unlimited (decision 39)."""
    if decision is None:
        assert response is not None
        return response
    budget = charge.budget
    headers = _headers(budget, decision)
    if not decision.allowed:
        _REFUSED[budget.name].inc()
        return web.Response(
            status=429,
            body=_refusal_body(budget.name, budget.quota, budget.window_s, decision.retry_after_s),
            content_type="application/problem+json",
            headers={**headers, "Retry-After": str(decision.retry_after_s)},
        )
    assert response is not None
    response.headers.update(headers)
    return response

"""Where every request enters: request id, access log, metrics, authentication, problems.

Anything a handler raises is answered here: a `Problem` as itself, a domain `Refusal`
as its problem (api/problems.py), `Unavailable` and an unreachable store as 503, and
anything else as 500 (logged with the request id).

Every request is counted and timed (Prometheus); the access log has every error answer
(4xx, 5xx) and every slow one, and a sample of the rest (`AccessLog`): one JSON line per
request cost a tenth of a cached read (issue 13's profile).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from course_management.api.auth import AuthError, TokenVerifier
from course_management.api.http import PRINCIPAL_KEY, REQUEST_ID_KEY, problem_response
from course_management.api.openapi import Endpoint, RequestHandler
from course_management.api.ports import Unavailable
from course_management.api.problems import Problem, problem_of
from course_management.domain.outcomes import Refusal
from course_management.infra.database import UNAVAILABLE as DATABASE_UNAVAILABLE
from course_management.infra.logs import log_context
from course_management.infra.metrics import HTTP_LATENCY, HTTP_REQUESTS
from course_management.infra.storage import UNAVAILABLE as STORAGE_UNAVAILABLE

log = logging.getLogger("course_management.access")

# A store a request needs cannot be reached: 503 with Retry-After, not 500.
STORE_UNAVAILABLE = (*DATABASE_UNAVAILABLE, *STORAGE_UNAVAILABLE)

REQUEST_ID = "X-Request-ID"

# What a request may carry besides its body. The server's own parser (SERVER_LIMITS)
# allows more, so that these answer as problems; beyond the parser's limits aiohttp
# answers a plain 400 itself.
MAX_TARGET_BYTES = 8192  # the path and query string
MAX_HEADER_BYTES = 16384  # every header name and value together
SERVER_LIMITS: dict[str, Any] = {
    "max_line_size": 65536,
    "max_field_size": 65536,
    "max_headers": 128,
}


# The request headers the service reads. Each is ASCII by its own definition (a token, an
# entity tag, an id); a byte outside visible ASCII is refused naming the header, before
# anything reads it (it used to reach Kafka's headers or PyJWT and answer 500).
READ_HEADERS = (
    REQUEST_ID,
    "Authorization",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "Consistency-Token",
)


def _visible_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _check_headers(request: web.Request) -> None:
    bad = [
        name
        for name in READ_HEADERS
        if any(not _visible_ascii(value) for value in request.headers.getall(name, ()))
    ]
    if bad:
        raise Problem.of(
            400,
            "invalid-header",
            f"{', '.join(bad)}: only visible ASCII characters are allowed",
            errors=[{"field": name, "message": "only visible ASCII characters"} for name in bad],
        )


def _check_query(request: web.Request, endpoint: Endpoint | None) -> None:
    """Only the query parameters the route declares (its OpenAPI `parameters`), each once:
    a misspelt filter used to be ignored and a repeated one to take its first value."""
    if endpoint is None:
        return
    declared = {param.name for param in endpoint.params if param.where == "query"}
    names = [name for name, _ in request.query.items()]
    unknown = sorted({name for name in names if name not in declared})
    repeated = sorted({name for name in names if names.count(name) > 1} - set(unknown))
    if unknown:
        raise Problem.of(
            400,
            "unknown-parameter",
            f"not a parameter of this route: {', '.join(unknown)}",
            errors=[{"field": name, "message": "unknown query parameter"} for name in unknown],
        )
    if repeated:
        raise Problem.of(
            400,
            "repeated-parameter",
            f"given more than once: {', '.join(repeated)}",
            errors=[{"field": name, "message": "given more than once"} for name in repeated],
        )


def _check_sizes(request: web.Request) -> None:
    if len(request.raw_path) > MAX_TARGET_BYTES:
        raise Problem.of(
            414, "uri-too-long", f"the path and query string are over {MAX_TARGET_BYTES} bytes"
        )
    size = sum(len(name) + len(value) for name, value in request.raw_headers)
    if size > MAX_HEADER_BYTES:
        raise Problem.of(
            431,
            "request-header-fields-too-large",
            f"the request's headers are over {MAX_HEADER_BYTES} bytes",
        )


@dataclass(frozen=True)
class AccessLog:
    """Which answers the access log writes: every one at or over `min_status` or slower
    than `slow_s`, and a `sample` fraction (0 to 1) of the others. A 429 is sampled like a
    success (`cms_rate_limited_total` counts every one): logging each made a refusal
    cost more than a served read, so a client over its budget cost the most (issue 22)."""

    sample: float = 0.01
    slow_s: float = 0.25
    min_status: int = 400

    def wants(self, status: int, elapsed_s: float) -> bool:
        if (status >= self.min_status and status != 429) or elapsed_s >= self.slow_s:
            return True
        return self.sample >= 1 or (self.sample > 0 and random.random() < self.sample)


class _RouteMetrics:
    """The metric children of each (method, route, status), made once: `labels()` on
    every request was a measurable part of a cached read."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, elapsed_s: float) -> None:
        count = self._counts.get((method, route, status))
        if count is None:
            count = self._counts[(method, route, status)] = HTTP_REQUESTS.labels(
                method, route, str(status)
            )
        latency = self._latency.get((method, route))
        if latency is None:
            latency = self._latency[(method, route)] = HTTP_LATENCY.labels(method, route)
        count.inc()
        latency.observe(elapsed_s)


def response_of(exc: Exception, request_id: str) -> web.StreamResponse:
    """The answer to what a route raised: the one place an exception becomes a status (the
    rate-limit middleware answers through it too, so its headers are on every answer)."""
    if isinstance(exc, Problem):
        return problem_response(exc)
    if isinstance(exc, Refusal):
        return problem_response(problem_of(exc))
    if isinstance(exc, Unavailable):
        return problem_response(Problem.of(503, exc.kind, exc.detail), headers={"Retry-After": "1"})
    if isinstance(exc, web.HTTPException):
        return _http_exception_problem(exc)
    if isinstance(exc, STORE_UNAVAILABLE):  # includes OSError: any connection that failed
        log.warning("a store is unavailable", extra={"request_id": request_id}, exc_info=exc)
        return problem_response(
            Problem.of(503, "unavailable", "a store this request needs cannot be reached now"),
            headers={"Retry-After": "1"},
        )
    log.error("unhandled error", extra={"request_id": request_id}, exc_info=exc)
    return problem_response(
        Problem.of(500, "internal", "an unexpected error; the request id is in the logs")
    )


def build_middlewares(
    verifier: TokenVerifier, endpoints: Mapping[str, Endpoint], access_log: AccessLog | None = None
) -> list[web.middleware]:  # type: ignore[valid-type]
    metrics = _RouteMetrics()
    logged = access_log or AccessLog()

    @web.middleware
    async def request_context(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
        sent_id = request.headers.get(REQUEST_ID, "")[:200]
        request_id = sent_id if _visible_ascii(sent_id) and sent_id else str(uuid.uuid4())
        request[REQUEST_ID_KEY] = request_id
        endpoint = endpoints.get(request.match_info.route.name or "")
        route_name = endpoint.path if endpoint is not None else "unmatched"
        started = time.perf_counter()
        try:
            if request.match_info.http_exception is None:  # a 404 or 405 says more
                _check_sizes(request)
                _check_headers(request)
                _check_query(request, endpoint)
            with log_context(request_id=request_id):  # and into the events it causes
                response = await handler(request)
        except Exception as exc:
            response = response_of(exc, request_id)
        elapsed = time.perf_counter() - started
        response.headers[REQUEST_ID] = request_id
        metrics.observe(request.method, route_name, response.status, elapsed)
        if logged.wants(response.status, elapsed):
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
        return response

    @web.middleware
    async def authenticate(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
        endpoint = endpoints.get(request.match_info.route.name or "")
        header = request.headers.get("Authorization")
        if endpoint is None or (not endpoint.auth and header is None):
            return await handler(request)
        try:
            request[PRINCIPAL_KEY] = await verifier.authenticate(header)
        except AuthError as exc:
            return problem_response(
                Problem.of(401, "unauthenticated", str(exc)),
                headers={
                    "WWW-Authenticate": "Bearer" if not header else 'Bearer error="invalid_token"'
                },
            )
        return await handler(request)

    return [request_context, authenticate]


def _http_exception_problem(exc: web.HTTPException) -> web.Response:
    if exc.status < 400:
        return exc  # redirects and 304 pass through
    slug = {
        404: "not-found",
        405: "method-not-allowed",
        413: "body-too-large",
    }.get(exc.status, "http-error")
    response = problem_response(Problem.of(exc.status, slug, exc.text or exc.reason))
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response

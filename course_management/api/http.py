"""Request parsing and responses shared by every route: JSON bodies, problems, the caller."""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from course_management.api.auth import Principal
from course_management.api.json_body import parse_json_object
from course_management.api.problems import Problem
from course_management.domain import consistency
from course_management.domain.consistency import NONE, Marks
from course_management.domain.outcomes import Reply
from course_management.infra.rate_limit import Charge

CONSISTENCY_HEADER = "Consistency-Token"

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 1024 * 1024
PRINCIPAL_KEY = web.RequestKey("principal", Principal)
REQUEST_ID_KEY = web.RequestKey("request_id", str)
# The request's rate-limit charge, on routes whose read spends it (api/rate_limits.py).
CHARGE_KEY = web.RequestKey("charge", Charge)


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=problem.status,
        body=json.dumps(problem.to_dict()).encode(),
        content_type="application/problem+json",
        headers=headers,
    )


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


def charge_of(request: web.Request) -> Charge | None:
    """The rate-limit charge the request's read is to spend (None: spent already)."""
    return request.get(CHARGE_KEY)


def principal(request: web.Request) -> Principal | None:
    found: Principal | None = request.get(PRINCIPAL_KEY)
    return found


def require_principal(request: web.Request) -> Principal:
    found = principal(request)
    if found is None:  # the auth middleware already answers 401 on protected routes
        raise Problem.of(401, "unauthenticated", "a bearer token is required")
    return found


def require_role(who: Principal, *roles: str) -> None:
    if not who.has(*roles):
        raise Problem.of(403, "forbidden", f"this route needs one of the roles: {', '.join(roles)}")


async def read_raw_body(request: web.Request) -> bytes:
    """The body's bytes, at most MAX_BODY_BYTES (413 beyond)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Problem.of(413, "body-too-large", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Problem.of(
            413, "body-too-large", f"the body is over {MAX_BODY_BYTES} bytes"
        ) from None


async def read_body(request: web.Request, model: type[M]) -> tuple[M, dict[str, Any]]:
    """Parse and validate a JSON body: 415, 413, 400 and 422 as problems naming the field.

    Returns the model and the body as the client gave it (only the fields it set).
    """
    if request.content_type != "application/json":
        raise Problem.of(415, "unsupported-media-type", "the body must be application/json")
    raw = await read_raw_body(request)
    parse_json_object(raw)  # refuses what JSON allows and this service does not, naming it
    try:
        # Strict: no value is coerced into another type (`"capacity": true` was one seat).
        parsed = model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise Problem.from_validation(exc) from None
    return parsed, parsed.model_dump(mode="json", exclude_unset=True)


def canonical_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def since(request: web.Request) -> Marks:
    """The marks of the request's `Consistency-Token` (none without one); 400 naming the
    header for a value this service did not make."""
    raw = request.headers.get(CONSISTENCY_HEADER)
    if raw is None:
        return NONE
    try:
        return consistency.decode(raw.strip())
    except ValueError as exc:
        raise Problem.of(
            400,
            "bad-consistency-token",
            f"{CONSISTENCY_HEADER}: {exc}; send back the value a write response carried",
            errors=[{"field": CONSISTENCY_HEADER, "message": str(exc)}],
        ) from None


def token_headers(reply: Reply, headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` plus the write's `Consistency-Token` (when the agent made one)."""
    out = dict(headers or {})
    if reply.token:
        out[CONSISTENCY_HEADER] = reply.token
    return out

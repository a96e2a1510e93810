"""Course routes (CONTRACT §3): validate, authorize, turn writes into commands, read tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiohttp import web

from course_management.api.http import (
    canonical_hash,
    json_response,
    principal,
    read_body,
    require_principal,
    require_role,
)
from course_management.api.models import Course
from course_management.api.openapi import Endpoint, Param
from course_management.api.ports import BACKEND
from course_management.domain.commands import CourseCommand
from course_management.domain.course import CourseFields
from course_management.domain.problems import Problem
from course_management.tables.courses import course_of

# Course ids derived from an Idempotency-Key live in this namespace (uuid5).
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c1f0e-4a8e-4bb5-9d51-6d2c3c1f8a10")
COURSE_ID = Param("courseId", "path", "The course id (a UUID)")


def _etag(course: dict[str, object]) -> str:
    return f'"{course["version"]}"'


def _course_id(request: web.Request) -> str:
    raw = request.match_info["courseId"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise Problem.of(404, "course-not-found", f"no course {raw!r}") from None


async def create_course(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    require_role(who, "instructor", "admin")
    _, payload = await read_body(request, CourseFields)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200):
        raise Problem.of(400, "bad-idempotency-key", "Idempotency-Key must be 1..200 characters")
    course_id = (
        str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{who.user_id}\n{key}"))
        if key
        else str(uuid.uuid4())
    )
    reply = await request.app[BACKEND].execute(
        CourseCommand(
            command_id=str(uuid.uuid4()),
            command_type="create_course",
            course_id=course_id,
            occurred_at=datetime.now(UTC),
            actor=who.actor(),
            payload=payload,
            payload_hash=canonical_hash(payload),
        )
    )
    if reply.status != 201 or reply.body is None:
        raise _problem_from_reply(reply.status, reply.body)
    return json_response(
        reply.body,
        status=201,
        headers={"Location": f"/api/v1/courses/{course_id}", "ETag": _etag(reply.body)},
    )


async def get_course(request: web.Request) -> web.StreamResponse:
    course_id = _course_id(request)
    course = course_of(await request.app[BACKEND].read_course_record(course_id))
    who = principal(request)
    visible = course is not None and (
        course["status"] != "draft"
        or (who is not None and (who.has("admin") or who.user_id == course["instructor"]["id"]))
    )
    if course is None or not visible:
        raise Problem.of(404, "course-not-found", f"no course {course_id}")
    etag = _etag(course)
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers={"ETag": etag})
    return json_response(course, headers={"ETag": etag, "Cache-Control": "no-cache"})


def _problem_from_reply(status: int, body: dict[str, object] | None) -> Problem:
    body = body or {}
    errors = body.get("errors")
    return Problem(
        status=status,
        type=str(body.get("type", "about:blank")),
        title=str(body.get("title", "")),
        detail=str(body.get("detail", "")),
        errors=errors if isinstance(errors, list) else [],
    )


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/courses/create",
        create_course,
        summary="Create a course (instructor, admin)",
        tag="courses",
        body=CourseFields,
        responses={201: ("The course as created; `Location` names it", Course)},
        errors=(400, 401, 403, 413, 415, 422, 503),
        params=(
            Param(
                "Idempotency-Key",
                "header",
                "Repeating a create with the same key and body returns the first result; "
                "with a different body, 422",
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}",
        get_course,
        summary="Read a course (published: anyone; draft: owner and admins)",
        tag="courses",
        auth=False,
        responses={200: ("The course, with its `ETag`", Course), 304: ("Not modified", None)},
        errors=(401, 404),
        params=(COURSE_ID, Param("If-None-Match", "header", "An ETag from an earlier read")),
    ),
]

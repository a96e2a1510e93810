"""Course routes (CONTRACT §3): validate, authorize, turn writes into commands, read back.

Create, read, update, delete, the modules and uploads (ratings: routes_ratings.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from course_management.api.http import (
    charge_of,
    json_response,
    principal,
    read_body,
    require_principal,
    require_role,
    since,
    token_headers,
)
from course_management.api.models import Course, CourseModules, UploadGrant
from course_management.api.openapi import CONSISTENCY_TOKEN, Endpoint, Param
from course_management.api.past_versions import (
    MAX_VERSION,
    VERSION,
    course_at_version,
    version_param,
)
from course_management.api.ports import CONTENT, READS, UPLOAD_LIMITS
from course_management.api.problems import Problem, success_status_or_raise, validation_problem
from course_management.api.route_helpers import (
    COURSE_ID,
    course_id_param,
    course_not_found,
    send_command,
    visible,
    visible_course,
)
from course_management.domain.access import (
    CO_INSTRUCTOR,
    can_change,
    may_see_content_keys,
    sees_content_keys,
)
from course_management.domain.course import course_size_error
from course_management.domain.course_fields import CourseFields, CourseUpdate
from course_management.domain.uploads import (
    UploadRequest,
    content_keys,
    content_prefix,
    plan_upload,
    without_content_keys,
)
from course_management.infra.cache import course_tag

# Course ids derived from an Idempotency-Key live in this namespace (uuid5).
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c1f0e-4a8e-4bb5-9d51-6d2c3c1f8a10")
# What a client does with a course it created (the OpenAPI links, for stateful clients
# and fuzzers).
THEN = (
    "get_course",
    "get_modules",
    "update_course",
    "delete_course",
    "create_upload",
    "enroll",
    "rate_course",
    "list_ratings",
    "list_course_enrollments",
)


def _etag(course: dict[str, Any]) -> str:
    """The course's ETag: every number that can change what a read of it returns
    (infra.cache.course_tag; the Redis entry keeps it ready for the hot read)."""
    return f'"{course_tag(course)}"'


def _not_modified(request: web.Request, etag: str) -> bool:
    return etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}


def _refuse_too_large(payload: dict[str, Any]) -> None:
    """The course is built by the agent, but a payload already over the size a course may
    have would only make a command that is bound to be refused (or too large for Kafka)."""
    too_large = course_size_error(payload)
    if too_large:
        raise validation_problem([too_large])


async def create_course(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    require_role(who, "instructor", "admin")
    _, payload = await read_body(request, CourseFields)
    _refuse_too_large(payload)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 200):
        raise Problem.of(400, "bad-idempotency-key", "Idempotency-Key must be 1..200 characters")
    course_id = (
        str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{who.user_id}\n{key}"))
        if key
        else str(uuid.uuid4())
    )
    await _check_content_keys(request, course_id, payload)
    reply = await send_command(request, who, "create_course", course_id, payload)
    status = success_status_or_raise(reply)
    assert reply.body is not None
    return json_response(
        reply.body,
        status=status,
        headers=token_headers(
            reply, {"Location": f"/api/v1/courses/{course_id}", "ETag": _etag(reply.body)}
        ),
    )


async def get_course(request: web.Request) -> web.StreamResponse:
    """The hot read: the answer's bytes come ready-made from the cache (gateways/reads.py).
    `?version=N`: a past version, from the history (api/routes_history.py)."""
    version = version_param(request)
    if version is not None:
        course, raw = await course_at_version(request, version)
        return _past(request, version, course if raw is None else raw)
    course_id = course_id_param(request)
    who = principal(request)
    caller = who.actor() if who else None
    known = may_see_content_keys(caller)  # None: it depends on whose course it is
    if caller is None or known is False:
        view = "public"
    elif known:
        view = "body"
    else:  # the read script compares the caller with the course's owner
        view = f"owner={caller.id}"
    entry = await request.app[READS].read_course(
        course_id, since(request), charge_of(request), view
    )
    entry = visible(entry, who)
    sees = entry is not None and (
        sees_content_keys(entry.owner, caller)
        or (caller is not None and entry.staff_role(caller.id) == CO_INSTRUCTOR)
    )
    body = None if entry is None else entry.body_for(sees)
    if entry is None or body is None:
        raise course_not_found(course_id)
    etag = f'"{entry.tag}"'
    headers = {"ETag": etag, "Vary": "Authorization"}  # the content keys depend on who asks
    if _not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=body,
        content_type="application/json",
        headers={**headers, "Cache-Control": "no-cache"},
    )


def _past(request: web.Request, version: int, body: dict[str, Any] | bytes) -> web.StreamResponse:
    """A past version: it never changes, but who may read it can (a deleted course's)."""
    etag = f'"v{version}"'  # not a current read's ETag: If-Match takes only those
    headers = {"ETag": etag, "Vary": "Authorization", "Cache-Control": "private, max-age=3600"}
    if _not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    if isinstance(body, bytes):
        return web.Response(body=body, content_type="application/json", headers=headers)
    return json_response(body, headers=headers)


async def get_modules(request: web.Request) -> web.StreamResponse:
    version = version_param(request)
    if version is not None:
        past, _ = await course_at_version(request, version)
        modules = {"course_id": past["id"], "version": past["version"], "modules": past["modules"]}
        return _past(request, version, modules)
    course = await visible_course(request, course_id_param(request))
    etag = _etag(course)  # the course's own ETag: one shape, one If-None-Match
    headers = {"ETag": etag, "Vary": "Authorization"}
    if _not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    who = principal(request)
    if not sees_content_keys(course["instructor"]["id"], who.actor() if who else None, course):
        course = without_content_keys(course)
    body = {"course_id": course["id"], "version": course["version"], "modules": course["modules"]}
    return json_response(body, headers={**headers, "Cache-Control": "no-cache"})


def _if_match(request: web.Request) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    # "<version>", or the full ETag of a read ("<version>.<seats>.<ratings>.<average>"):
    # the version is what an authoring change is based on (a seat taken or a rating
    # meanwhile does not make it stale).
    value = raw.strip().removeprefix("W/").strip('"').split(".", 1)[0]
    if not value.isdigit() or len(value) > 10 or int(value) > MAX_VERSION:
        raise Problem.of(400, "bad-if-match", 'If-Match must be a version ETag such as "3"')
    return int(value)


async def update_course(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)  # co-instructors by their `sub`, whatever their roles
    course_id = course_id_param(request)
    _, payload = await read_body(request, CourseUpdate)
    _refuse_too_large(payload)
    if content_keys(payload):  # the store is asked only for whoever may change the course
        course = await visible_course(request, course_id)
        if not can_change(course, who.actor()):
            raise Problem.of(
                403,
                "not-course-owner",
                "only the course's instructor, a co-instructor or an admin may change it",
            )
    await _check_content_keys(request, course_id, payload)
    reply = await send_command(
        request, who, "update_course", course_id, payload, _if_match(request)
    )
    status = success_status_or_raise(reply)
    assert reply.body is not None
    return json_response(
        reply.body, status=status, headers=token_headers(reply, {"ETag": _etag(reply.body)})
    )


async def delete_course(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    require_role(who, "instructor", "admin")
    course_id = course_id_param(request)
    reply = await send_command(request, who, "delete_course", course_id, {}, _if_match(request))
    return web.Response(status=success_status_or_raise(reply), headers=token_headers(reply))


async def _check_content_keys(
    request: web.Request, course_id: str, payload: dict[str, Any]
) -> None:
    """Every item's `content_key` names an object of this course that exists (422 if not)."""
    errors = []
    for field, key in content_keys(payload):
        if not key.startswith(content_prefix(course_id)):
            errors.append((field, f"must be a key under {content_prefix(course_id)}"))
        elif not await request.app[CONTENT].exists(key):
            errors.append((field, "no such object in the content bucket (upload it first)"))
    if errors:
        raise validation_problem(errors)


async def create_upload(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)  # co-instructors by their `sub`, whatever their roles
    course_id = course_id_param(request)
    course = await visible_course(request, course_id)
    if not can_change(course, who.actor()):
        raise Problem.of(
            403,
            "not-course-owner",
            "only the course's instructor, a co-instructor or an admin may upload",
        )
    upload, _ = await read_body(request, UploadRequest)
    limits = request.app[UPLOAD_LIMITS]
    plan = plan_upload(
        course_id,
        str(uuid.uuid4()),
        upload,
        multipart_threshold=limits["multipart_threshold"],
        part_size=limits["part_size"],
    )
    return json_response(await request.app[CONTENT].presign(plan), status=201)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/courses/create",
        create_course,
        consistency=True,
        summary="Create a course (instructor, admin)",
        tag="courses",
        body=CourseFields,
        responses={201: ("The course as created; `Location` names it", Course)},
        response_headers={201: ("Location", "ETag")},
        links={201: {f"then_{op}": (op, {"courseId": "$response.body#/id"}) for op in THEN}},
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
        read_spends_limit=True,
        responses={200: ("The course, with its `ETag`", Course), 304: ("Not modified", None)},
        response_headers={200: ("ETag", "Cache-Control", "Vary"), 304: ("ETag", "Vary")},
        errors=(400, 401, 404, 503),
        params=(
            COURSE_ID,
            Param("If-None-Match", "header", "An ETag from an earlier read"),
            VERSION,
            CONSISTENCY_TOKEN,
        ),
    ),
    Endpoint(
        "PUT",
        "/api/v1/courses/{courseId}/update",
        update_course,
        consistency=True,
        summary="Update some writable fields of a course (owning instructor, admin)",
        tag="courses",
        body=CourseUpdate,
        responses={200: ("The course after the change", Course)},
        response_headers={200: ("ETag",)},
        errors=(400, 401, 403, 404, 412, 413, 415, 422, 503),
        params=(
            COURSE_ID,
            Param(
                "If-Match", "header", 'The version the change is based on, e.g. "3" (412 if stale)'
            ),
        ),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/courses/{courseId}/delete",
        delete_course,
        consistency=True,
        summary="Delete a course (owning instructor, admin); the mirror keeps it for audit",
        tag="courses",
        responses={204: ("Deleted", None)},
        errors=(400, 401, 403, 404, 412, 503),
        params=(COURSE_ID, Param("If-Match", "header", "Optional version the delete is based on")),
    ),
    Endpoint(
        "POST",
        "/api/v1/courses/{courseId}/uploads",
        create_upload,
        summary=(
            "Presign an upload of course content to S3 (owning instructor, admin); it changes"
            " nothing in this service, so it carries no Consistency-Token"
        ),
        tag="courses",
        body=UploadRequest,
        responses={201: ("A single presigned PUT, or presigned multipart parts", UploadGrant)},
        errors=(400, 401, 403, 404, 413, 415, 422, 503),
        params=(COURSE_ID,),
    ),
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}/modules",
        get_modules,
        summary="The ordered modules of a course with their items (as for reading the course)",
        tag="courses",
        auth=False,
        responses={
            200: ("The modules, in order, with the course's `ETag`", CourseModules),
            304: ("Not modified", None),
        },
        response_headers={200: ("ETag", "Cache-Control", "Vary"), 304: ("ETag", "Vary")},
        errors=(400, 401, 404, 503),
        params=(
            COURSE_ID,
            Param("If-None-Match", "header", "An ETag from an earlier read of the course"),
            VERSION,
            CONSISTENCY_TOKEN,
        ),
    ),
]

"""Enrollment routes (CONTRACT §3): enroll, cancel, and the access check Content Delivery makes."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from course_management.api.auth import Principal
from course_management.api.http import (
    charge_of,
    json_response,
    read_body,
    require_principal,
    since,
    token_headers,
)
from course_management.api.models import Enrollment, EnrollmentPage, Progress
from course_management.api.openapi import CONSISTENCY_TOKEN, Endpoint, Param
from course_management.api.pages import PAGE_PARAMS, decode_cursor, page_body, page_query
from course_management.api.ports import READS, WRITES
from course_management.api.problems import Problem, success_status_or_raise, validation_problem
from course_management.api.route_helpers import (
    COURSE_ID,
    course_id_param,
    course_not_found,
    existing_course,
    hiding_drafts,
    send_command,
    visible,
    visible_course,
)
from course_management.domain.access import (
    assists,
    may_cancel_enrollment,
    may_enroll_others,
    may_enroll_self,
    may_read_enrollments_of,
    may_read_every_course_enrollment,
    may_read_own_course_enrollment,
    may_report_own_progress,
    may_report_progress_for_others,
    on_staff,
    owned_by,
)
from course_management.domain.course_fields import Id

USER_ID = Param("userId", "path", "The user id (the `sub` of their token)")


class EnrollRequest(BaseModel):
    """Students enroll themselves (empty body); admins and services name the user."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id | None = None


async def _enroll_body(request: web.Request) -> EnrollRequest:
    if not request.body_exists:
        return EnrollRequest()
    body, _ = await read_body(request, EnrollRequest)
    return body


def _who_enrolls(who: Principal, body: EnrollRequest) -> str:
    """Admins and services name the user; a student enrolls only themselves."""
    actor = who.actor()
    if may_enroll_others(actor):
        if body.user_id is None:
            raise validation_problem([("user_id", "required when an admin or a service enrolls")])
        return body.user_id
    if may_enroll_self(actor, body.user_id):
        return who.user_id
    raise Problem.of(
        403, "forbidden", "students enroll themselves; admins and services name user_id"
    )


async def enroll(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    user_id = _who_enrolls(who, await _enroll_body(request))
    reply = await request.app[WRITES].enroll(course_id, user_id, source=f"api:{who.user_id}")
    status = success_status_or_raise(await hiding_drafts(request, course_id, reply))
    # A user id is the caller's text: quoted, so no character of it can reach a header raw.
    headers = {"Location": f"/api/v1/courses/{course_id}/enrollments/{quote(user_id, safe='')}"}
    return json_response(reply.body, status=status, headers=token_headers(reply, headers))


class ProgressRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: Id
    status: Literal["started", "completed"]
    score: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    user_id: Id | None = Field(default=None, description="Only when a service reports for a user")


async def report_progress(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    body, _ = await read_body(request, ProgressRequest)
    actor = who.actor()
    if may_report_progress_for_others(actor) or (
        body.user_id not in (None, who.user_id)
        and assists(await visible_course(request, course_id), actor)
    ):
        if body.user_id is None:
            raise validation_problem([("user_id", "required when a service reports progress")])
        user_id = body.user_id
    elif may_report_own_progress(actor, body.user_id):
        user_id = who.user_id
    else:
        raise Problem.of(
            403,
            "forbidden",
            "progress is reported by the student, a service or a teaching assistant",
        )
    reply = await request.app[WRITES].report_progress(
        course_id, user_id, body.item_id, body.status, body.score
    )
    status = success_status_or_raise(await hiding_drafts(request, course_id, reply))
    return json_response(reply.body, status=status, headers=token_headers(reply))


async def cancel_enrollment(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    user_id = request.match_info["userId"]
    if not may_cancel_enrollment(who.actor(), user_id):
        raise Problem.of(403, "forbidden", "only the enrolled student or an admin may cancel")
    reply = await send_command(request, who, "cancel_enrollment", course_id, {"user_id": user_id})
    status = success_status_or_raise(await hiding_drafts(request, course_id, reply))
    return web.Response(status=status, headers=token_headers(reply))


async def get_enrollment(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    user_id = request.match_info["userId"]
    course, found = await request.app[READS].read_enrollment(
        course_id, user_id, since(request), charge_of(request)
    )
    if not may_read_enrollments_of(who.actor(), user_id):
        seen = visible(course, who)
        if seen is None:
            raise course_not_found(course_id)
        if not owned_by(seen.owner, who.actor()) and not seen.staff_role(who.user_id):
            raise Problem.of(
                403,
                "not-course-owner",
                "enrollments are visible to the student, the owner and staff, admins and services",
            )
    if found is None or found.status == "cancelled":
        raise Problem.of(404, "not-enrolled", f"{user_id} is not enrolled in {course_id}")
    if found.status == "waitlisted":  # not enrolled: this 404 is Content Delivery's check
        raise Problem.of(
            404,
            "not-enrolled",
            f"{user_id} waits for a seat in {course_id} (their place: POST the enrollment "
            "again, or list the enrollments with ?status=waitlisted)",
        )
    return web.Response(body=found.body, content_type="application/json")


async def list_course_enrollments(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    query = page_query(request)
    status = _status_filter(request)
    position = decode_cursor(query.cursor, "seq" if status == "waitlisted" else "user_id")
    only_user = None
    actor = who.actor()
    if may_read_every_course_enrollment(actor):
        await existing_course(request, course_id)  # an unknown course is 404 to all
    else:
        course = await visible_course(request, course_id)
        if not on_staff(course, actor):
            if not may_read_own_course_enrollment(actor):
                raise Problem.of(
                    403, "not-course-owner", "only the owner, admins, services and students"
                )
            only_user = who.user_id  # a student sees only their own enrollment
    if status == "waitlisted":
        after_seq = _seq(position["seq"]) if position else None
        queued = await request.app[READS].list_waitlist(
            course_id, after_seq, query.limit, only_user
        )
        more = queued[query.limit - 1] if len(queued) > query.limit else None
        return json_response(
            page_body([v for _, v in queued], query.limit, {"seq": str(more[0])} if more else None)
        )
    rows = await request.app[READS].list_course_enrollments(
        course_id,
        position["user_id"] if position else None,
        query.limit,
        only_user,
        since(request),
        status,
    )
    last = rows[query.limit - 1] if len(rows) > query.limit else None
    return json_response(
        page_body(rows, query.limit, {"user_id": last["user_id"]} if last else None)
    )


LIST_STATUSES = ("active", "completed", "cancelled", "waitlisted")
STATUS_FILTER = Param(
    "status",
    "query",
    "Only the enrollments of this status (default: active and completed). `waitlisted`: "
    "the learners waiting for a seat, in queue order; `cancelled`: with `cancel_reason` "
    "for those a rule took off the waitlist",
    schema={"type": "string", "enum": list(LIST_STATUSES)},
)


def _status_filter(request: web.Request) -> str | None:
    status = request.query.get("status")
    if status is not None and status not in LIST_STATUSES:
        raise validation_problem([("status", f"one of {', '.join(LIST_STATUSES)}")])
    return status


def _seq(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise validation_problem([("cursor", "not a cursor from this list")])
    return int(value)


async def list_user_enrollments(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    user_id = request.match_info["userId"]
    if not may_read_enrollments_of(who.actor(), user_id):
        raise Problem.of(403, "forbidden", "a user's enrollments are theirs, admins' and services'")
    query = page_query(request)
    position = decode_cursor(query.cursor, "course_id")
    rows = await request.app[READS].list_user_enrollments(
        user_id, position["course_id"] if position else None, query.limit, since(request)
    )
    last = rows[query.limit - 1] if len(rows) > query.limit else None
    return json_response(
        page_body(rows, query.limit, {"course_id": last["course_id"]} if last else None)
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}/enrollments",
        list_course_enrollments,
        summary="A page of a course's enrollments (owner, admin, service; a student: their own)",
        tag="enrollments",
        responses={200: ("A page of enrollments with progress", EnrollmentPage)},
        errors=(400, 401, 403, 404, 422, 503),
        params=(COURSE_ID, STATUS_FILTER, *PAGE_PARAMS, CONSISTENCY_TOKEN),
    ),
    Endpoint(
        "GET",
        "/api/v1/users/{userId}/enrollments",
        list_user_enrollments,
        summary="A page of a user's enrollments (that user, admin, service)",
        tag="enrollments",
        responses={200: ("A page of enrollments with progress", EnrollmentPage)},
        errors=(400, 401, 403, 422, 503),
        params=(USER_ID, *PAGE_PARAMS, CONSISTENCY_TOKEN),
    ),
    Endpoint(
        "POST",
        "/api/v1/courses/{courseId}/enroll",
        enroll,
        consistency=True,
        summary="Enroll (a student themselves; an admin or a service names user_id); "
        "409 prerequisites-not-met names the courses to complete first",
        tag="enrollments",
        body=EnrollRequest,
        responses={201: ("Enrolled", Enrollment), 200: ("Already enrolled", Enrollment)},
        response_headers={201: ("Location",), 200: ("Location",)},
        links={
            status: {
                f"then_{op}": (
                    op,
                    {"courseId": "$request.path.courseId", "userId": "$response.body#/user_id"},
                )
                for op in ("get_enrollment", "cancel_enrollment")
            }
            for status in (200, 201)
        },
        errors=(400, 401, 403, 404, 409, 413, 415, 422, 503),
        params=(COURSE_ID,),
    ),
    Endpoint(
        "POST",
        "/api/v1/courses/{courseId}/progress",
        report_progress,
        consistency=True,
        summary="Report progress on an item (the enrolled student; a service names user_id); "
        "409 item-locked says what the item waits for",
        tag="enrollments",
        body=ProgressRequest,
        responses={200: ("The enrollment's progress after the change", Progress)},
        errors=(400, 401, 403, 404, 409, 413, 415, 422, 503),
        params=(COURSE_ID,),
    ),
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}/enrollments/{userId}",
        get_enrollment,
        summary="One enrollment with progress; 404 when not enrolled (the access check)",
        tag="enrollments",
        read_spends_limit=True,
        responses={200: ("The enrollment", Enrollment)},
        errors=(400, 401, 403, 404, 503),
        params=(COURSE_ID, USER_ID, CONSISTENCY_TOKEN),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/courses/{courseId}/enrollments/{userId}",
        cancel_enrollment,
        consistency=True,
        summary="Cancel an enrollment (that student, admin); the seat is freed",
        tag="enrollments",
        responses={204: ("Cancelled", None)},
        errors=(401, 403, 404, 503),
        params=(COURSE_ID, USER_ID),
    ),
]

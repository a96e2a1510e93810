"""Ratings (CONTRACT §3): a student rates a course (one rating per student and course,
ever; posting again replaces it), and anyone who may read the course lists its ratings."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from course_management.api.http import (
    json_response,
    read_body,
    require_principal,
    since,
    token_headers,
)
from course_management.api.models import RatingPage, RatingResult
from course_management.api.openapi import CONSISTENCY_TOKEN, Endpoint
from course_management.api.pages import PAGE_PARAMS, decode_cursor, page_body, page_query
from course_management.api.ports import READS
from course_management.api.problems import Problem, success_status_or_raise, validation_problem
from course_management.api.route_helpers import (
    COURSE_ID,
    course_id_param,
    hiding_drafts,
    send_command,
    visible_course,
)
from course_management.domain.access import may_rate
from course_management.domain.ratings import RatingInput
from course_management.domain.times import rfc3339


async def rate_course(request: web.Request) -> web.StreamResponse:
    """One rating per enrolled student; posting again replaces it."""
    who = require_principal(request)
    course_id = course_id_param(request)
    if not may_rate(who.actor()):
        raise Problem.of(403, "forbidden", "ratings come from enrolled students")
    _, payload = await read_body(request, RatingInput)
    reply = await send_command(request, who, "rate_course", course_id, payload)
    status = success_status_or_raise(await hiding_drafts(request, course_id, reply))
    return json_response(reply.body, status=status, headers=token_headers(reply))


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    position = decode_cursor(cursor, "rated_at", "user_id")
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position["rated_at"]), position["user_id"]
    except ValueError:
        raise validation_problem([("cursor", "not a cursor from this list")]) from None


async def list_ratings(request: web.Request) -> web.StreamResponse:
    """A published course's ratings, newest first (as for reading the course)."""
    course_id = course_id_param(request)
    marks = since(request)
    await visible_course(request, course_id)
    query = page_query(request)
    rows = await request.app[READS].list_ratings(
        course_id, _after(query.cursor), query.limit, marks
    )
    items = [
        {
            "user_id": r["user_id"],
            "stars": r["stars"],
            "review": r["review"],
            "rated_at": rfc3339(r["rated_at"]),  # as everywhere: milliseconds, Z
        }
        for r in rows
    ]
    last = rows[query.limit - 1] if len(rows) > query.limit else None
    position = (
        {"rated_at": last["rated_at"].isoformat(), "user_id": last["user_id"]} if last else None
    )
    return json_response(page_body(items, query.limit, position))


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/courses/{courseId}/ratings",
        rate_course,
        summary="Rate a course (an enrolled student; posting again replaces the rating)",
        tag="catalog",
        body=RatingInput,
        responses={200: ("The rating and the course's rating after it", RatingResult)},
        errors=(400, 401, 403, 404, 409, 413, 415, 422, 503),
        params=(COURSE_ID,),
        consistency=True,
    ),
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}/ratings",
        list_ratings,
        summary="A course's ratings, newest first (as for reading the course)",
        tag="catalog",
        auth=False,
        responses={200: ("A page of ratings", RatingPage)},
        errors=(400, 401, 404, 422, 503),
        params=(COURSE_ID, *PAGE_PARAMS, CONSISTENCY_TOKEN),
    ),
]

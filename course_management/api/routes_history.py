"""History and time travel (CONTRACT §5.3): a course's authoring changes, any past version
of a course (`?version=N` on the course and modules reads, which hand over here), and a
learner's record change by change. Everything is read from the mirror through the
History port (gateways/history.py); who may read what is domain/access.py's.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from course_management.api.http import json_response, require_principal, since
from course_management.api.openapi import CONSISTENCY_TOKEN, Endpoint, Param
from course_management.api.pages import PAGE_PARAMS, decode_cursor, page_body, page_query
from course_management.api.past_versions import MAX_VERSION, course_of_record
from course_management.api.ports import HISTORY, READS
from course_management.api.problems import Problem, validation_problem
from course_management.api.route_helpers import COURSE_ID, course_id_param
from course_management.domain.access import (
    may_read_enrollments_of,
    may_read_history,
    on_staff,
)
from course_management.domain.history import course_entry
from course_management.domain.learner_history import learner_entry


class Change(BaseModel):
    path: str = Field(
        description="A field (`title`), a module's (`modules/<id>/title`), an item's "
        "(`modules/<id>/items/<id>/max_score`), or a module or item (added or removed whole)"
    )
    old: Any = Field(description="null: added")
    new: Any = Field(description="null: removed")


class CourseVersionEntry(BaseModel):
    version: int
    event_type: str
    actor_id: str
    occurred_at: str
    request_id: str | None
    changes: list[Change]


class CourseHistoryPage(BaseModel):
    items: list[CourseVersionEntry]
    next_cursor: str | None


class LearnerHistoryEntry(BaseModel):
    event_type: str = Field(
        description="An enrollment event's type, or a milestone's (`module_unlocked`, "
        "`waitlisted`, `waitlist_left`)"
    )
    occurred_at: str
    status: str | None = Field(description="The enrolment's status after the change")
    item_id: str | None = Field(description="The item a progress report changed")
    item_status: str | None
    score: float | None
    module_id: str | None
    reason: str | None = Field(description="`waitlist_left`: why the learner left the queue")
    request_id: str | None


class LearnerHistoryPage(BaseModel):
    items: list[LearnerHistoryEntry]
    next_cursor: str | None


async def course_history(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    query = page_query(request)
    position = decode_cursor(query.cursor, "before")
    before = _whole(position["before"], MAX_VERSION) if position else None
    actor = who.actor()
    current, latest, _ = await course_of_record(request, course_id)
    if not may_read_history(current, actor):
        raise Problem.of(
            403,
            "not-course-owner",
            "a course's history is for its owner, its co-instructors and admins",
        )
    rows = await request.app[HISTORY].course_history(
        course_id, before, query.limit, since(request), reached=latest
    )
    # The changes are served as stored (JSON text), never decoded and encoded again.
    items = [course_entry(r, orjson.Fragment(r["changes"])) for r in rows]
    last = items[query.limit - 1] if len(items) > query.limit else None
    cursor = {"before": str(last["version"])} if last else None
    body = orjson.dumps(page_body(items, query.limit, cursor))
    return web.Response(body=body, content_type="application/json")


def _whole(raw: str, most: int) -> int:
    """A cursor's number, within the range of its column (a crafted one is a 422)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > most:
        raise validation_problem([("cursor", "not a cursor from this list")])
    return int(raw)


def _position(position: dict[str, Any] | None) -> tuple[int, int, int] | None:
    if position is None:
        return None
    version = _whole(position["version"], MAX_VERSION)
    return version, _whole(position["rank"], 2**15 - 1), _whole(position["offset"], 2**63 - 1)


async def learner_history(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    user_id = request.match_info["userId"]
    query = page_query(request)
    after = _position(decode_cursor(query.cursor, "version", "rank", "offset"))
    actor = who.actor()
    course, _, _ = await course_of_record(request, course_id)
    if not may_read_enrollments_of(actor, user_id) and not on_staff(course, actor):
        raise Problem.of(
            403,
            "not-course-owner",
            "a learner's history is visible to the learner, the owner and staff, "
            "admins and services",
        )
    history = request.app[HISTORY]
    rows = await history.learner_history(course_id, user_id, after, query.limit, since(request))
    if not rows and after is None:  # the table may have the learner the mirror has not yet
        _, found = await request.app[READS].read_enrollment(course_id, user_id, since(request))
        if found is not None:
            rows = await history.learner_history(
                course_id, user_id, None, query.limit, since(request), exists=True
            )
    if not rows and after is None:
        raise Problem.of(404, "not-enrolled", f"{user_id} was never enrolled in {course_id}")
    items = [learner_entry(r) for r in rows]
    last = rows[query.limit - 1] if len(rows) > query.limit else None
    cursor = (
        {
            "version": str(last["version"]),
            "rank": str(last["rank"]),
            "offset": str(last["source_offset"]),
        }
        if last
        else None
    )
    return json_response(page_body(items, query.limit, cursor))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}/history",
        course_history,
        summary="A course's authoring changes, newest first, field by field (owner, "
        "co-instructor, admin)",
        tag="courses",
        read_spends_limit=True,
        responses={200: ("A page of versions with their changes", CourseHistoryPage)},
        errors=(401, 403, 404, 422, 503),
        params=(COURSE_ID, *PAGE_PARAMS, CONSISTENCY_TOKEN),
    ),
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}/enrollments/{userId}/history",
        learner_history,
        summary="Every change to a learner's record, oldest first: enrolments, "
        "cancellations, progress reports, milestones (whoever may read the enrolment)",
        tag="enrollments",
        read_spends_limit=True,
        responses={200: ("A page of changes", LearnerHistoryPage)},
        errors=(401, 403, 404, 422, 503),
        params=(
            COURSE_ID,
            Param("userId", "path", "The learner's `sub`", required=True),
            *PAGE_PARAMS,
            CONSISTENCY_TOKEN,
        ),
    ),
]

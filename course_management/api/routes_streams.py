"""Live event streams (CONTRACT §5.4), `text/event-stream`: a course's course events,
enrolment events and milestones, or one learner's enrolment events and milestones, as
they are published. The wire format is aiohttp-sse's; where a stream reads from and how
it resumes is the Live port's (gateways/live_events.py).

Access is checked when a stream opens, and the stream ends when the caller's token
expires (decision 62): a caller who lost access meanwhile is refused when they reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from course_management.api.auth import Principal
from course_management.api.http import require_principal
from course_management.api.openapi import Endpoint, Param
from course_management.api.ports import LIVE
from course_management.api.problems import Problem
from course_management.api.route_helpers import (
    COURSE_ID,
    course_id_param,
    existing_course,
    visible_course,
)
from course_management.domain.access import (
    may_follow_course,
    may_read_enrollments_of,
    may_read_every_course_enrollment,
    on_staff,
)
from course_management.domain.stream_ids import BadStreamId, StreamPosition, decode, scope_of
from course_management.domain.times import parse_rfc3339

log = logging.getLogger(__name__)

PING_SECONDS = 10.0  # the contract's "at least every 15 s", with the writes' delays


def _bad(field: str, message: str) -> Problem:
    slug = f"bad-{field.lower()}"
    return Problem.of(400, slug, message, errors=[{"field": field, "message": message}])


def _start(
    request: web.Request, scope: str, topics: int
) -> tuple[StreamPosition | None, datetime | None]:
    """Where the stream starts: after `Last-Event-ID`, at `?since=`, or now."""
    last = request.headers.get("Last-Event-ID")
    if last is not None and last.strip():
        try:
            return decode(last, scope, topics), None
        except BadStreamId as exc:
            raise _bad("Last-Event-ID", str(exc)) from None
    raw = request.query.get("since")
    if raw is None:
        return None, None
    try:
        since = parse_rfc3339(raw)
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise _bad("since", "an RFC 3339 date and time with its offset: 2026-12-06T09:00:00Z")
    if since > datetime.now(UTC):
        raise _bad("since", "a moment in the future: nothing has happened there yet")
    return None, since


async def course_events(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    actor = who.actor()
    if may_read_every_course_enrollment(actor):
        course = await existing_course(request, course_id)
    else:
        course = await visible_course(request, course_id)
    if not may_follow_course(course, actor):
        raise Problem.of(
            403,
            "not-course-owner",
            "a course's stream is for its owner and staff, admins and services",
        )
    return await _serve(request, who, course_id, None)


async def learner_events(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    user_id = request.match_info["userId"]
    actor = who.actor()
    if may_read_every_course_enrollment(actor):
        await existing_course(request, course_id)
    else:
        course = await visible_course(request, course_id)
        if not may_read_enrollments_of(actor, user_id) and not on_staff(course, actor):
            raise Problem.of(
                403,
                "not-course-owner",
                "a learner's stream is for the learner, the owner and staff, admins and services",
            )
    return await _serve(request, who, course_id, user_id)


async def _serve(
    request: web.Request, who: Principal, course_id: str, user_id: str | None
) -> web.StreamResponse:
    scope = scope_of(course_id, user_id)
    position, since = _start(request, scope, 3 if user_id is None else 2)
    live = request.app[LIVE]
    try:
        stream = await live.open(course_id, user_id, position, scope, since)  # 503 when full
    except BadStreamId as exc:  # past the end of the topics: not an id of this stream
        raise _bad("Last-Event-ID", str(exc)) from None
    try:
        async with sse_response(
            request, ping_interval=PING_SECONDS, headers={"Cache-Control": "no-cache"}
        ) as sse:
            pump = asyncio.create_task(_pump(live, stream, sse))
            gone = asyncio.create_task(sse.wait())  # ends when the client goes away
            left = None if math.isinf(who.expires_at) else max(0.0, who.expires_at - time.time())
            await asyncio.wait({pump, gone}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for task in (pump, gone):
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, ConnectionError):
                    pass
                except Exception:  # the headers are out: end the stream, the client resumes
                    log.exception("live stream ended by an error", extra={"course_id": course_id})
        return sse
    finally:
        live.close(stream)


async def _pump(live: Any, stream: Any, sse: Any) -> None:
    async with contextlib.aclosing(live.events(stream)) as events:  # its reader stops too
        async for event, position in events:
            await sse.send(event.data.decode(), id=position.encode(), event=event.event_type)


EVENT_STREAM = (
    "`text/event-stream`: each event is `id` (its place, for `Last-Event-ID`), `event` (its "
    "`event_type`) and `data` (the event as JSON, the fields of its Avro record); a comment "
    "line at least every 15 s"
)

_STREAM_PARAMS = (
    Param(
        "Last-Event-ID",
        "header",
        "Resume just after this event (the `id` of the last event received): every later "
        "event, none twice, on any worker",
    ),
    Param(
        "since",
        "query",
        "Start at this moment instead (RFC 3339, not in the future)",
        schema={"type": "string", "format": "date-time"},
    ),
)

ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}/events",
        course_events,
        summary="A live stream (text/event-stream) of every course event, enrolment event "
        "and milestone of the course (owner, staff, admin, service)",
        tag="streams",
        responses={200: (EVENT_STREAM, {"type": "string"})},
        errors=(400, 401, 403, 404, 503),
        params=(COURSE_ID, *_STREAM_PARAMS),
        content_type="text/event-stream",
    ),
    Endpoint(
        "GET",
        "/api/v1/courses/{courseId}/enrollments/{userId}/events",
        learner_events,
        summary="A live stream (text/event-stream) of one learner's enrolment events and "
        "milestones (whoever may read that enrolment)",
        tag="streams",
        responses={200: (EVENT_STREAM, {"type": "string"})},
        errors=(400, 401, 403, 404, 503),
        params=(
            COURSE_ID,
            Param("userId", "path", "The learner's `sub`", required=True),
            *_STREAM_PARAMS,
        ),
        content_type="text/event-stream",
    ),
]

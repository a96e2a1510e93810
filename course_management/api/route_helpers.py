"""What more than one route module needs: the course named in the path, whether the
caller may see it, and a write sent as a command. Route modules import these from here,
never from each other."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from course_management.api.auth import Principal
from course_management.api.http import canonical_hash, principal, since
from course_management.api.openapi import Param
from course_management.api.ports import READS, WRITES
from course_management.api.problems import Problem
from course_management.domain.access import can_see, may_see
from course_management.domain.commands import CourseCommand
from course_management.domain.outcomes import RefusalKind, Reply
from course_management.domain.records import course_of
from course_management.infra.cache import CourseEntry

COURSE_ID = Param(
    "courseId", "path", "The course id (a UUID)", schema={"type": "string", "format": "uuid"}
)


def course_id_param(request: web.Request) -> str:
    raw = request.match_info["courseId"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise Problem.of(404, "course-not-found", f"no course {raw!r}") from None


def course_not_found(course_id: str) -> Problem:
    return Problem.of(404, "course-not-found", f"no course {course_id}")


async def visible_course(request: web.Request, course_id: str) -> dict[str, Any]:
    course = course_of(await request.app[READS].read_course_state(course_id, since(request)))
    who = principal(request)
    if course is None or not can_see(course, who.actor() if who else None):
        raise course_not_found(course_id)
    return course


async def existing_course(request: web.Request, course_id: str) -> dict[str, Any]:
    """The course, for a caller who may read every course's data (admins, services):
    404 only when there is no such course (deleted included)."""
    course = course_of(await request.app[READS].read_course_state(course_id, since(request)))
    if course is None:
        raise course_not_found(course_id)
    return course


def visible(entry: CourseEntry | None, who: Principal | None) -> CourseEntry | None:
    """The course's entry when it exists and the caller may see it."""
    if entry is None or entry.deleted:
        return None
    caller = who.actor() if who else None
    if may_see(entry.status, entry.owner, caller):
        return entry
    return entry if caller is not None and entry.staff_role(caller.id) else None


# Refusals that would tell a caller who may not see a draft that it exists.
_TELLING = (RefusalKind.COURSE_NOT_PUBLISHED, RefusalKind.NOT_ENROLLED)


async def hiding_drafts(request: web.Request, course_id: str, reply: Reply) -> Reply:
    """The reply, unless it is a refusal that would show a draft to a caller who may not
    see it: then the course does not exist for them (404 `course-not-found`), as on every
    read. Costs a read only on those refusals."""
    refusal = reply.refusal
    if refusal is not None and refusal.kind in _TELLING:
        await visible_course(request, course_id)
    return reply


async def send_command(
    request: web.Request,
    who: Principal,
    command_type: str,
    course_id: str,
    payload: dict[str, Any],
    expected_version: int | None = None,
) -> Reply:
    """Turn a write into a command on Kafka and wait for the agent's reply."""
    return await request.app[WRITES].execute(
        CourseCommand(
            command_id=str(uuid.uuid4()),
            command_type=command_type,
            course_id=course_id,
            occurred_at=datetime.now(UTC),
            actor=who.actor(),
            payload=payload,
            payload_hash=canonical_hash(payload),
            expected_version=expected_version,
        )
    )

"""A past version of a course (CONTRACT §5.3): `?version=N` on the course and modules reads
(api/routes_courses.py), served from the history (the History port, gateways/history.py)
exactly as that version's event published it."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from course_management.api.http import charge_of, principal, since
from course_management.api.openapi import Param
from course_management.api.ports import HISTORY, READS
from course_management.api.problems import Problem
from course_management.api.route_helpers import course_id_param, course_not_found
from course_management.domain.access import may_read_versions, sees_content_keys
from course_management.domain.uploads import without_content_keys

MAX_VERSION = 2**31 - 1  # versions are Avro ints

VERSION = Param(
    "version",
    "query",
    "A past version (1..the current one): the course exactly as that version's event "
    "published it. Who may read the course now may read its versions; a deleted course's "
    "versions, its owner and admins",
    schema={"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
)


def version_param(request: web.Request) -> int | None:
    """`?version=N` (None: absent); anything but 1..MAX_VERSION is a 400 naming it."""
    raw = request.query.get("version")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not 1 <= int(raw) <= MAX_VERSION:
        raise Problem.of(
            400,
            "bad-version",
            f"version must be a whole number from 1 to {MAX_VERSION}",
            errors=[{"field": "version", "message": "a version number from 1"}],
        )
    return int(raw)


def _version_not_found(course_id: str, version: int, why: str = "never existed") -> Problem:
    return Problem.of(404, "version-not-found", f"version {version} of course {course_id} {why}")


async def course_of_record(
    request: web.Request, course_id: str
) -> tuple[dict[str, Any], int, bool]:
    """(the course as it is, or as it was when deleted; its current version; whether it
    is deleted), for the history reads. 404 for a course that never existed, or one the
    caller may not read the versions of (a draft that is not theirs, a deleted course
    that is not theirs: it does not exist for them)."""
    who = principal(request)
    caller = who.actor() if who else None
    # The rate-limit request is spent by the same Redis script (`read_spends_limit`).
    entry = await request.app[READS].read_course(course_id, since(request), charge_of(request))
    if entry is None:
        raise course_not_found(course_id)
    if entry.deleted:  # the course as it was: the version before its deletion
        last = await request.app[HISTORY].course_version(course_id, entry.version - 1)
        course = json.loads(last) if last else None
    else:
        course = entry.state()["course"]
    if course is None or not may_read_versions(course, caller, entry.deleted):
        raise course_not_found(course_id)
    return course, entry.version, entry.deleted


async def course_at_version(
    request: web.Request, version: int
) -> tuple[dict[str, Any], bytes | None]:
    """A past version of the course for `GET ...?version=N`: (the course, its bytes when
    they may be served as the event published them; None: without the content keys)."""
    course_id = course_id_param(request)
    who = principal(request)
    caller = who.actor() if who else None
    current, latest, _ = await course_of_record(request, course_id)
    if version > latest:
        raise _version_not_found(course_id, version)
    snapshot = await request.app[HISTORY].course_version(course_id, version)
    if snapshot is None:
        raise _version_not_found(course_id, version, "is the deletion of the course")
    course: dict[str, Any] = json.loads(snapshot)
    if sees_content_keys(current["instructor"]["id"], caller, current):
        return course, snapshot.encode()
    return without_content_keys(course), None

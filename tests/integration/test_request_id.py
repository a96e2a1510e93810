"""A request's X-Request-ID travels into the headers of every event its write produced:
the course's own events, and an enrolment's (through the router and the course agent).
(The log lines' context is unit-tested in tests/unit/test_log_context.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from course_management.config import Settings
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS
from tests.support import ONE_MODULE, OWNER, auth, read_topic

HEADER = "x-request-id"  # CONTRACT §3 names it; spelt out here so a rename fails this test


def _carrying(records: list[Any], request_id: str) -> list[Any]:
    return [r for r in records if (HEADER, request_id.encode()) in (r.headers or ())]


async def test_the_request_id_is_on_every_event_a_write_produced(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    create_id = f"create-{uuid.uuid4()}"
    body = {"title": "Traced", "status": "published", "modules": [ONE_MODULE]}
    created = await http.post(
        "/api/v1/courses/create", json=body, headers={**OWNER, "X-Request-ID": create_id}
    )
    assert created.status == 201, await created.text()
    course_id = (await created.json())["id"]
    events = await read_topic(
        settings, COURSE_EVENTS, lambda rs: bool(_carrying(rs, create_id)), deadline_s=30
    )
    mine = [r for r in events if r.key == course_id.encode()]
    assert mine and _carrying(mine, create_id) == mine  # its course_created carries the id

    enroll_id = f"enroll-{uuid.uuid4()}"
    enrolled = await http.post(
        f"/api/v1/courses/{course_id}/enroll",
        headers={**auth("traced-student", "student"), "X-Request-ID": enroll_id},
    )
    assert enrolled.status in (200, 201), await enrolled.text()
    events = await read_topic(
        settings, ENROLLMENT_EVENTS, lambda rs: bool(_carrying(rs, enroll_id)), deadline_s=30
    )
    assert len(_carrying(events, enroll_id)) == 1  # enrollment_created, and only that one
    assert not _carrying(events, create_id)

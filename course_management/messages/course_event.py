"""`CourseEvent` on course-events (schemas/course_event.avsc), kept forever: what happened
to a course, with its snapshot. The type is the domain's (domain/events.py): the
decisions make these events."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from course_management.domain.events import CourseEvent
from course_management.topology import COURSE_EVENTS, spec

TOPIC = COURSE_EVENTS
SUBJECT = spec(TOPIC).subject
FIELDS = tuple(CourseEvent.__annotations__)


def encode(event: CourseEvent) -> dict[str, Any]:
    return dict(event)


def decode(value: dict[str, Any]) -> CourseEvent:
    missing = [name for name in FIELDS if name not in value]
    if missing:
        raise ValueError(f"a course event without {', '.join(missing)}")
    return {
        "event_id": value["event_id"],
        "event_type": value["event_type"],
        "occurred_at": value["occurred_at"].astimezone(UTC),
        "course_id": value["course_id"],
        "version": value["version"],
        "actor_id": value["actor_id"],
        "course": value["course"],
    }

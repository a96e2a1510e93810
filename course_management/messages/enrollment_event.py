"""`EnrollmentEvent` on enrollment-events (schemas/enrollment_event.avsc), kept forever:
every change to a learner's enrollment, with its state after it. The type is the
domain's (domain/events.py)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from course_management.domain.events import EnrollmentEvent
from course_management.topology import ENROLLMENT_EVENTS, spec

TOPIC = ENROLLMENT_EVENTS
SUBJECT = spec(TOPIC).subject
OPTIONAL = ("reactivated", "item_id", "module_id")  # added with defaults: absent from older records
FIELDS = tuple(name for name in EnrollmentEvent.__annotations__ if name not in OPTIONAL)


def encode(event: EnrollmentEvent) -> dict[str, Any]:
    return dict(event)


def decode(value: dict[str, Any]) -> EnrollmentEvent:
    missing = [name for name in FIELDS if name not in value]
    if missing:
        raise ValueError(f"an enrollment event without {', '.join(missing)}")
    return {
        "event_id": value["event_id"],
        "event_type": value["event_type"],
        "occurred_at": value["occurred_at"].astimezone(UTC),
        "course_id": value["course_id"],
        "user_id": value["user_id"],
        "version": value["version"],
        "enrollment": value["enrollment"],
        "reactivated": value.get("reactivated"),
        "item_id": value.get("item_id"),
        "module_id": value.get("module_id"),
    }

"""`UserEnrolled` on user-enrolled (schemas/user_enrolled.avsc): a learner enrolled in a
course, written by other services and by this service's enrolment route."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from course_management.domain.enrollment import EnrollInput, malformed_input
from course_management.topology import USER_ENROLLED, spec

TOPIC = USER_ENROLLED
SUBJECT = spec(TOPIC).subject
KIND = "user_enrolled"  # its kind among the course agent's inputs
REQUIRED = ("event_id", "course_id", "user_id")


def check(value: dict[str, Any]) -> None:
    """Raises ValueError naming what makes the record unusable (an empty id, ...)."""
    reason = malformed_input(value, REQUIRED)
    if reason:
        raise ValueError(reason)


def encode(enroll: EnrollInput) -> dict[str, Any]:
    return {
        "event_id": enroll.event_id,
        "occurred_at": enroll.occurred_at,
        "user_id": enroll.user_id,
        "course_id": enroll.course_id,
        "source": enroll.source,
    }


def decode(value: dict[str, Any]) -> EnrollInput:
    check(value)
    return EnrollInput(
        event_id=value["event_id"],
        course_id=value["course_id"],
        user_id=value["user_id"],
        occurred_at=value["occurred_at"].astimezone(UTC),
        source=value["source"],
    )

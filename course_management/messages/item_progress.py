"""`ItemProgress` on course-progress (schemas/item_progress.avsc): a learner's progress on
one item, written by other services and by this service's progress route."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from course_management.domain.enrollment import ProgressInput, malformed_input
from course_management.topology import COURSE_PROGRESS, spec

TOPIC = COURSE_PROGRESS
SUBJECT = spec(TOPIC).subject
KIND = "item_progress"  # its kind among the course agent's inputs
REQUIRED = ("event_id", "course_id", "user_id", "item_id")


def check(value: dict[str, Any]) -> None:
    """Raises ValueError naming what makes the record unusable (an empty id, ...)."""
    reason = malformed_input(value, REQUIRED)
    if reason:
        raise ValueError(reason)


def encode(progress: ProgressInput) -> dict[str, Any]:
    return {
        "event_id": progress.event_id,
        "occurred_at": progress.occurred_at,
        "user_id": progress.user_id,
        "course_id": progress.course_id,
        "item_id": progress.item_id,
        "status": progress.status,
        "score": progress.score,
    }


def decode(value: dict[str, Any]) -> ProgressInput:
    check(value)
    return ProgressInput(
        event_id=value["event_id"],
        course_id=value["course_id"],
        user_id=value["user_id"],
        item_id=value["item_id"],
        status=value["status"],
        score=value["score"],
        occurred_at=value["occurred_at"].astimezone(UTC),
    )

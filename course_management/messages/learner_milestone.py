"""`LearnerMilestone` on learner-milestones (schemas/learner_milestone.avsc), kept
forever: the moments of a learner's path (a module unlocked). The type is the domain's
(domain/events.py)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from course_management.domain.events import LearnerMilestone
from course_management.topology import LEARNER_MILESTONES, spec

TOPIC = LEARNER_MILESTONES
SUBJECT = spec(TOPIC).subject
OPTIONAL = ("enrollment_version",)  # added with a default: absent from older records
FIELDS = tuple(name for name in LearnerMilestone.__annotations__ if name not in OPTIONAL)


def encode(milestone: LearnerMilestone) -> dict[str, Any]:
    return dict(milestone)


def decode(value: dict[str, Any]) -> LearnerMilestone:
    missing = [name for name in FIELDS if name not in value]
    if missing:
        raise ValueError(f"a learner milestone without {', '.join(missing)}")
    return {
        "event_id": value["event_id"],
        "event_type": value["event_type"],
        "occurred_at": value["occurred_at"].astimezone(UTC),
        "course_id": value["course_id"],
        "user_id": value["user_id"],
        "module_id": value["module_id"],
        "waitlist_position": value["waitlist_position"],
        "reason": value["reason"],
        "enrollment_version": value.get("enrollment_version"),
    }

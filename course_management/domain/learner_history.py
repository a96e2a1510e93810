"""A learner's record change by change (CONTRACT §5.3): the rows of
`GET .../enrollments/{userId}/history`, drawn from the enrollment events and the
learner's milestones. Pure.

A row is `{"event_type", "occurred_at", "status", "item_id", "item_status", "score",
"module_id", "request_id"}` and `reason` (why a learner left a waitlist). The rows of a
learner are in the order the agent decided them: by the learner's enrollment `version`
(an event's is the version it made, a milestone's the version it happened at: waiting
changes none), then the events of a version before its milestones (`rank`), then by
their offset in their topic. Not by `occurred_at`: a progress report carries the time
its service says it happened, which may be before changes decided earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from course_management.domain.times import rfc3339

Row = dict[str, Any]

# Within one version: its events, then the milestones that happened at it.
EVENT_RANK, MILESTONE_RANK = 1, 2


def _item(enrollment: Mapping[str, Any], item_id: str | None) -> Mapping[str, Any] | None:
    if item_id is None:
        return None
    items = (enrollment.get("progress") or {}).get("items") or ()
    return next((item for item in items if item["item_id"] == item_id), None)


def enrollment_row(event: Mapping[str, Any]) -> Row:
    """An enrollment event's row: the status after it and, for a progress report, the
    item it changed with that item's status and score after it."""
    enrollment = event["enrollment"]
    item_id = event.get("item_id")
    item = _item(enrollment, item_id)
    return {
        "event_id": event["event_id"],
        "course_id": event["course_id"],
        "user_id": event["user_id"],
        "event_type": event["event_type"],
        "occurred_at": event["occurred_at"],
        "rank": EVENT_RANK,
        "version": event["version"],
        "status": enrollment["status"],
        "item_id": item_id,
        "item_status": item["status"] if item is not None else None,
        "score": item.get("score") if item is not None else None,
        "module_id": event.get("module_id"),
        "reason": None,
    }


def milestone_row(milestone: Mapping[str, Any]) -> Row:
    """A milestone's row: a module opened, or a place on the waitlist taken or left."""
    kind = milestone["event_type"]
    return {
        "event_id": milestone["event_id"],
        "course_id": milestone["course_id"],
        "user_id": milestone["user_id"],
        "event_type": kind,
        "occurred_at": milestone["occurred_at"],
        "rank": MILESTONE_RANK,
        "version": milestone.get("enrollment_version") or 0,  # 0: before 2026-12-06
        "status": "waitlisted" if kind == "waitlisted" else None,
        "item_id": None,
        "item_status": None,
        "score": None,
        "module_id": milestone.get("module_id"),
        "reason": milestone.get("reason"),
    }


ENTRY_FIELDS = (
    "event_type", "status", "item_id", "item_status", "score", "module_id", "reason",
    "request_id",
)  # fmt: skip


def learner_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as the history route (and `course-management history`) shows it."""
    entry = {name: row[name] for name in ENTRY_FIELDS}
    return {"occurred_at": rfc3339(row["occurred_at"]), **entry}

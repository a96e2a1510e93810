"""A learner's history rows (domain/learner_history.py), drawn from enrollment events and
milestones, and how the route shows them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from course_management.domain.learner_history import (
    EVENT_RANK,
    RANKS,
    enrollment_row,
    learner_entry,
    milestone_row,
)

AT = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def progress_event(item_id: str | None, event_type: str = "progress_updated") -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "event_type": event_type,
        "occurred_at": AT,
        "course_id": "c",
        "user_id": "u",
        "version": 4,
        "enrollment": {
            "status": "active",
            "progress": {
                "items": [
                    {"item_id": "lesson", "status": "completed", "score": None},
                    {"item_id": "quiz", "status": "failed", "score": 3.0},
                ]
            },
        },
        "reactivated": None,
        "item_id": item_id,
        "module_id": "m-1" if item_id else None,
    }


def test_a_progress_event_names_its_item_with_the_item_s_state_after_it() -> None:
    row = enrollment_row(progress_event("quiz"))
    assert (row["item_id"], row["item_status"], row["score"], row["module_id"]) == (
        "quiz",
        "failed",
        3.0,
        "m-1",
    )
    assert (row["status"], row["version"], row["rank"]) == ("active", 4, EVENT_RANK)


def test_an_event_without_an_item_has_none_and_an_older_one_too() -> None:
    for event in (progress_event(None, "enrollment_created"), progress_event(None)):
        row = enrollment_row(event)
        assert (row["item_id"], row["item_status"], row["score"]) == (None, None, None)


def test_an_item_no_longer_in_the_snapshot_is_named_without_a_state() -> None:
    row = enrollment_row(progress_event("removed-since"))
    assert (row["item_id"], row["item_status"]) == ("removed-since", None)


def milestone(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"m-{kind}",
        "event_type": kind,
        "occurred_at": AT,
        "course_id": "c",
        "user_id": "u",
        "module_id": None,
        "waitlist_position": None,
        "reason": None,
        **fields,
    }


def test_within_one_decision_the_queue_comes_first_and_an_opened_module_last() -> None:
    left = milestone_row(milestone("waitlist_left", reason="promoted"))
    enrolled = enrollment_row(progress_event(None, "enrollment_created"))
    opened = milestone_row(milestone("module_unlocked", module_id="m-2"))
    later_kind = milestone_row(milestone("some_future_kind"))
    ordered = sorted(
        [opened, enrolled, later_kind, left], key=lambda r: (r["occurred_at"], r["rank"])
    )
    assert [r["event_type"] for r in ordered][:2] == ["waitlist_left", "enrollment_created"]
    assert left["reason"] == "promoted" and left["status"] is None
    assert opened["module_id"] == "m-2" and opened["rank"] == RANKS["module_unlocked"]
    assert later_kind["rank"] > EVENT_RANK  # an unknown kind never comes before the events
    assert milestone_row(milestone("waitlisted"))["status"] == "waitlisted"


def test_the_route_shows_a_row_with_an_rfc3339_time_and_no_bookkeeping() -> None:
    row = {**enrollment_row(progress_event("quiz")), "source_offset": 12, "request_id": "r-1"}
    entry = learner_entry(row)
    assert entry == {
        "occurred_at": "2026-12-06T09:30:00.000Z",
        "event_type": "progress_updated",
        "status": "active",
        "item_id": "quiz",
        "item_status": "failed",
        "score": 3.0,
        "module_id": "m-1",
        "reason": None,
        "request_id": "r-1",
    }

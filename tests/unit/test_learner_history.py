"""A learner's history rows (domain/learner_history.py), drawn from enrollment events and
milestones, and how the route shows them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from course_management.domain.learner_history import (
    EVENT_RANK,
    MILESTONE_RANK,
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


def order(row: dict[str, Any]) -> tuple[int, int]:
    return row["version"], row["rank"]


def test_rows_are_in_the_agent_s_order_not_the_reported_times() -> None:
    """A cancel (version 2), a place on the waitlist (at 2), leaving it to be promoted
    (at 2), the enrolment (3), a report claiming an older time that opened a module (4)."""
    cancel = enrollment_row({**progress_event(None, "enrollment_cancelled"), "version": 2})
    waiting = milestone_row(milestone("waitlisted", enrollment_version=2))
    left = milestone_row(milestone("waitlist_left", reason="promoted", enrollment_version=2))
    enrolled = enrollment_row({**progress_event(None, "enrollment_created"), "version": 3})
    early = datetime(2026, 12, 1, tzinfo=UTC)
    report = enrollment_row({**progress_event("quiz"), "version": 4, "occurred_at": early})
    opened = milestone_row(milestone("module_unlocked", module_id="m-2", enrollment_version=4))
    rows = [opened, report, enrolled, left, waiting, cancel]
    by_version = sorted(rows, key=order)  # the offset breaks ties within one topic
    assert [r["event_type"] for r in by_version] in (
        [
            "enrollment_cancelled",
            "waitlisted",
            "waitlist_left",
            "enrollment_created",
            "progress_updated",
            "module_unlocked",
        ],
        [
            "enrollment_cancelled",
            "waitlist_left",
            "waitlisted",
            "enrollment_created",
            "progress_updated",
            "module_unlocked",
        ],
    )
    assert waiting["rank"] == left["rank"] == MILESTONE_RANK > EVENT_RANK
    assert left["reason"] == "promoted" and left["status"] is None
    assert waiting["status"] == "waitlisted"


def test_a_milestone_from_before_versions_were_kept_comes_first() -> None:
    assert milestone_row(milestone("module_unlocked", module_id="m"))["version"] == 0


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

"""The chaos run's learning-path checks (chaos/paths.py) find what they look for. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chaos.paths import check_paths

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
DATE = "2026-12-06T09:10:00.000Z"


def course(shape: str) -> dict[str, Any]:
    first = {"id": "m0", "sequential": True, "items": [{"id": "a"}, {"id": "b"}]}
    second: dict[str, Any] = {"id": "m1", "items": [{"id": "c"}]}
    if shape == "path":
        second["prerequisite_module_ids"] = ["m0"]
    else:
        second["unlock_at"] = DATE
    return {"course_id": "c", "course": {"id": "c", "modules": [first, second]}}


def snapshot(
    version: int, kind: str, minute: int, done: dict[str, str], second: str = "locked"
) -> dict[str, Any]:
    return {
        "event_id": f"e{version}",
        "event_type": kind,
        "course_id": "c",
        "user_id": "u",
        "version": version,
        "occurred_at": T0 + timedelta(minutes=minute),
        "enrollment": {
            "progress": {
                "items": [
                    {"item_id": i, "status": done.get(i, "not_started")} for i in ("a", "b", "c")
                ],
                "modules": [
                    {"module_id": "m0", "state": "unlocked"},
                    {"module_id": "m1", "state": second},
                ],
            }
        },
    }


def milestone(event_id: str, minute: int, stamp_minute: int | None = None) -> dict[str, Any]:
    at = T0 + timedelta(minutes=minute)
    stamp = T0 + timedelta(minutes=stamp_minute if stamp_minute is not None else minute)
    return {
        "event_id": event_id,
        "event_type": "module_unlocked",
        "course_id": "c",
        "user_id": "u",
        "module_id": "m1",
        "occurred_at": at,
        "timestamp_ms": stamp.timestamp() * 1000,
    }


def kinds(found: list[tuple[str, str, str]]) -> list[str]:
    return sorted(kind for kind, _, _ in found)


def test_a_path_walked_in_order_with_its_milestone_is_clean() -> None:
    events = [
        snapshot(1, "enrollment_created", 0, {}),
        snapshot(2, "progress_updated", 1, {"a": "completed"}),
        snapshot(3, "progress_updated", 2, {"a": "completed", "b": "completed"}, "unlocked"),
        snapshot(4, "progress_updated", 3, {"a": "completed", "b": "completed", "c": "started"}),
    ]
    assert check_paths([course("path")], events, [milestone("x", 2)]) == []


def test_locked_reports_applied_are_found() -> None:
    events = [
        snapshot(1, "enrollment_created", 0, {}),
        snapshot(2, "progress_updated", 1, {"b": "started"}),  # before a: sequential
        snapshot(3, "progress_updated", 2, {"b": "started", "c": "completed"}),  # m0 undone
    ]
    found = check_paths([course("path")], events, [])
    assert kinds(found) == ["locked report applied", "locked report applied"]


def test_a_dated_module_reported_before_its_moment_and_early_or_double_milestones() -> None:
    events = [
        snapshot(1, "enrollment_created", 0, {}),
        snapshot(2, "progress_updated", 5, {"c": "started"}),  # 09:05, before 09:10
    ]
    early = [milestone("x", 9), milestone("y", 11, stamp_minute=9)]  # two ids, both early
    found = check_paths([course("dated")], events, early)
    assert kinds(found) == [
        "locked report applied",
        "milestone before its moment",
        "milestone before its moment",
        "milestone twice",
    ]


def test_a_missing_milestone_is_found() -> None:
    events = [snapshot(1, "enrollment_created", 0, {})]
    assert kinds(check_paths([course("dated")], events, [])) == ["milestone missing"]
    walked = [
        snapshot(1, "enrollment_created", 0, {}),
        snapshot(2, "progress_updated", 1, {"a": "completed"}),
        snapshot(3, "progress_updated", 2, {"a": "completed", "b": "completed"}),
    ]
    assert kinds(check_paths([course("path")], walked, [])) == ["milestone missing"]

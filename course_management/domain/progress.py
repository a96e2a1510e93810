"""What a learner's enrollment looks like to readers: each item's state as their reports
made it, and the learning path (domain/paths.py) drawn at a moment. Pure.

The view depends on the moment only through time locks: a view drawn before a module's
`unlocks_at` is stale from then on (`is_stale`), and readers draw it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from course_management.domain.paths import PathState, path_state
from course_management.domain.records import Course, EnrollmentRecord, ItemState
from course_management.domain.times import rfc3339


def item_ids_in_order(course: Course) -> list[str]:
    return [item["id"] for module in course["modules"] for item in module["items"]]


def progress_of(
    course: Course,
    items: dict[str, ItemState],
    completed_at: str | None,
    enrolled_at: str,
    now: datetime,
) -> dict[str, Any]:
    """Totals over the requirements met, each item's state and each module's, in course
    order, at `now`; completed stays completed (`completed_at`)."""
    path = path_state(course, enrolled_at, items, now)
    return view_of_path(course, items, completed_at, path)


def view_of_path(
    course: Course, items: dict[str, ItemState], completed_at: str | None, path: PathState
) -> dict[str, Any]:
    last = max((s.get("at", "") for s in items.values()), default="") or None
    return {
        "completed_items": len(path.met),
        "total_items": path.total,
        "percent": path.percent,
        "completed_at": completed_at,
        "last_activity_at": last,
        "next_item_id": path.next_item_id,
        "items": [
            _item_view(i, items.get(i), i in path.locked, i in path.met)
            for i in item_ids_in_order(course)
        ],
        "modules": [
            {"module_id": m.module_id, "state": m.state, "unlocks_at": m.unlocks_at}
            for m in path.modules
        ],
    }


def _item_view(item_id: str, state: ItemState | None, locked: bool, met: bool) -> dict[str, Any]:
    if not state:
        return {
            "item_id": item_id,
            "status": "not_started",
            "score": None,
            "completed_at": None,
            "locked": locked,
        }
    status = state.get("status", "started")
    if status == "failed" and met:  # its rule was relaxed since: met now
        status = "completed"
    return {
        "item_id": item_id,
        "status": status,
        "score": state.get("score"),
        "completed_at": (state.get("completed_at") or state.get("at"))
        if status == "completed"
        else None,
        "locked": locked,
    }


def public_view(
    record: EnrollmentRecord, course: Course, now: datetime, position: int | None = None
) -> dict[str, Any]:
    """The Enrollment of CONTRACT §3 (and §5.2) from the stored record, at `now`; a learner
    who waits has their `waitlist_position` (`position`), one never enrolled no
    `enrolled_at`, one taken off the queue the `cancel_reason`."""
    view: dict[str, Any] = {
        "course_id": record["course_id"],
        "user_id": record["user_id"],
        "status": record["status"],
        "enrolled_at": record["enrolled_at"] if record.get("enrolled", True) else None,
        "progress": progress_of(
            course, record.get("items", {}), record.get("completed_at"), record["enrolled_at"], now
        ),
    }
    if record["status"] == "waitlisted":
        view["waitlist_position"] = position
    if record.get("cancel_reason"):
        view["cancel_reason"] = record["cancel_reason"]
    return view


def stale_at(view: dict[str, Any], course: Course) -> str | None:
    """When the clock alone makes a drawn view wrong (None: never): the earliest
    `unlocks_at` of a module it shows locked whose prerequisites it shows completed (so
    only its time lock holds it). Readers draw the view again from then on (the Redis
    entry keeps this moment: infra/cache.py)."""
    shown = view.get("progress", {}).get("modules", ())
    states = {m["module_id"]: m["state"] for m in shown}
    prerequisites = {m["id"]: m.get("prerequisite_module_ids") or () for m in course["modules"]}
    moments = [
        m["unlocks_at"]
        for m in shown
        if m["state"] == "locked"
        and m.get("unlocks_at")
        and all(states.get(p) == "completed" for p in prerequisites.get(m["module_id"], ()))
    ]
    return min(moments) if moments else None


def is_stale(view: dict[str, Any], course: Course, now: datetime) -> bool:
    moment = stale_at(view, course)
    return moment is not None and moment <= rfc3339(now)


def completed_ids(record: EnrollmentRecord) -> list[str]:
    return sorted(i for i, s in record.get("items", {}).items() if s.get("status") == "completed")


def current_view(snapshot: dict[str, Any], course: Course | None, now: datetime) -> dict[str, Any]:
    """A mirrored enrollment snapshot with its progress recomputed against the course now.

    Snapshots carry each item's state (`progress.items`, since 2026-12-01) and the
    completed item ids (earlier); the oldest carry neither and keep the progress they
    were written with.
    """
    view = {k: v for k, v in snapshot.items() if k != "completed_item_ids"}
    stored = snapshot["progress"]
    items: dict[str, ItemState] | None = None
    if stored.get("items"):
        items = {
            i["item_id"]: _state_of_view(i) for i in stored["items"] if i["status"] != "not_started"
        }
    elif snapshot.get("completed_item_ids") is not None:
        items = {i: {"status": "completed"} for i in snapshot["completed_item_ids"]}
    if course is None or items is None:
        return view
    progress = progress_of(course, items, stored.get("completed_at"), snapshot["enrolled_at"], now)
    progress["last_activity_at"] = stored.get("last_activity_at")
    return {**view, "progress": progress}


def _state_of_view(item: dict[str, Any]) -> ItemState:
    state: ItemState = {"status": item["status"], "score": item.get("score")}
    if item.get("completed_at"):
        state["completed_at"] = item["completed_at"]
    return state

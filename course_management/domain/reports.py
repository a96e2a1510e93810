"""A learner's progress reports: an item's state as the join of its reports, the path's
locks and the milestones a report opens (CONTRACT §5.1). Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from course_management.domain.commands import derived_id
from course_management.domain.enrollment import (
    EnrollmentDecision,
    ProgressInput,
    cancelled_refusal,
    event_of,
    refused,
    with_transition,
)
from course_management.domain.events import LearnerMilestone
from course_management.domain.outcomes import Outcome, RefusalKind, invalid
from course_management.domain.paths import (
    PathState,
    item_of,
    lock_reason,
    module_of,
    newly_unlocked,
    path_state,
    report_status,
    score_error,
    time_lock_before,
)
from course_management.domain.progress import public_view, view_of_path
from course_management.domain.records import Course, EnrollmentRecord, ItemState
from course_management.domain.times import rfc3339

_RANK = {"started": 1, "failed": 2, "completed": 3}


def merge_report(
    current: ItemState | None, report: ProgressInput, item: dict[str, Any] | None = None
) -> ItemState:
    """An item's state with one more report joined in. The join is idempotent, commutative
    and associative, so the state is the same whatever the order of the reports and however
    often each arrives: the status is the highest any report made (started < failed <
    completed: never back), the score the best any report had (CONTRACT §5.1), the
    completion time the earliest of the reports that completed it, activity the latest
    report's. On a `min_score` item (`item`) a `completed` report completes it only with
    a score reaching `min_score`, else leaves it `failed` (domain.paths.report_status);
    the best score of its `completed` reports is kept for a rule relaxed later."""
    at = rfc3339(report.occurred_at)
    state: ItemState = {**(current or {})}
    best = state.get("score")
    if report.score is not None and (best is None or report.score > best):
        state["score"] = report.score
    else:
        state.setdefault("score", None)
    if report.status == "completed" and report.score is not None:
        best_completed = state.get("best_completed")
        if best_completed is None or report.score > best_completed:
            state["best_completed"] = report.score
    status = report_status(item or {}, report.status, report.score)
    if _RANK[status] > _RANK.get(state.get("status", ""), 0):
        state["status"] = status
    # the earliest report; a state kept from before first_at stays without it (its first
    # report is not known: domain.paths.first_reported_at takes it as long ago)
    if current is None or "first_at" in current:
        state["first_at"] = min(t for t in (state.get("first_at"), at) if t)
    if status == "completed":
        earliest = state.get("completed_at")
        state["completed_at"] = at if earliest is None else min(earliest, at)
    else:
        state.setdefault("completed_at", None)
    if [at, report.event_id] > [state.get("at", ""), state.get("event_id", "")]:
        state["at"] = at
        state["event_id"] = report.event_id
    return state


def module_unlocked(
    course_id: str, user_id: str, module_id: str, at: datetime, version: int
) -> LearnerMilestone:
    """The milestone of a module opening for a learner: its id derives from the three ids
    alone, so every decision that sends it (a completion, the timer, a repeat) sends the
    same id, and consumers drop a second copy by it. `version`: the learner's enrollment
    version then (the report that opened it, or the record the timer found)."""
    return {
        "event_id": derived_id(f"{course_id}:{user_id}", f"module_unlocked:{module_id}"),
        "event_type": "module_unlocked",
        "occurred_at": at,
        "course_id": course_id,
        "user_id": user_id,
        "module_id": module_id,
        "waitlist_position": None,
        "reason": None,
        "enrollment_version": version,
    }


def decide_progress(
    course: Course | None, record: EnrollmentRecord | None, progress: ProgressInput
) -> EnrollmentDecision:
    """Record an item's progress; the enrollment completes (once, ever) when every item is
    done. A report already applied, or older than what it would change, changes nothing."""
    if course is None:
        return refused(RefusalKind.COURSE_NOT_FOUND, f"no course {progress.course_id}")
    if record is None or record["status"] == "waitlisted":  # waiting is not enrolled
        return refused(RefusalKind.NOT_ENROLLED, f"{progress.user_id} is not enrolled")
    if record["status"] == "cancelled":
        return cancelled_refusal(record, "report progress")
    item = item_of(course, progress.item_id)
    if item is None:
        return EnrollmentDecision(
            None, None, None, (), invalid([("item_id", "not an item of this course")])
        )
    wrong_score = score_error(item, progress.score)
    if wrong_score is not None:
        return EnrollmentDecision(None, None, None, (), invalid([("score", wrong_score)]))
    now, enrolled_at = progress.occurred_at, record["enrolled_at"]
    items_before = record.get("items", {})
    before = path_state(course, enrolled_at, items_before, now)
    if progress.item_id in before.locked:
        why = lock_reason(course, enrolled_at, items_before, now, progress.item_id)
        return refused(RefusalKind.ITEM_LOCKED, f"item {progress.item_id} {why}")
    moment = time_lock_before(course, enrolled_at, items_before, now, progress.item_id)
    if moment is not None:
        why = f"waited until {rfc3339(moment)} when it was reported"
        return refused(RefusalKind.ITEM_LOCKED, f"item {progress.item_id} {why}")
    current = items_before.get(progress.item_id)
    state = merge_report(current, progress, item)
    if state == current:
        return EnrollmentDecision(
            Outcome.UNCHANGED, None, None, (), reply_enrollment=public_view(record, course, now)
        )
    at = rfc3339(now)
    items: dict[str, ItemState] = {**items_before, progress.item_id: state}
    after = path_state(course, enrolled_at, items, now)
    opened = record.get("opened", [])
    unlocked = newly_unlocked(before, after, opened)
    changed: EnrollmentRecord = {**record, "items": items, "version": record["version"] + 1}
    if unlocked:
        changed["opened"] = sorted({*opened, *unlocked})
    changed_version = changed["version"]
    view = _view_at(changed, course, after)
    reported = (progress.item_id, module_of(course, progress.item_id))
    events = [event_of(progress.event_id, "progress_updated", changed, view, now, item=reported)]
    if record.get("completed_at") is None and after.completed:
        changed = with_transition(
            {**changed, "completed_at": at}, "completed", at, progress.event_id
        )
        view = _view_at(changed, course, after)
        events.append(
            event_of(progress.event_id, "course_completed", changed, view, now, item=reported)
        )
    milestones = tuple(
        module_unlocked(progress.course_id, progress.user_id, m, now, changed_version)
        for m in unlocked
    )
    return EnrollmentDecision(
        Outcome.APPLIED, changed, None, tuple(events), reply_enrollment=view, milestones=milestones
    )


def _view_at(record: EnrollmentRecord, course: Course, path: PathState) -> dict[str, Any]:
    return {
        "course_id": record["course_id"],
        "user_id": record["user_id"],
        "status": record["status"],
        "enrolled_at": record["enrolled_at"],
        "progress": view_of_path(course, record.get("items", {}), record.get("completed_at"), path),
    }

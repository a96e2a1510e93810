"""Time locks that open by the clock (CONTRACT §5.1): which moments the agent must wake
at, and what it decides for one learner when it does. Pure: the caller passes `now`.

A `Due` is a moment to look again at one module: for every learner of the course
(`user_id` None: a module whose date or rules changed), or for one (a module that opens
a number of days after that learner's enrolment). The agent keeps them in its table,
ordered by moment, and releases them in bounded chunks (streams/timer.py, decision 56).
What a release decides depends only on the course, the learner's record and `now`, and
the milestone's id only on the course, learner and module: a chunk decided twice (a
crash before its unit landed) publishes the same milestones, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from course_management.domain.events import LearnerMilestone
from course_management.domain.paths import path_state, unlocks_at
from course_management.domain.records import Course, EnrollmentRecord
from course_management.domain.reports import module_unlocked
from course_management.domain.times import parse_rfc3339, rfc3339

_LOCKS = ("prerequisite_module_ids", "unlock_at", "unlock_after_days")


@dataclass(frozen=True)
class Due:
    moment: str  # RFC 3339 (the table orders them by it)
    course_id: str
    module_id: str
    user_id: str | None = None  # None: every learner of the course
    # the module was open for every learner before the change that left this (no lock,
    # or a date already passed): whoever finds it open then was never told nothing new
    quiet: bool = False


def lock_changes(before: Course | None, after: Course, now: datetime) -> list[Due]:
    """The moments a course change asks the agent to look again at a module for every
    learner enrolled so far (a learner who enrols later has their own: `learner_dues`):
    a module whose locks changed, or whose prerequisite modules' items or requirements
    changed (removing an item may complete a prerequisite), or a new module with a lock;
    at its `unlock_at`, or now when it has none yet to wait for (a number of days is each
    learner's own: the look now schedules each). A new course has nobody to look at."""
    if before is None:
        return []
    old = {m["id"]: m for m in before.get("modules", ())}
    changed = {
        m["id"]
        for m in after.get("modules", ())
        if m["id"] in old and _content(old[m["id"]]) != _content(m)
    }
    dues = []
    for module in after.get("modules", ()):
        was = old.get(module["id"])
        if was is None:
            if all(module.get(f) in (None, []) for f in _LOCKS):
                continue  # a new module open from the start
        elif all(_same(was, module, f) for f in _LOCKS) and not (
            changed & set(module.get("prerequisite_module_ids") or ())
        ):
            continue
        moment = now
        if module.get("unlock_at") and parse_rfc3339(module["unlock_at"]) > now:
            moment = parse_rfc3339(module["unlock_at"])
        quiet = was is not None and not _locked_for_someone(was, now)
        dues.append(Due(rfc3339(moment), after["id"], module["id"], quiet=quiet))
    return dues


def _locked_for_someone(module: dict[str, Any], now: datetime) -> bool:
    """Could the module have been locked for a learner under these rules at `now`?"""
    if module.get("prerequisite_module_ids") or module.get("unlock_after_days") is not None:
        return True
    return bool(module.get("unlock_at")) and parse_rfc3339(module["unlock_at"]) > now


def _content(module: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(i["id"], i.get("completion")) for i in module.get("items", ())]


def _same(before: dict[str, Any], after: dict[str, Any], field: str) -> bool:
    return (before.get(field) or None) == (after.get(field) or None)


def learner_dues(course: Course, record: EnrollmentRecord, now: datetime) -> list[Due]:
    """The moments one learner's time locks open (modules still locked for them by a date
    or a number of days at `now`): theirs alone, so that an enrolment decided after the
    course's own look at a date is not missed (a backlog of enrolments, an enrolment
    stamped just before the moment)."""
    if record.get("status") not in ("active", "completed"):
        return []
    path = path_state(course, record["enrolled_at"], record.get("items", {}), now)
    moment = rfc3339(now)
    return [
        Due(m.unlocks_at, course["id"], m.module_id, record["user_id"])
        for m in path.modules
        if m.state == "locked"
        and m.unlocks_at is not None
        and m.unlocks_at > moment
        and m.module_id not in record.get("opened", ())
    ]


@dataclass(frozen=True)
class Release:
    record: EnrollmentRecord | None  # the record with the module opened (None: unchanged)
    milestone: LearnerMilestone | None
    later: Due | None  # still locked by this learner's own clock: look again then


def release(
    course: Course, record: EnrollmentRecord, module_id: str, now: datetime, quiet: bool = False
) -> Release:
    """One learner, one module, at `now`: the milestone if the module is open for them
    and was never open before; a later look if a time lock still holds it. `quiet`: the
    module was open for everyone before the change that asked for this look, so a
    learner who finds it open is only recorded (open from the start: CONTRACT §5.1)."""
    if record.get("status") not in ("active", "completed"):
        return Release(None, None, None)  # a learner who left is told nothing
    module = next((m for m in course.get("modules", ()) if m["id"] == module_id), None)
    if module is None:
        return Release(None, None, None)
    opened = record.get("opened", [])
    path = path_state(course, record["enrolled_at"], record.get("items", {}), now)
    state = path.module(module_id)
    if state is None:
        return Release(None, None, None)
    if state.state != "locked":
        if module_id in opened:
            return Release(None, None, None)
        changed: EnrollmentRecord = {**record, "opened": sorted({*opened, module_id})}
        if quiet:
            return Release(changed, None, None)
        milestone = module_unlocked(
            course["id"], record["user_id"], module_id, now, int(record.get("version", 0))
        )
        return Release(changed, milestone, None)
    # Held by a time lock still ahead (a date moved later, the learner's own days): look
    # again at their moment. Held by a prerequisite: a completion will open it.
    moment = unlocks_at(module, parse_rfc3339(record["enrolled_at"]))
    if moment is not None and moment > now:
        return Release(None, None, Due(rfc3339(moment), course["id"], module_id, record["user_id"]))
    return Release(None, None, None)

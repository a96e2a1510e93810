"""The learning-path checks of a chaos run (issue 25), pure: from the events alone, with
rules written here again, simply, for the run's course shapes (chaos/load.py SHAPES), so
that they do not share a bug with domain/paths.py:

- no locked report was applied: an item's first change needs, in the learner's previous
  snapshot, the items before it in a sequential module completed, every item of each
  prerequisite module completed, and the report's moment at or after the module's date;
- every milestone came once: one `event_id` per learner and module (copies of it are
  deliveries), and one for each learner whose module opened (a path's second module once
  the first is completed; a date's, for learners enrolled before it and never cancelled);
- none came before its moment: neither its `occurred_at` nor its record's timestamp.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from itertools import pairwise
from typing import Any

from course_management.domain.times import parse_rfc3339

Found = list[tuple[str, str, str]]  # (kind, id, detail)


def check_paths(
    course_events: list[dict[str, Any]],
    enrollment_events: list[dict[str, Any]],
    milestones: list[dict[str, Any]],
) -> Found:
    out: Found = []
    courses: dict[str, dict[str, Any]] = {}
    for event in course_events:
        if (event.get("course") or {}).get("modules") is not None:
            courses[event["course_id"]] = event["course"]  # the last snapshot: edits
            # after the setup change only descriptions
    by_learner: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in enrollment_events:
        by_learner[(event["course_id"], event["user_id"])].append(event)
    for (course_id, user_id), events in by_learner.items():
        course = courses.get(course_id)
        if course is not None:
            events.sort(key=lambda e: e["version"])
            _reports(course, f"{course_id}:{user_id}", events, out)
    _milestones(courses, by_learner, milestones, out)
    return out


def _statuses(event: dict[str, Any]) -> dict[str, str]:
    items = event["enrollment"]["progress"].get("items", ())
    return {i["item_id"]: i["status"] for i in items}


def _reports(course: dict[str, Any], key: str, events: list[dict[str, Any]], out: Found) -> None:
    for before, after in pairwise(events):
        if after["event_type"] != "progress_updated":
            continue
        was, now = _statuses(before), _statuses(after)
        for item_id, status in now.items():
            if was.get(item_id, "not_started") != "not_started" or status == "not_started":
                continue  # not the item's first report
            why = _locked(course, item_id, was, after["occurred_at"])
            if why:
                out.append(("locked report applied", key, f"{item_id} v{after['version']}: {why}"))


def _locked(course: dict[str, Any], item_id: str, was: dict[str, str], at: datetime) -> str | None:
    modules = {m["id"]: m for m in course["modules"]}
    for module in course["modules"]:
        ids = [i["id"] for i in module["items"]]
        if item_id not in ids:
            continue
        if module.get("sequential"):
            before = ids[: ids.index(item_id)]
            if any(was.get(i) != "completed" for i in before):
                return "an earlier item of its sequential module was not completed"
        for required in module.get("prerequisite_module_ids") or ():
            if any(was.get(i["id"]) != "completed" for i in modules[required]["items"]):
                return f"prerequisite module {required} was not completed"
        if module.get("unlock_at") and at < parse_rfc3339(module["unlock_at"]):
            return f"reported at {at.isoformat()}, before {module['unlock_at']}"
    return None


def _milestones(
    courses: dict[str, dict[str, Any]],
    by_learner: dict[tuple[str, str], list[dict[str, Any]]],
    milestones: list[dict[str, Any]],
    out: Found,
) -> None:
    ids: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for m in milestones:
        if m["event_type"] != "module_unlocked":
            continue
        where = (m["course_id"], m["user_id"], m["module_id"])
        ids[where].add(m["event_id"])
        module = _module(courses.get(m["course_id"]), m["module_id"])
        moment = module.get("unlock_at") if module else None
        if moment and (
            m["occurred_at"] < parse_rfc3339(moment)
            or m["timestamp_ms"] < parse_rfc3339(moment).timestamp() * 1000
        ):
            out.append(("milestone before its moment", ":".join(where), moment))
    for where, found in ids.items():
        if len(found) > 1:
            out.append(("milestone twice", ":".join(where), f"{len(found)} event ids"))
    for (course_id, user_id), events in by_learner.items():
        course = courses.get(course_id)
        if course is None or len(course["modules"]) < 2:
            continue
        first, second = course["modules"][:2]
        expected = False
        last = _statuses(events[-1])
        if second.get("prerequisite_module_ids"):
            expected = all(last.get(i["id"]) == "completed" for i in first["items"])
        elif second.get("unlock_at"):
            created = events[0]
            opened_late = created["event_type"] == "enrollment_created" and any(
                m["module_id"] == second["id"] and m["state"] == "locked"
                for m in created["enrollment"]["progress"].get("modules", ())
            )
            never_cancelled = all(e["event_type"] != "enrollment_cancelled" for e in events)
            expected = opened_late and never_cancelled
        if expected and not ids.get((course_id, user_id, second["id"])):
            out.append(("milestone missing", f"{course_id}:{user_id}", second["id"]))


def _module(course: dict[str, Any] | None, module_id: str) -> dict[str, Any] | None:
    return next((m for m in (course or {}).get("modules", ()) if m["id"] == module_id), None)

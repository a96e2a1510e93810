"""The course: how a snapshot is built from its writable fields (domain/course_fields.py)
and the rules over a whole course. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from course_management.domain.course_fields import (
    Completion,
    CourseFields,
    CourseUpdate,
    ModuleInput,
)
from course_management.domain.path_rules import path_errors
from course_management.domain.times import rfc3339

# Status changes a course may make (a change to the same status is no change).
TRANSITIONS = {
    ("draft", "published"),
    ("published", "archived"),
    ("archived", "published"),
}


def _ts(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def build_modules(
    modules: list[ModuleInput], existing: dict[str, Any] | None, new_id: Callable[[], str]
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The snapshot's modules from input; ids given must be this course's own.

    Returns (modules, errors). A module or item without an id is new and gets one. On
    create a module's `id` is the caller's reference: `prerequisite_module_ids` in the
    same body may name it, and the module gets a new id all the same (ids are unique
    across courses: the mirror keys modules by them), which the prerequisites then name.
    """
    refs: dict[str, str] = {}  # on create: the caller's reference -> the module's id
    if existing is None:
        for module in modules:
            if module.id is not None and module.id not in refs:
                refs[module.id] = new_id()
    known_modules = {m["id"] for m in (existing or {}).get("modules", [])}
    known_items = {i["id"] for m in (existing or {}).get("modules", []) for i in m.get("items", [])}
    errors: list[tuple[str, str]] = []
    built = []
    for mi, module in enumerate(modules):
        where = f"modules[{mi}]"
        if module.id is not None and existing is not None and module.id not in known_modules:
            errors.append((f"{where}.id", "not a module of this course (omit it for a new one)"))
        items = []
        for ii, item in enumerate(module.items):
            if item.id is not None and item.id not in known_items:
                errors.append(
                    (
                        f"{where}.items[{ii}].id",
                        "not an item of this course (omit it for a new one)",
                    )
                )
            items.append(
                {
                    "id": item.id or new_id(),
                    "type": item.type.value,
                    "title": item.title,
                    "position": item.position,
                    "content_key": item.content_key,
                    "duration_seconds": item.duration_seconds,
                    "max_score": item.max_score,
                    "due_at": _ts(item.due_at),
                    "completion": _completion(item.completion),
                }
            )
        module_id = None if module.id is None else refs.get(module.id, module.id)
        built.append(
            {
                "id": module_id or new_id(),
                "title": module.title,
                "position": module.position,
                "items": items,
                "prerequisite_module_ids": [refs.get(p, p) for p in module.prerequisite_module_ids],
                "unlock_at": _ts(module.unlock_at),
                "unlock_after_days": module.unlock_after_days,
                "sequential": module.sequential,
            }
        )
    return built, errors


def _completion(given: Completion | None) -> dict[str, Any]:
    """An item's requirement as snapshots hold it: always both fields."""
    if given is None:
        return {"type": "complete", "min_score": None}
    return {"type": given.type.value, "min_score": given.min_score}


def check_course(course: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules over the whole snapshot: positions, ids, publishing, the enrollment window,
    the learning path (domain/paths.py)."""
    errors: list[tuple[str, str]] = path_errors(course["modules"])
    required = course.get("prerequisite_course_ids") or []
    if course["id"] in required:
        errors.append(("prerequisite_course_ids", "a course cannot require itself"))
    if len(required) != len(set(required)):
        errors.append(("prerequisite_course_ids", "a course appears twice"))
    staff = [member["user_id"] for member in course.get("staff") or ()]
    if len(staff) != len(set(staff)):
        errors.append(("staff", "a user appears twice"))
    if course["instructor"]["id"] in staff:
        errors.append(("staff", "the course's owner is not one of its staff"))
    positions = [m["position"] for m in course["modules"]]
    if len(positions) != len(set(positions)):
        errors.append(("modules", "module positions must be unique"))
    seen_ids: set[str] = set()
    for mi, module in enumerate(course["modules"]):
        item_positions = [i["position"] for i in module["items"]]
        if len(item_positions) != len(set(item_positions)):
            errors.append((f"modules[{mi}].items", "item positions must be unique in a module"))
        for ii, part in enumerate([module, *module["items"]]):
            if part["id"] in seen_ids:
                where = f"modules[{mi}]" + (f".items[{ii - 1}]" if ii else "")
                errors.append((f"{where}.id", "appears twice"))
            seen_ids.add(part["id"])
    if course["status"] == "published" and not any(m["items"] for m in course["modules"]):
        errors.append(("status", "a course is published only with a module holding an item"))
    opens, closes = course["enrollment_opens_at"], course["enrollment_closes_at"]
    if opens and closes and closes <= opens:
        errors.append(("enrollment_closes_at", "must be after enrollment_opens_at"))
    return errors


def _ordered(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**m, "items": sorted(m["items"], key=lambda i: i["position"])}
        for m in sorted(modules, key=lambda m: m["position"])
    ]


def new_course(
    course_id: str,
    fields: CourseFields,
    instructor_id: str,
    instructor_name: str,
    now: datetime,
    new_id: Callable[[], str],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The first snapshot of a course (version 1) and the rules it breaks, if any."""
    stamp = rfc3339(now)
    modules, errors = build_modules(fields.modules, None, new_id)
    course = {
        "id": course_id,
        "title": fields.title,
        "description": fields.description,
        "category": fields.category,
        "tags": list(fields.tags),
        "level": fields.level.value,
        "language": fields.language,
        "status": fields.status.value,
        "instructor": {"id": instructor_id, "name": instructor_name},
        "capacity": fields.capacity,
        "enrollment_opens_at": _ts(fields.enrollment_opens_at),
        "enrollment_closes_at": _ts(fields.enrollment_closes_at),
        "modules": _ordered(modules),
        "prerequisite_course_ids": list(fields.prerequisite_course_ids),
        "waitlist_capacity": fields.waitlist_capacity,
        "staff": [member.model_dump(mode="json") for member in fields.staff],
        "rating": {"average": None, "count": 0},
        "enrollment_count": 0,
        "waitlist_count": 0,
        "version": 1,
        "created_at": stamp,
        "updated_at": stamp,
        "published_at": stamp if fields.status.value == "published" else None,
    }
    return course, errors + check_course(course)


def updated_course(
    course: dict[str, Any],
    changes: CourseUpdate,
    given: set[str],
    now: datetime,
    new_id: Callable[[], str],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The course after a partial update (same version), and the rules it breaks.

    The caller bumps `version` and `updated_at` only when something really changed.
    """
    result = dict(course)
    errors: list[tuple[str, str]] = []
    for name in given:
        value = getattr(changes, name)
        if name == "modules":
            modules, module_errors = build_modules(value, course, new_id)
            result["modules"] = _ordered(modules)
            errors += module_errors
        elif name in ("enrollment_opens_at", "enrollment_closes_at"):
            result[name] = _ts(value)
        elif name in ("level", "status"):
            result[name] = value.value
        elif name in ("tags", "prerequisite_course_ids"):
            result[name] = list(value)
        elif name == "staff":
            result[name] = [member.model_dump(mode="json") for member in value]
        else:
            result[name] = value
    if (
        result["status"] != course["status"]
        and (course["status"], result["status"]) not in TRANSITIONS
    ):
        errors.append(("status", f"a {course['status']} course cannot become {result['status']}"))
    elif not course.get("published_at"):
        result["published_at"] = published_at(course, result, now)
    return result, errors + check_course(result)


def published_at(before: dict[str, Any], after: dict[str, Any], now: datetime) -> str | None:
    """When a course without `published_at` was first published, after this change: now,
    if it leaves the draft it was; its creation, if it was made before decision 53 and
    left the draft then (taking a course down and up again never makes it new)."""
    if before["status"] == "draft":
        return rfc3339(now) if after["status"] == "published" else None
    return str(before["created_at"])


# Every record that carries a course (its event, its catalog entry, its table record with
# the first create's reply, the reply to the writer) must fit one Kafka record (1 MiB by
# default): a course is at most this many bytes as compact JSON (decision 26).
MAX_COURSE_BYTES = 256 * 1024


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def course_size_error(value: dict[str, Any]) -> tuple[str, str] | None:
    """(field, message) when a course, or the fields that would make one, is too large."""
    size = json_size(value)
    if size <= MAX_COURSE_BYTES:
        return None
    return (
        "modules",
        f"the course would take {size} bytes as JSON, over the {MAX_COURSE_BYTES} allowed: "
        "split it into several courses or shorten its modules",
    )


def with_new_version(course: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {**course, "version": course["version"] + 1, "updated_at": rfc3339(now)}

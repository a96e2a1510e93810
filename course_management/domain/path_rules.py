"""What a learning path may say (CONTRACT §5.1), and its rules in their stored shape: the
validation of a course's path fields (each error naming its field), the defaults of a
course written before them, and the rules as one comparable string. Pure.

How a learner moves along a path is domain/paths.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from course_management.domain.course_fields import MAX_UNLOCK_DAYS
from course_management.domain.paths import COMPLETE, MIN_SCORE, REQUIREMENTS, SCORED_TYPES


def path_errors(modules: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The rules a course's modules break, each as (field, message): a prerequisite that
    is not a module of this course, a module requiring itself, a cycle, days out of
    range, an unknown requirement, `min_score` on a lesson, at or below 0, or above the
    item's `max_score`."""
    errors: list[tuple[str, str]] = []
    ids = [m["id"] for m in modules]
    known = set(ids)
    for m_index, module in enumerate(modules):
        field = f"modules[{m_index}]"
        for required in module.get("prerequisite_module_ids") or ():
            if required == module["id"]:
                errors.append(
                    (f"{field}.prerequisite_module_ids", "a module cannot require itself")
                )
            elif required not in known:
                errors.append(
                    (
                        f"{field}.prerequisite_module_ids",
                        f"{required} is not a module of this course",
                    )
                )
        days = module.get("unlock_after_days")
        if days is not None and not 0 <= int(days) <= MAX_UNLOCK_DAYS:
            errors.append((f"{field}.unlock_after_days", f"must be 0..{MAX_UNLOCK_DAYS}"))
        for i_index, item in enumerate(module["items"]):
            message = _completion_error(item)
            if message:
                errors.append((f"{field}.items[{i_index}].completion", message))
    cycle = _cycle(modules, known)
    if cycle:
        where = ids.index(cycle[0])
        errors.append(
            (
                f"modules[{where}].prerequisite_module_ids",
                "the prerequisites form a cycle: " + " -> ".join([*cycle, cycle[0]]),
            )
        )
    return errors


def _completion_error(item: Mapping[str, Any]) -> str | None:
    completion = item.get("completion")
    if completion is None:
        return None
    kind = completion.get("type")
    if kind not in REQUIREMENTS:
        return f"unknown requirement {kind!r}: one of {', '.join(REQUIREMENTS)}"
    if kind != MIN_SCORE:
        return None
    if item.get("type") not in SCORED_TYPES:
        return "min_score applies to quizzes and assignments only"
    minimum = completion.get("min_score")
    if not isinstance(minimum, int | float) or isinstance(minimum, bool) or minimum <= 0:
        return "min_score must be a number above 0"
    maximum = item.get("max_score")
    if maximum is None or minimum > maximum:
        return f"min_score {minimum} is above the item's max_score {maximum}"
    return None


def _cycle(modules: Iterable[Mapping[str, Any]], known: set[str]) -> list[str] | None:
    """A cycle among the prerequisites (module ids in order), or None."""
    edges = {
        m["id"]: [p for p in m.get("prerequisite_module_ids") or () if p in known and p != m["id"]]
        for m in modules
    }
    state: dict[str, int] = {}  # 1: on the current walk, 2: done
    trail: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                return trail[trail.index(nxt) :]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        state[node] = 2
        trail.pop()
        return None

    for node in edges:
        if node not in state:
            found = walk(node)
            if found:
                return found
    return None


_MODULE_DEFAULTS: dict[str, Any] = {
    "prerequisite_module_ids": [],
    "unlock_at": None,
    "unlock_after_days": None,
    "sequential": False,
}


def with_path_defaults(course: Mapping[str, Any]) -> dict[str, Any]:
    """A course snapshot with the path fields of CONTRACT §5.1, defaulted where a course
    written before them lacks them (as the Avro reader's defaults do for its events)."""
    if "prerequisite_course_ids" in course:
        return dict(course)
    return {
        **course,
        "prerequisite_course_ids": [],
        "modules": [
            {
                **_MODULE_DEFAULTS,
                **m,
                "items": [
                    {"completion": {"type": COMPLETE, "min_score": None}, **i} for i in m["items"]
                ],
            }
            for m in course.get("modules", ())
        ],
    }


def path_fingerprint(course: Mapping[str, Any]) -> str:
    """The course's path rules in one comparable string (ops check: tables, mirror and
    events hold the same rules)."""
    shown = with_path_defaults(course)
    rules = [
        shown["prerequisite_course_ids"],
        [
            [
                m["id"],
                m["prerequisite_module_ids"],
                m["unlock_at"],
                m["unlock_after_days"],
                m["sequential"],
                [[i["id"], i["completion"]] for i in m["items"]],
            ]
            for m in shown["modules"]
        ],
    ]
    return json.dumps(rules, sort_keys=True, separators=(",", ":"))

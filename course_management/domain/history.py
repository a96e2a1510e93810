"""A course's authoring changes between two snapshots, field by field (CONTRACT §5.3).
Pure.

A change is `{"path", "old", "new"}`: `path` is a top-level field (`title`), a module's
field (`modules/<moduleId>/title`) or an item's (`modules/<moduleId>/items/<itemId>/
max_score`). A module or an item added or removed is one change whose `old` or `new` is
null (the whole module or item). Modules and items are matched by id, so a reorder is a
change of `position`, and an item moved to another module is removed from one and added
to the other. Derived fields (set by the service, not by an author) are not changes.

`apply_changes(old, changes)` gives the new snapshot's authoring fields back: the
property the tests hold the diff to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from course_management.domain.times import rfc3339

# Set by the service, not by an author: never a change.
DERIVED = frozenset(
    {
        "version",
        "updated_at",
        "created_at",
        "published_at",
        "enrollment_count",
        "waitlist_count",
        "rating",
        "id",
        "instructor",
    }
)

Change = dict[str, Any]


def _fields(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str, skip: frozenset[str]
) -> list[Change]:
    return [
        {"path": f"{prefix}{name}", "old": old.get(name), "new": new.get(name)}
        for name in sorted((set(old) | set(new)) - skip)
        if old.get(name) != new.get(name)
    ]


def _by_id(parts: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {part["id"]: part for part in parts or ()}


def _parts(
    old: list[dict[str, Any]] | None,
    new: list[dict[str, Any]] | None,
    prefix: str,
    nested: str | None,
) -> list[Change]:
    """The changes of a list of modules (or items) matched by id: each added or removed
    whole, each kept field by field (and its `nested` list within)."""
    before, after = _by_id(old), _by_id(new)
    changes: list[Change] = []
    for part_id in [*before, *(p for p in after if p not in before)]:
        path = f"{prefix}{part_id}"
        was, now = before.get(part_id), after.get(part_id)
        if was is None or now is None:
            changes.append({"path": path, "old": was, "new": now})
            continue
        skip = frozenset({"id", nested}) if nested else frozenset({"id"})
        changes += _fields(was, now, f"{path}/", skip)
        if nested:
            changes += _parts(was.get(nested), now.get(nested), f"{path}/{nested}/", None)
    return changes


def course_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[Change]:
    """What an author changed from `old` to `new` (None: the course did not exist yet, or
    no longer does)."""
    before, after = old or {}, new or {}
    changes = _fields(before, after, "", DERIVED | {"modules"})
    changes += _parts(before.get("modules"), after.get("modules"), "modules/", "items")
    return changes


def authoring(course: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot's authoring fields: what `course_changes` compares."""
    return {k: v for k, v in course.items() if k not in DERIVED}


def apply_changes(old: Mapping[str, Any], changes: list[Change]) -> dict[str, Any]:
    """`old`'s authoring fields with `changes` applied (modules and items in position
    order, as snapshots keep them)."""
    course = authoring(old)
    modules = {
        m["id"]: {**m, "items": list(m.get("items") or ())} for m in old.get("modules") or ()
    }
    for change in changes:
        parts = change["path"].split("/")
        if parts[0] != "modules":
            _set(course, parts[0], change["new"])
            continue
        module_id = parts[1]
        if len(parts) == 2:
            _put(modules, module_id, change["new"])
        elif parts[2] != "items":
            _set(modules[module_id], parts[2], change["new"])
        else:
            items = {i["id"]: dict(i) for i in modules[module_id]["items"]}
            if len(parts) == 4:
                _put(items, parts[3], change["new"])
            else:
                _set(items[parts[3]], parts[4], change["new"])
            modules[module_id]["items"] = list(items.values())
    if "modules" in course or modules:
        course["modules"] = [
            {**m, "items": sorted(m["items"], key=lambda i: i["position"])}
            for m in sorted(modules.values(), key=lambda m: m["position"])
        ]
    return course


def _set(target: dict[str, Any], name: str, value: Any) -> None:
    if value is None and name not in target:
        return
    target[name] = value


def _put(parts: dict[str, Any], part_id: str, value: dict[str, Any] | None) -> None:
    if value is None:
        parts.pop(part_id, None)
    else:
        parts[part_id] = {**value, **({"items": list(value["items"])} if "items" in value else {})}


def course_entry(row: Mapping[str, Any], changes: Any = None) -> dict[str, Any]:
    """A stored version as the history route shows it; `changes`: the row's changes as
    the caller encodes them (default: decoded from the stored JSON text)."""
    return {
        "version": row["version"],
        "event_type": row["event_type"],
        "actor_id": row["actor_id"],
        "occurred_at": rfc3339(row["occurred_at"]),
        "request_id": row["request_id"],
        "changes": json.loads(row["changes"]) if changes is None else changes,
    }

"""The diff of two course snapshots (domain/history.py; issue 27, CONTRACT §5.3): fields,
modules and items by id, reorders, additions and removals; applying the changes to the
old snapshot gives the new one's authoring fields (property test)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from course_management.domain.history import apply_changes, authoring, course_changes


def course(**fields: Any) -> dict[str, Any]:
    return {
        "id": "c",
        "title": "T",
        "description": "",
        "capacity": None,
        "version": 1,
        "updated_at": "2026-12-06T00:00:00.000Z",
        "enrollment_count": 3,
        "rating": {"average": None, "count": 0},
        "modules": [
            {
                "id": "m1",
                "title": "M1",
                "position": 0,
                "items": [{"id": "i1", "title": "I1", "position": 0, "max_score": None}],
            }
        ],
        **fields,
    }


def test_fields_modules_and_items_change_by_path_and_derived_fields_do_not() -> None:
    old = course()
    new = course(title="New", version=2, enrollment_count=9, updated_at="later")
    new["modules"] = [
        {
            "id": "m1",
            "title": "M1",
            "position": 1,
            "items": [{"id": "i1", "title": "I1", "position": 0, "max_score": 10}],
        },
        {"id": "m2", "title": "M2", "position": 0, "items": []},
    ]
    assert course_changes(old, new) == [
        {"path": "title", "old": "T", "new": "New"},
        {"path": "modules/m1/position", "old": 0, "new": 1},
        {"path": "modules/m1/items/i1/max_score", "old": None, "new": 10},
        {"path": "modules/m2", "old": None, "new": new["modules"][1]},
    ]
    removed = course_changes(new, old)
    assert {"path": "modules/m2", "old": new["modules"][1], "new": None} in removed
    assert course_changes(old, old) == []


def test_a_created_course_is_every_authoring_field() -> None:
    made = course_changes(None, course())
    assert {c["path"] for c in made} == {"title", "description", "modules/m1"}
    assert all(c["old"] is None for c in made)


ITEM_IDS = [f"i{n}" for n in range(5)]


@st.composite
def snapshots(draw: Any) -> dict[str, Any]:
    module_ids = draw(st.lists(st.sampled_from(["m1", "m2", "m3"]), unique=True, max_size=3))
    items = draw(st.permutations(ITEM_IDS))
    modules = []
    for position, module_id in enumerate(draw(st.permutations(module_ids))):
        mine = [i for n, i in enumerate(items) if n % max(1, len(module_ids)) == position]
        kept = draw(st.lists(st.sampled_from(mine), unique=True)) if mine else []
        modules.append(
            {
                "id": module_id,
                "title": draw(st.sampled_from(["A", "B"])),
                "position": position,
                "sequential": draw(st.booleans()),
                "items": [
                    {
                        "id": item_id,
                        "title": draw(st.sampled_from(["x", "y"])),
                        "position": p,
                        "max_score": draw(st.sampled_from([None, 5.0, 10.0])),
                    }
                    for p, item_id in enumerate(kept)
                ],
            }
        )
    return course(
        title=draw(st.sampled_from(["T", "U"])),
        capacity=draw(st.sampled_from([None, 1, 30])),
        version=draw(st.integers(1, 9)),
        modules=modules,
    )


@settings(max_examples=300)
@given(old=snapshots(), new=snapshots())
def test_applying_the_changes_to_the_old_snapshot_gives_the_new_one(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    changes = course_changes(old, new)
    assert apply_changes(old, changes) == authoring(new)
    assert len({c["path"] for c in changes}) == len(changes)  # each path once
    assert not any(c["path"] in ("version", "enrollment_count") for c in changes)

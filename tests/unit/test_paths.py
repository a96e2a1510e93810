"""Learning paths (CONTRACT §5.1, issue 25): the pure rules of domain/paths.py. Random
paths and random reports for the properties; named cases for what validation says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from course_management.domain.path_rules import path_errors
from course_management.domain.paths import (
    lock_reason,
    newly_unlocked,
    path_state,
    report_status,
    requirement_met,
    unlocks_at,
)

ENROLLED = "2027-01-01T00:00:00.000Z"
T0 = datetime(2027, 1, 1, tzinfo=UTC)


def item(iid: str, kind: str = "lesson", completion: dict | None = None, **extra: Any) -> dict:
    return {"id": iid, "type": kind, "max_score": extra.get("max_score"), "completion": completion}


def module(mid: str, items: list[dict], **rules: Any) -> dict:
    return {"id": mid, "items": items, **rules}


def course(*modules: dict) -> dict:
    return {"modules": list(modules)}


DONE = {"status": "completed"}


def test_prerequisites_dates_and_sequence_lock_and_unlock() -> None:
    c = course(
        module("m1", [item("a"), item("b")], sequential=True),
        module("m2", [item("c")], prerequisite_module_ids=["m1"]),
        module("m3", [item("d")], unlock_at="2027-02-01T00:00:00.000Z"),
        module("m4", [item("e")], unlock_after_days=7),
    )
    start = path_state(c, ENROLLED, {}, T0)
    assert [m.state for m in start.modules] == ["unlocked", "locked", "locked", "locked"]
    assert start.locked == {"b", "c", "d", "e"} and start.next_item_id == "a"
    assert start.module("m4").unlocks_at == "2027-01-08T00:00:00.000Z"
    assert lock_reason(c, ENROLLED, {}, T0, "b") == "waits for item a to have its requirement met"
    assert lock_reason(c, ENROLLED, {}, T0, "c") == "waits for module m1 to be completed"
    assert lock_reason(c, ENROLLED, {}, T0, "d") == "waits until 2027-02-01T00:00:00.000Z"
    assert lock_reason(c, ENROLLED, {}, T0, "a") is None

    done = {"a": DONE, "b": DONE}
    later = path_state(c, ENROLLED, done, T0 + timedelta(days=8))
    assert [m.state for m in later.modules] == ["completed", "unlocked", "locked", "unlocked"]
    assert newly_unlocked(start, later, sent=()) == ["m2", "m4"]
    assert newly_unlocked(start, later, sent=("m2",)) == ["m4"]  # once per learner, ever
    assert later.percent == 40.0 and later.next_item_id == "c"


def test_work_already_done_is_never_taken_back_by_a_new_rule() -> None:
    """Decision 55: a started or completed module never locks; an unstarted one follows
    the rules as they are now."""
    c = course(module("m1", [item("a")]), module("m2", [item("b"), item("c")]))
    states = {"b": {"status": "started"}}
    stricter = course(
        module("m1", [item("a")]),
        module("m2", [item("b"), item("c")], prerequisite_module_ids=["m1"]),
        module("m3", [item("d")], prerequisite_module_ids=["m1"]),
    )
    before = path_state(c, ENROLLED, states, T0)
    after = path_state(stricter, ENROLLED, states, T0)
    assert before.module("m2").state == after.module("m2").state == "started"
    assert after.locked == {"d"}  # m3 locks; nothing in the started m2 does
    assert after.module("m3").state == "locked"


def test_requirements_and_the_status_a_report_leaves() -> None:
    quiz = item("q", "quiz", {"type": "min_score", "min_score": 7}, max_score=10)
    assert report_status(quiz, "completed", 6.5) == "failed"
    assert report_status(quiz, "completed", 7) == "completed"
    assert report_status(quiz, "started", 9) == "started"
    assert report_status(item("l"), "completed", None) == "completed"
    viewed = item("v", completion={"type": "view"})
    assert requirement_met(viewed, {"status": "started"})
    assert not requirement_met(item("l"), {"status": "started"})
    assert not requirement_met(quiz, {"status": "failed", "score": 6})
    assert requirement_met(quiz, {"status": "completed", "score": 8})


def test_validation_names_the_field() -> None:
    modules = [
        module("m1", [item("a", completion={"type": "min_score", "min_score": 3})]),
        module(
            "m2",
            [item("q", "quiz", {"type": "min_score", "min_score": 11}, max_score=10)],
            prerequisite_module_ids=["m2", "nope"],
            unlock_after_days=-1,
        ),
        module(
            "m3",
            [
                item("z", "quiz", {"type": "min_score", "min_score": 0}, max_score=5),
                item("y", completion={"type": "watch"}),
            ],
            prerequisite_module_ids=["m4"],
        ),
        module("m4", [], prerequisite_module_ids=["m3"]),
    ]
    errors = path_errors(modules)
    fields = [f for f, _ in errors]
    assert fields == [
        "modules[0].items[0].completion",  # min_score on a lesson
        "modules[1].prerequisite_module_ids",  # itself
        "modules[1].prerequisite_module_ids",  # not a module of this course
        "modules[1].unlock_after_days",
        "modules[1].items[0].completion",  # above max_score
        "modules[2].items[0].completion",  # not above 0
        "modules[2].items[1].completion",  # unknown type
        "modules[2].prerequisite_module_ids",  # the cycle m3 -> m4 -> m3
    ], errors
    assert "m3 -> m4 -> m3" in errors[-1][1]
    assert (
        path_errors([module("m1", [item("a")]), module("m2", [], prerequisite_module_ids=["m1"])])
        == []
    )


def test_a_module_with_both_time_locks_opens_at_the_later() -> None:
    m = module("m", [], unlock_at="2027-01-05T00:00:00.000Z", unlock_after_days=10)
    assert unlocks_at(m, T0) == T0 + timedelta(days=10)
    assert unlocks_at(module("n", []), T0) is None


# -- properties ----------------------------------------------------------------------------


@st.composite
def paths(draw: st.DrawFn) -> dict:
    """A course of 1-5 modules of 0-3 items; prerequisites only on earlier modules (so no
    cycle), random sequence flags and time locks."""
    count = draw(st.integers(1, 5))
    modules = []
    for m in range(count):
        items = [item(f"i{m}{k}", completion=draw(st.sampled_from([None, {"type": "view"}])))
                 for k in range(draw(st.integers(0, 3)))]  # fmt: skip
        rules: dict[str, Any] = {"sequential": draw(st.booleans())}
        if m:
            rules["prerequisite_module_ids"] = draw(
                st.lists(st.sampled_from([f"m{p}" for p in range(m)]), max_size=2, unique=True)
            )
        if draw(st.booleans()):
            rules["unlock_after_days"] = draw(st.integers(0, 20))
        modules.append(module(f"m{m}", items, **rules))
    return course(*modules)


REPORTS = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 2), st.sampled_from(["started", "completed"])),
    max_size=25,
)


def _apply(c: dict, reports: list, day: int) -> list[tuple[dict, Any]]:
    """Reports applied in order, each only when its item is not locked at that moment (as
    the agent refuses a locked one); the path after each."""
    states: dict[str, dict] = {}
    seen = []
    now = T0 + timedelta(days=day)
    ids = [i["id"] for m in c["modules"] for i in m["items"]]
    for m_index, i_index, status in reports:
        iid = f"i{m_index}{i_index}"
        if iid not in ids or iid in path_state(c, ENROLLED, states, now).locked:
            continue
        old = states.get(iid, {}).get("status")
        if old != "completed":
            states[iid] = {"status": status}
        seen.append((dict(states), path_state(c, ENROLLED, states, now)))
    return seen


@settings(max_examples=300, deadline=None)
@given(paths(), REPORTS, st.integers(0, 25))
def test_no_module_opens_before_its_prerequisites_and_its_moment(c, reports, day) -> None:
    now = T0 + timedelta(days=day)
    for _, path in _apply(c, reports, day):
        done = {m.module_id for m in path.modules if m.state == "completed"}
        for m, shown in zip(c["modules"], path.modules, strict=True):
            if shown.state != "unlocked":
                continue
            assert all(p in done for p in m.get("prerequisite_module_ids", [])), (m, path)
            moment = unlocks_at(m, T0)
            assert moment is None or moment <= now


@settings(max_examples=300, deadline=None)
@given(paths(), REPORTS, st.integers(0, 25))
def test_completion_is_monotone_and_the_next_item_is_open(c, reports, day) -> None:
    previous: frozenset[str] = frozenset()
    for _, path in _apply(c, reports, day):
        assert previous <= path.met
        previous = path.met
        if path.next_item_id is not None:
            assert path.next_item_id not in path.locked | path.met
        assert path.completed == (path.total > 0 and len(path.met) == path.total)


def test_a_course_written_before_paths_reads_with_their_defaults() -> None:
    from course_management.domain.path_rules import with_path_defaults

    old = {"id": "c", "modules": [{"id": "m", "items": [{"id": "i", "type": "lesson"}]}]}
    shown = with_path_defaults(old)
    assert shown["prerequisite_course_ids"] == []
    module = shown["modules"][0]
    assert (module["prerequisite_module_ids"], module["unlock_at"]) == ([], None)
    assert (module["unlock_after_days"], module["sequential"]) == (None, False)
    assert module["items"][0]["completion"] == {"type": "complete", "min_score": None}
    assert with_path_defaults(shown) == shown

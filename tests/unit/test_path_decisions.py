"""Learning paths in the agent's decisions (CONTRACT §5.1): locked reports refused with
what they wait for, `failed` below `min_score`, milestones once per learner and module,
completion over requirements, and the view's time-lock staleness. Pure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from course_management.domain.enrollment import (
    EnrollInput,
    ProgressInput,
)
from course_management.domain.outcomes import Outcome, RefusalKind
from course_management.domain.paths import requirement_met
from course_management.domain.progress import is_stale, public_view
from course_management.domain.reports import decide_progress, merge_report
from course_management.domain.seats import decide_enroll
from course_management.domain.times import rfc3339

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def item(item_id: str, kind: str = "lesson", completion: dict | None = None) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": kind,
        "title": item_id,
        "position": int(item_id[-1]),
        "content_key": None,
        "duration_seconds": None,
        "max_score": None if kind == "lesson" else 10.0,
        "due_at": None,
        "completion": completion or {"type": "complete", "min_score": None},
    }


def module(module_id: str, items: list[dict[str, Any]], **rules: Any) -> dict[str, Any]:
    return {
        "id": module_id,
        "title": module_id,
        "position": int(module_id[-1]),
        "items": items,
        "prerequisite_module_ids": [],
        "unlock_at": None,
        "unlock_after_days": None,
        "sequential": False,
        **rules,
    }


def course(*modules: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "c-1",
        "status": "published",
        "capacity": None,
        "enrollment_opens_at": None,
        "enrollment_closes_at": None,
        "modules": list(modules),
        "version": 1,
    }


def quiz_gate() -> dict[str, Any]:
    """m1: a lesson and a quiz needing 6 of 10; m2 requires m1, its items sequential."""
    return course(
        module(
            "m1",
            [
                item("i1"),
                item("i2", "quiz", {"type": "min_score", "min_score": 6.0}),
            ],
        ),
        module(
            "m2",
            [item("i3"), item("i4", completion={"type": "view", "min_score": None})],
            prerequisite_module_ids=["m1"],
            sequential=True,
        ),
    )


def enrolled(c: dict[str, Any], minute: int = 0) -> dict[str, Any]:
    d = decide_enroll(
        c, {"count": 0, "seq": 0}, None, EnrollInput(str(uuid.uuid4()), "c-1", "s", at(minute), "t")
    )
    assert d.enrollment is not None
    return d.enrollment


def report(
    item_id: str, status: str = "completed", minute: int = 1, score: float | None = None
) -> ProgressInput:
    return ProgressInput(str(uuid.uuid4()), "c-1", "s", item_id, status, score, at(minute))


def test_a_report_on_a_locked_item_is_refused_with_what_it_waits_for() -> None:
    c = quiz_gate()
    record = enrolled(c)
    d = decide_progress(c, record, report("i3"))
    assert d.refusal is not None and d.refusal.kind is RefusalKind.ITEM_LOCKED
    assert "module m1" in d.refusal.detail
    assert d.enrollment is None and d.events == () and d.milestones == ()


def test_below_min_score_fails_and_a_later_better_report_completes_and_unlocks_once() -> None:
    c = quiz_gate()
    record = enrolled(c)
    record = decide_progress(c, record, report("i1")).enrollment
    failed = decide_progress(c, record, report("i2", score=4))
    states = {i["item_id"]: i for i in failed.reply_enrollment["progress"]["items"]}
    assert states["i2"]["status"] == "failed" and states["i2"]["completed_at"] is None
    assert failed.milestones == ()
    passed = decide_progress(c, failed.enrollment, report("i2", score=7, minute=2))
    assert [m["module_id"] for m in passed.milestones] == ["m2"]
    assert passed.milestones[0]["event_type"] == "module_unlocked"
    assert passed.enrollment["opened"] == ["m1", "m2"]
    modules = {m["module_id"]: m["state"] for m in passed.reply_enrollment["progress"]["modules"]}
    assert modules == {"m1": "completed", "m2": "unlocked"}
    # a worse retake takes nothing back, and sends nothing again
    worse = decide_progress(c, passed.enrollment, report("i2", score=1, minute=3))
    assert worse.milestones == ()
    view = (worse.reply_enrollment or public_view(passed.enrollment, c, at(3)))["progress"]
    assert {i["item_id"]: i["status"] for i in view["items"]}["i2"] == "completed"
    assert view["items"][1]["score"] == 7


def test_sequential_items_wait_for_the_one_before_and_completion_counts_requirements() -> None:
    c = quiz_gate()
    record = enrolled(c)
    for n, (item_id, score) in enumerate((("i1", None), ("i2", 6.0))):
        record = decide_progress(c, record, report(item_id, score=score, minute=n + 1)).enrollment
    refused = decide_progress(c, record, report("i4", "started", minute=5))
    assert refused.refusal is not None and "item i3" in refused.refusal.detail
    record = decide_progress(c, record, report("i3", minute=6)).enrollment
    assert record["completed_at"] is None
    done = decide_progress(c, record, report("i4", "started", minute=7))  # view: any report
    assert [e["event_type"] for e in done.events] == ["progress_updated", "course_completed"]
    progress = done.reply_enrollment["progress"]
    assert progress["percent"] == 100.0 and progress["next_item_id"] is None


def test_a_time_lock_refuses_before_its_moment_and_a_drawn_view_goes_stale_at_it() -> None:
    moment = "2026-12-06T10:00:00.000Z"
    c = course(module("m1", [item("i1")]), module("m2", [item("i2")], unlock_at=moment))
    record = enrolled(c)
    early = decide_progress(c, record, report("i2", minute=30))
    assert early.refusal is not None and f"until {moment}" in early.refusal.detail
    view = public_view(record, c, at(30))
    assert view["progress"]["modules"][1] == {
        "module_id": "m2",
        "state": "locked",
        "unlocks_at": moment,
    }
    assert not is_stale(view, c, at(59)) and is_stale(view, c, at(60))
    assert public_view(record, c, at(60))["progress"]["modules"][1]["state"] == "unlocked"
    late = decide_progress(c, record, report("i2", minute=61))
    assert late.outcome is Outcome.APPLIED and late.milestones == ()  # the timer sends it


def test_a_view_locked_by_a_prerequisite_is_not_stale_after_its_date() -> None:
    moment = "2026-12-06T10:00:00.000Z"
    c = course(
        module("m1", [item("i1")]),
        module("m2", [item("i2")], unlock_at=moment, prerequisite_module_ids=["m1"]),
    )
    view = public_view(enrolled(c), c, at(90))
    assert view["progress"]["modules"][1]["state"] == "locked"
    assert not is_stale(view, c, at(120))


def test_modules_open_at_enrolment_send_no_milestone() -> None:
    c = quiz_gate()
    assert enrolled(c)["opened"] == ["m1"]


def test_a_report_dated_before_a_time_lock_stays_locked_after_a_later_report_started_it() -> None:
    """CI's chaos run (seed 349): a feed record refused before the module's date, sent
    again after the learner had reported on the module, was applied; its moment was still
    before the date (decision 66). Refused in either order now."""
    moment = "2026-12-06T10:00:00.000Z"
    c = course(module("m1", [item("i1")]), module("m2", [item("i2"), item("i3")], unlock_at=moment))
    record = enrolled(c)
    started = decide_progress(c, record, report("i2", "started", minute=61))
    assert started.outcome is Outcome.APPLIED and started.enrollment is not None
    early = report("i3", "started", minute=30)
    d = decide_progress(c, record, early)  # first: refused by the path as it was at 09:30
    assert d.refusal is not None and f"until {moment}" in d.refusal.detail
    d = decide_progress(c, started.enrollment, early)  # again, after m2 was started
    assert d.refusal is not None and d.refusal.kind is RefusalKind.ITEM_LOCKED
    assert f"waited until {moment}" in d.refusal.detail
    on_time = decide_progress(c, started.enrollment, report("i3", "started", minute=62))
    assert on_time.outcome is Outcome.APPLIED


def test_a_module_started_before_its_date_moved_later_stays_open() -> None:
    """Decision 55 holds: the learner started m2 while it was open; the instructor moved
    its date later; a report between the two is applied."""
    c = course(module("m1", [item("i1")]), module("m2", [item("i2"), item("i3")]))
    started = decide_progress(c, enrolled(c), report("i2", "started", minute=10))
    assert started.enrollment is not None
    moved = course(
        module("m1", [item("i1")]),
        module("m2", [item("i2"), item("i3")], unlock_at="2026-12-06T12:00:00.000Z"),
    )
    d = decide_progress(moved, started.enrollment, report("i3", "completed", minute=20))
    assert d.outcome is Outcome.APPLIED and d.enrollment is not None
    assert d.enrollment["items"]["i2"]["first_at"] == rfc3339(at(10))


def test_a_state_kept_before_first_at_repeats_unchanged_and_counts_as_started() -> None:
    """Item states written before decision 66 lack `first_at`: a repeated report changes
    nothing (no new version, no event), and their module counts as started, as before."""
    c = course(module("m1", [item("i1")]), module("m2", [item("i2"), item("i3")]))
    repeat = report("i2", "started", minute=40)
    started = decide_progress(c, enrolled(c), repeat)
    assert started.enrollment is not None
    legacy = {**started.enrollment, "items": {"i2": {**started.enrollment["items"]["i2"]}}}
    del legacy["items"]["i2"]["first_at"]
    again = decide_progress(c, legacy, repeat)  # type: ignore[arg-type]
    assert again.outcome is Outcome.UNCHANGED and again.events == ()
    moved = course(
        module("m1", [item("i1")]),
        module("m2", [item("i2"), item("i3")], unlock_at="2026-12-06T12:00:00.000Z"),
    )
    d = decide_progress(moved, legacy, report("i3", "started", minute=30))  # type: ignore[arg-type]
    assert d.outcome is Outcome.APPLIED


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["i1", "i2", "i3", "i4"]),
            st.sampled_from(["started", "completed"]),
            st.one_of(st.none(), st.integers(0, 10)),
        ),
        max_size=12,
    )
)
def test_no_locked_report_is_applied_and_each_milestone_comes_once(reports: list) -> None:
    c = quiz_gate()
    record = enrolled(c)
    sent: list[str] = []
    for n, (item_id, status, score) in enumerate(reports):
        scored = None if item_id in ("i1", "i3", "i4") else score
        d = decide_progress(c, record, report(item_id, status, minute=n + 1, score=scored))
        if d.refusal is not None:
            assert d.refusal.kind is RefusalKind.ITEM_LOCKED
            locked = {
                i["item_id"]
                for i in public_view(record, c, at(n + 1))["progress"]["items"]
                if i["locked"]
            }
            assert item_id in locked
            continue
        sent += [m["module_id"] for m in d.milestones]
        record = d.enrollment or record
    assert len(sent) == len(set(sent))
    assert set(sent) <= {"m2"}
    statuses = {k: v["status"] for k, v in record.get("items", {}).items()}
    if "i3" in statuses or "i4" in statuses:  # m2 was open when reported on
        assert statuses.get("i1") == "completed" and statuses.get("i2") == "completed"


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["started", "completed"]),
            st.one_of(st.none(), st.integers(0, 10)),
            st.integers(0, 50),
        ),
        min_size=1,
        max_size=6,
    ),
    st.randoms(use_true_random=False),
)
def test_a_min_score_items_state_is_the_same_in_any_order(reports: list, rng: Any) -> None:
    """Review of issue 25: the status and completion time did depend on the order. Only
    a `completed` report reaching `min_score` completes the item, at the earliest such."""
    quiz = item("i2", "quiz", {"type": "min_score", "min_score": 6.0})
    inputs = [
        ProgressInput(f"e{n}", "c-1", "s", "i2", status, score, at(minute))
        for n, (status, score, minute) in enumerate(reports)
    ]
    shuffled = list(inputs)
    rng.shuffle(shuffled)
    states = []
    for order in (inputs, shuffled, inputs + shuffled):
        state = None
        for report_ in order:
            state = merge_report(state, report_, quiz)
        states.append(state)
    assert states[0] == states[1] == states[2]
    passing = [r for r in inputs if r.status == "completed" and (r.score or 0) >= 6]
    assert (states[0]["status"] == "completed") == bool(passing)
    if passing:
        assert states[0]["completed_at"] == rfc3339(min(r.occurred_at for r in passing))


def test_a_relaxed_rule_meets_what_the_reports_already_did() -> None:
    quiz = item("i2", "quiz", {"type": "min_score", "min_score": 8.0})
    state = merge_report(None, report("i2", score=6), quiz)
    assert state["status"] == "failed" and not requirement_met(quiz, state)
    lower = {**quiz, "completion": {"type": "min_score", "min_score": 5.0}}
    assert requirement_met(lower, state)
    plain = {**quiz, "completion": {"type": "complete", "min_score": None}}
    assert requirement_met(plain, state)
    stricter = {**quiz, "completion": {"type": "min_score", "min_score": 9.0}}
    passed = merge_report(state, report("i2", score=8, minute=2), quiz)
    assert requirement_met(stricter, passed)  # a completion is never taken back

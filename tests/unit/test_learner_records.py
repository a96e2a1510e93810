"""One enrollment per learner, ever; ratings counted once; progress as a join of reports;
consistency tokens. Pure (issue 11's findings 1, 2 and 6, and its bad input)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_management.domain import consistency
from course_management.domain.commands import CourseCommand
from course_management.domain.consistency import Marks
from course_management.domain.enrollment import (
    EMPTY_SEATS,
    CancelInput,
    EnrollInput,
    ProgressInput,
)
from course_management.domain.outcomes import Outcome, RefusalKind
from course_management.domain.ratings import course_rating, decide_rating
from course_management.domain.reports import decide_progress, merge_report
from course_management.domain.seats import decide_cancel, decide_enroll
from tests.unit.test_ratings import published, student

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def course_with(record: dict[str, Any]) -> dict[str, Any]:
    return record["course"]


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def enroll_input(user: str, minute: int, event_id: str | None = None) -> EnrollInput:
    return EnrollInput(event_id or str(uuid.uuid4()), "c-1", user, at(minute), "test")


def cancel_input(user: str, minute: int) -> CancelInput:
    return CancelInput(str(uuid.uuid4()), "c-1", user, at(minute))


def report(user: str, item: str, status: str, minute: int, score: float | None = None):
    return ProgressInput(str(uuid.uuid4()), "c-1", user, item, status, score, at(minute))


def rate(user: str, stars: int, minute: int) -> CourseCommand:
    return CourseCommand(
        command_id=str(uuid.uuid4()),
        command_type="rate_course",
        course_id="c-1",
        occurred_at=at(minute),
        actor=student(user),
        payload={"stars": stars},
        payload_hash="h",
    )


def test_re_enrolment_keeps_progress_completion_and_rating_and_completes_once() -> None:
    """Finding 2: complete, cancel, enrol again -> the same record, still completed."""
    record = published()
    course = course_with(record)
    items = [i["id"] for m in course["modules"] for i in m["items"]]
    e = decide_enroll(course, {"count": 0, "seq": 0}, None, enroll_input("s", 1)).enrollment
    completions = 0
    for n, item in enumerate(items):
        d = decide_progress(course, e, report("s", item, "completed", 2 + n))
        completions += [x["event_type"] for x in d.events].count("course_completed")
        e = d.enrollment
    assert e["status"] == "completed" and completions == 1
    completed_at = e["completed_at"]
    e = decide_cancel(course, {"count": 1, "seq": 0}, e, cancel_input("s", 30)).enrollment
    again = decide_enroll(course, {"count": 0, "seq": 0}, e, enroll_input("s", 40))
    assert again.outcome is Outcome.CREATED and again.seats_taken == 1
    view = again.reply_enrollment
    assert view["status"] == "completed"
    assert view["progress"]["completed_items"] == len(items)
    assert view["progress"]["completed_at"] == completed_at
    assert view["progress"]["next_item_id"] is None
    assert [t["status"] for t in again.enrollment["history"]] == [
        "active",
        "completed",
        "cancelled",
        "completed",
    ]
    # A further completion report never completes the course again.
    d = decide_progress(course, again.enrollment, report("s", items[0], "completed", 50))
    assert "course_completed" not in [x["event_type"] for x in d.events]


def test_the_enrolment_read_lists_each_items_state_in_course_order() -> None:
    record = published()
    course = course_with(record)
    items = [i["id"] for m in course["modules"] for i in m["items"]]
    e = decide_enroll(course, {"count": 0, "seq": 0}, None, enroll_input("s", 1)).enrollment
    view = decide_progress(course, e, report("s", items[0], "completed", 2)).reply_enrollment
    states = view["progress"]["items"]
    assert [s["item_id"] for s in states] == items
    assert states[0] == {
        "item_id": items[0],
        "status": "completed",
        "score": None,  # a lesson takes no score
        "completed_at": "2026-12-01T09:02:00.000Z",
        "locked": False,
    }
    assert all(s["status"] == "not_started" for s in states[1:])


def test_progress_on_a_cancelled_enrolment_is_refused_saying_why() -> None:
    record = published()
    course = course_with(record)
    item = course["modules"][0]["items"][0]["id"]
    e = decide_enroll(course, {"count": 0, "seq": 0}, None, enroll_input("s", 1)).enrollment
    e = decide_cancel(course, {"count": 1, "seq": 0}, e, cancel_input("s", 2)).enrollment
    refused = decide_progress(course, e, report("s", item, "started", 3))
    assert refused.refusal is not None
    assert refused.refusal.kind is RefusalKind.ENROLLMENT_CANCELLED
    assert "cancelled on 2026-12-01T09:02:00.000Z" in refused.refusal.detail
    assert refused.enrollment is None and refused.events == ()


def test_a_status_change_repeated_after_later_changes_changes_nothing() -> None:
    """A window far out: the record keeps the last HISTORY_KEPT (1,000) status changes'
    event ids, beyond the old window of 32 (issue 24 bounded what was unbounded)."""
    course = course_with(published())
    first = enroll_input("s", 1, event_id="enrol-1")
    e = decide_enroll(course, {"count": 0, "seq": 0}, None, first).enrollment
    for n in range(40):  # more changes than the old window of 32 ids
        e = decide_cancel(
            course, {"count": 1, "seq": 0}, e, cancel_input("s", 2 + 2 * n)
        ).enrollment
        e = decide_enroll(
            course, {"count": 0, "seq": 0}, e, enroll_input("s", 3 + 2 * n)
        ).enrollment
    e = decide_cancel(course, {"count": 1, "seq": 0}, e, cancel_input("s", 100)).enrollment
    repeat = decide_enroll(course, {"count": 0, "seq": 0}, e, first)
    assert repeat.outcome is Outcome.UNCHANGED and repeat.enrollment is None


# -- progress is a join: order and repeats do not matter ----------------------------------

REPORTS = st.lists(
    st.tuples(
        st.sampled_from(["started", "completed"]),
        st.integers(0, 20),  # minute
        st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(REPORTS, st.randoms(use_true_random=False))
def test_an_items_state_is_the_same_whatever_the_order_and_repeats(reports, rnd) -> None:
    inputs = [
        ProgressInput(f"ev-{n}", "c-1", "s", "i1", status, score, at(minute))
        for n, (status, minute, score) in enumerate(reports)
    ]
    forward: Any = None
    for i in inputs:
        forward = merge_report(forward, i)
    shuffled = [*inputs, *rnd.sample(inputs, k=len(inputs) // 2)]
    rnd.shuffle(shuffled)
    other: Any = None
    for i in shuffled:
        other = merge_report(other, i)
    assert other == forward
    if any(s == "completed" for s, _, _ in reports):
        assert forward["status"] == "completed"
        first_done = min(m for s, m, _ in reports if s == "completed")
        assert forward["completed_at"] == at(first_done).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# -- ratings: one per learner and course, whatever the enrolment history ------------------

ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["alice", "bob", "carol"]),
        st.sampled_from(["rate", "cancel", "enrol"]),
        st.integers(1, 5),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ACTIONS)
def test_the_rating_is_exact_after_any_sequence_of_rate_cancel_and_re_enrol(actions) -> None:
    """Finding 1, against a model: a dict of each learner's latest stars."""
    record = published()
    stats: dict[str, Any] = dict(EMPTY_SEATS)  # the seats record, holding the rating totals
    enrollments: dict[str, dict[str, Any]] = {}
    seats: Any = dict(EMPTY_SEATS)
    model: dict[str, int] = {}
    for minute, (user, action, stars) in enumerate(actions, start=1):
        course = course_with(record)
        if action == "enrol":
            d = decide_enroll(course, seats, enrollments.get(user), enroll_input(user, minute))
            if d.enrollment is not None:
                enrollments[user] = d.enrollment
            seats = d.seats if d.seats is not None else seats
        elif action == "cancel":
            d = decide_cancel(course, seats, enrollments.get(user), cancel_input(user, minute))
            if d.enrollment is not None:
                enrollments[user] = d.enrollment
            seats = d.seats if d.seats is not None else seats
        else:
            r = decide_rating(record, stats, enrollments.get(user), rate(user, stars, minute))
            if r.record is not None:
                record = r.record
            if r.seats is not None:
                stats = r.seats
            if r.enrollment is not None:
                enrollments[user] = r.enrollment
            if enrollments.get(user, {}).get("status") in ("active", "completed"):
                model[user] = stars
    rating = course_rating(record, stats)
    assert rating["count"] == len(model)
    expected = round(sum(model.values()) / len(model), 2) if model else None
    assert rating["average"] == expected
    assert stats.get("rating_sum", 0) == sum(model.values())
    assert course_with(record)["version"] == 1  # ratings make no course version


def test_the_issues_sequence_counts_one_rating() -> None:
    """5, re-rate 3, cancel, re-enrol, rate 1 -> {"average": 1.0, "count": 1}."""
    record = published()
    course = course_with(record)
    e = decide_enroll(course, {"count": 0, "seq": 0}, None, enroll_input("s", 1)).enrollment
    stats: Any = EMPTY_SEATS
    for minute, stars in ((2, 5), (3, 3)):
        r = decide_rating(record, stats, e, rate("s", stars, minute))
        record, stats, e = r.record, r.seats, r.enrollment
    e = decide_cancel(
        course_with(record), {"count": 1, "seq": 0}, e, cancel_input("s", 4)
    ).enrollment
    e = decide_enroll(
        course_with(record), {"count": 0, "seq": 0}, e, enroll_input("s", 5)
    ).enrollment
    r = decide_rating(record, stats, e, rate("s", 1, 6))
    assert course_rating(r.record, r.seats) == {"average": 1.0, "count": 1}


def test_stars_out_of_range_are_refused_naming_the_field() -> None:
    record = published()
    e = decide_enroll(
        course_with(record), {"count": 0, "seq": 0}, None, enroll_input("s", 1)
    ).enrollment
    for stars in (0, 6, -1, 10**30):
        refused = decide_rating(record, EMPTY_SEATS, e, rate("s", stars, 2)).reply.refusal
        assert refused is not None and refused.kind is RefusalKind.INVALID
        assert refused.errors[0]["field"] == "stars"


# -- consistency tokens -------------------------------------------------------------------


def test_a_token_round_trips_and_names_what_it_waits_for() -> None:
    marks = Marks(
        course=("c-1", 4),
        catalog=("c-1", 4_000_017),
        enrollment=("c-1", "s", 9),
        rating=("c-1", "s", 4),
    )
    token = consistency.encode(marks)
    assert consistency.decode(token) == marks
    assert marks.course_version("c-1") == 4 and marks.course_version("c-2") == 0
    assert marks.enrollment_version("c-1", "s") == 9 and marks.enrollment_version("c-1", "t") == 0


@pytest.mark.parametrize(
    "bad",
    ["", "!!!", "e30", "eyJmIjoyfQ", "eyJmIjoxLCJjIjpbMSwyXX0", "eyJmIjoxLCJjIjpbImMiLC0xXX0"],
)
def test_a_damaged_token_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        consistency.decode(bad)

"""The waitlist (CONTRACT §5.2) through the agent's own handlers (a real Batch over an
in-memory store: tests/unit/test_handlers.py's Harness), and its pure decisions.

The property test drives random sequences of enrolments, cancellations, capacity and
waitlist changes and rule changes (the course taken down and up, its window closed and
opened) and checks after every step: the seats never exceed the capacity when someone
takes one, the queue is first come first served and numbered 1..n, nobody is promoted
who does not qualify at that moment, and no seat stays free while someone qualified
waits.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course_management.domain.commands import Actor
from course_management.domain.enrollment import EMPTY_SEATS, CancelInput, EnrollInput, ProgressInput
from course_management.domain.outcomes import Outcome, RefusalKind
from course_management.domain.seats import decide_admission, decide_cancel, decide_enroll
from course_management.streams.inputs import Input
from course_management.tables.keys import enrollment_key, seats_key, wait_key
from course_management.topology import (
    COURSE_PROGRESS,
    ENROLLMENT_EVENTS,
    LEARNER_MILESTONES,
    USER_ENROLLED,
)
from tests.unit.test_handlers import (
    COURSE,
    REPLY_TO,
    STUDENT,
    WHEN,
    Harness,
    command,
    course_payload,
    from_api,
)

USERS = [f"u{n}" for n in range(8)]
_ids = itertools.count()


def enrol(user_id: str, minute: int) -> Input:
    event_id = f"enrol-{user_id}-{next(_ids)}"
    return Input(
        kind="user_enrolled",
        source_topic=USER_ENROLLED,
        key=user_id.encode(),
        raw=f"avro:{event_id}".encode(),
        message=EnrollInput(event_id, COURSE, user_id, WHEN + timedelta(minutes=minute), "test"),
        reply_to=REPLY_TO,
        correlation_id=event_id,
    )


def cancel(user_id: str, minute: int) -> Input:
    cmd = command(
        "cancel_enrollment",
        {"user_id": user_id},
        actor=STUDENT,
        command_id=f"cancel-{user_id}-{next(_ids)}",
        at=WHEN + timedelta(minutes=minute),
    )
    return from_api(cmd)


def update(minute: int, **fields: Any) -> Input:
    cmd = command(
        "update_course",
        fields,
        command_id=f"update-{next(_ids)}",
        at=WHEN + timedelta(minutes=minute),
    )
    return from_api(cmd)


async def created(h: Harness, **fields: Any) -> None:
    await h.run(from_api(command("create_course", course_payload(**fields)), request=False))
    h.next_batch()


def state(h: Harness) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    course = h.final(COURSE)["course"]
    seats = h.final(seats_key(COURSE)) or dict(EMPTY_SEATS)
    records = {u: r for u in USERS if (r := h.final(enrollment_key(COURSE, u))) is not None}
    return course, seats, records


def queue(h: Harness) -> list[tuple[int, str]]:
    """(ticket, user) of every entry of the queue, in ticket order."""
    seats = h.final(seats_key(COURSE)) or {}
    found = []
    for ticket in range(1, seats.get("wait_next", 1)):
        entry = h.final(wait_key(COURSE, ticket))
        if entry is not None:
            found.append((ticket, entry["user_id"]))
    return found


def positions(ran_records: list[Any]) -> list[int]:
    return [
        r.value["waitlist_position"]
        for r in ran_records
        if r.topic == LEARNER_MILESTONES and r.value["event_type"] == "waitlisted"
    ]


async def test_a_full_course_queues_then_promotes_the_head_when_a_seat_is_freed() -> None:
    h = Harness()
    await created(h, capacity=1, waitlist_capacity=2)
    first = await h.run(enrol("u0", 1))
    assert first.replies[0].reply.outcome is Outcome.CREATED
    second = await h.run(enrol("u1", 2))
    body = second.replies[0].reply.body
    assert second.replies[0].reply.outcome is Outcome.CREATED
    assert (body["status"], body["waitlist_position"], body["enrolled_at"]) == (
        "waitlisted",
        1,
        None,
    )
    assert ENROLLMENT_EVENTS not in second.topics  # waiting is not an enrolment
    assert positions(second.records) == [1]
    third = await h.run(enrol("u2", 3))
    assert third.replies[0].reply.body["waitlist_position"] == 2
    full = await h.run(enrol("u3", 4))
    assert full.replies[0].reply.refusal.kind is RefusalKind.COURSE_FULL
    again = await h.run(enrol("u2", 5))  # a repeat: 200 with the current place
    assert again.replies[0].reply.outcome is Outcome.UNCHANGED
    assert again.replies[0].reply.body["waitlist_position"] == 2
    assert h.final(seats_key(COURSE))["waiting"] == 2
    freed = await h.run(cancel("u0", 6))
    kinds = [(r.topic, r.value["event_type"]) for r in freed.records if r.subject]
    assert (ENROLLMENT_EVENTS, "enrollment_cancelled") in kinds
    assert (ENROLLMENT_EVENTS, "enrollment_created") in kinds
    assert (LEARNER_MILESTONES, "waitlist_left") in kinds
    promoted = [r.value for r in freed.records if r.topic == ENROLLMENT_EVENTS][-1]
    assert (promoted["user_id"], promoted["reactivated"]) == ("u1", False)
    assert h.final(enrollment_key(COURSE, "u1"))["status"] == "active"
    assert h.final(seats_key(COURSE))["waiting"] == 1
    behind = await h.run(enrol("u2", 7))
    assert behind.replies[0].reply.body["waitlist_position"] == 1  # moved up


async def test_cancelling_while_waiting_leaves_the_queue_and_those_behind_move_up() -> None:
    h = Harness()
    await created(h, capacity=1, waitlist_capacity=5)
    for minute, user in enumerate(["u0", "u1", "u2", "u3"], start=1):
        await h.run(enrol(user, minute))
    left = await h.run(cancel("u2", 10))
    assert left.replies[0].reply.outcome is Outcome.REMOVED
    milestone = [r.value for r in left.records if r.topic == LEARNER_MILESTONES]
    assert [(m["event_type"], m["reason"]) for m in milestone] == [("waitlist_left", "cancelled")]
    assert ENROLLMENT_EVENTS not in left.topics
    assert [u for _, u in queue(h)] == ["u1", "u3"]
    later = await h.run(enrol("u3", 11))
    assert later.replies[0].reply.body["waitlist_position"] == 2
    await h.run(cancel("u0", 12))
    assert [u for _, u in queue(h)] == ["u3"]
    assert h.final(enrollment_key(COURSE, "u1"))["status"] == "active"
    assert h.final(enrollment_key(COURSE, "u3"))["status"] == "waitlisted"


async def test_raising_the_capacity_promotes_and_a_closed_course_takes_the_head_off() -> None:
    h = Harness()
    await created(h, capacity=1, waitlist_capacity=5)
    for minute, user in enumerate(["u0", "u1", "u2", "u3"], start=1):
        await h.run(enrol(user, minute))
    raised = await h.run(update(5, capacity=2))
    created_events = [r.value["user_id"] for r in raised.records if r.topic == ENROLLMENT_EVENTS]
    assert created_events == ["u1"]
    await h.run(update(6, status="archived"))
    taken = await h.run(cancel("u0", 7))
    off = [r.value for r in taken.records if r.topic == LEARNER_MILESTONES]
    assert [(m["user_id"], m["reason"]) for m in off] == [
        ("u2", "course-not-published"),
        ("u3", "course-not-published"),
    ]
    record = h.final(enrollment_key(COURSE, "u2"))
    assert (record["status"], record["cancel_reason"]) == ("cancelled", "course-not-published")
    assert h.final(seats_key(COURSE))["waiting"] == 0


async def test_a_learner_cancelled_then_promoted_is_reactivated_in_the_event() -> None:
    h = Harness()
    await created(h, capacity=1, waitlist_capacity=5)
    await h.run(enrol("u0", 1))
    await h.run(cancel("u0", 2))
    await h.run(enrol("u1", 3))
    await h.run(enrol("u0", 4))  # waits now, after a cancelled enrolment
    ran = await h.run(cancel("u1", 5))
    promoted = [r.value for r in ran.records if r.topic == ENROLLMENT_EVENTS][-1]
    assert (promoted["user_id"], promoted["event_type"], promoted["reactivated"]) == (
        "u0",
        "enrollment_created",
        True,
    )
    # the version of enrollment-events moves one by one: waiting made no version
    assert promoted["version"] == 3


def test_a_promotion_rechecks_the_window_and_is_keyed_by_the_cause() -> None:
    course = {
        "id": COURSE,
        "status": "published",
        "capacity": 1,
        "waitlist_capacity": 3,
        "enrollment_opens_at": None,
        "enrollment_closes_at": None,
        "modules": [],
        "prerequisite_course_ids": ["c-0"],
    }
    seats: Any = {"count": 1, "seq": 1}
    joined = decide_enroll(course, seats, None, EnrollInput("e", COURSE, "u", WHEN, "t"), ["c-0"])
    assert joined.enrollment is not None and joined.seats is not None
    freed = {**joined.seats, "count": 0}
    missing = decide_admission(course, freed, joined.enrollment, 1, "cause", WHEN, ())
    assert missing.enrollment is not None
    assert missing.enrollment["cancel_reason"] == "prerequisites-not-met"
    ok = decide_admission(course, freed, joined.enrollment, 1, "cause", WHEN, ["c-0"])
    again = decide_admission(course, freed, joined.enrollment, 1, "cause", WHEN, ["c-0"])
    assert ok == again and ok.events[0]["event_type"] == "enrollment_created"
    closed = {**course, "enrollment_closes_at": "2000-01-01T00:00:00.000Z"}
    shut = decide_admission(closed, freed, joined.enrollment, 1, "cause", WHEN, ["c-0"])
    assert shut.events == () and shut.milestones[0]["reason"] == "enrollment-closed"
    nobody = decide_cancel(course, seats, None, CancelInput("x", COURSE, "u", WHEN))
    assert nobody.refusal is not None


# -- the property ---------------------------------------------------------------------------

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("enrol"), st.sampled_from(USERS)),
        st.tuples(st.just("cancel"), st.sampled_from(USERS)),
        st.tuples(st.just("capacity"), st.integers(1, 5)),
        st.tuples(st.just("waitlist"), st.integers(0, 4)),
        st.tuples(st.just("status"), st.sampled_from(["published", "archived"])),
        st.tuples(st.just("window"), st.booleans()),
        st.tuples(st.just("progress"), st.sampled_from(USERS)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS)
@pytest.mark.asyncio
async def test_the_queue_is_fair_exact_and_never_over_capacity(
    actions: list[tuple[str, Any]],
) -> None:
    h = Harness()
    await created(h, capacity=2, waitlist_capacity=3)
    promoted_tickets: list[int] = []
    for minute, (kind, arg) in enumerate(actions, start=1):
        course_before, seats_before, records_before = state(h)
        queue_before = queue(h)
        if kind == "enrol":
            ran = await h.run(enrol(arg, minute))
        elif kind == "cancel":
            ran = await h.run(cancel(arg, minute))
        elif kind == "capacity":
            ran = await h.run(update(minute, capacity=arg))
        elif kind == "waitlist":
            ran = await h.run(update(minute, waitlist_capacity=arg))
        elif kind == "status":
            ran = await h.run(update(minute, status=arg))
        elif kind == "progress":
            item = course_before["modules"][0]["items"][0]["id"]
            report = ProgressInput(f"p-{next(_ids)}", COURSE, arg, item, "started", None, WHEN)
            ran = await h.run(
                Input(
                    kind="item_progress",
                    source_topic=COURSE_PROGRESS,
                    key=arg.encode(),
                    raw=b"avro:p",
                    message=replace(report, occurred_at=WHEN + timedelta(minutes=minute)),
                    reply_to=REPLY_TO,
                    correlation_id=report.event_id,
                )
            )
        else:
            closes = None if arg else (WHEN - timedelta(days=1)).isoformat()
            ran = await h.run(update(minute, enrollment_closes_at=closes))
        h.next_batch()
        course, seats, records = state(h)
        # the enrollment events' enum knows no "waitlisted": waiting has no event
        assert all(
            r.value["enrollment"]["status"] in ("active", "cancelled", "completed")
            for r in ran.records
            if r.topic == ENROLLMENT_EVENTS
        )
        qualifies = course["status"] == "published" and course["enrollment_closes_at"] is None
        taking = [
            r.value for r in ran.records if r.topic == ENROLLMENT_EVENTS
            and r.value["event_type"] == "enrollment_created"
        ]  # fmt: skip
        # nobody takes a seat beyond the capacity, or while the rules refuse them
        if taking:
            assert qualifies
            assert seats["count"] <= course["capacity"]
        # the counts are the records'
        holding = [u for u, r in records.items() if r["status"] in ("active", "completed")]
        waiting = [u for u, r in records.items() if r["status"] == "waitlisted"]
        assert seats["count"] == len(holding)
        assert seats.get("waiting", 0) == len(waiting) == len(queue(h))
        # the queue: tickets in the order they were handed out, one per learner waiting
        tickets = queue(h)
        assert sorted(u for _, u in tickets) == sorted(waiting)
        assert all(records[u]["wait_ticket"] == t for t, u in tickets)
        assert len(waiting) <= max(course.get("waitlist_capacity") or 0, len(queue_before))
        # first come first served: a promotion takes the lowest ticket waiting
        for event in taking:
            before = dict((u, t) for t, u in queue_before)
            if event["user_id"] in before:
                ticket = before[event["user_id"]]
                assert all(t >= ticket for t, u in tickets)
                promoted_tickets.append(ticket)
        # no seat stays free while someone who qualifies waits
        if qualifies and tickets:
            assert seats["count"] >= course["capacity"]
        del course_before, seats_before, records_before
    assert promoted_tickets == sorted(promoted_tickets)


async def test_a_waiting_learner_neither_reports_progress_nor_rates() -> None:
    h = Harness()
    await created(h, capacity=1, waitlist_capacity=2)
    await h.run(enrol("u0", 1))
    await h.run(enrol("u1", 2))
    item = h.final(COURSE)["course"]["modules"][0]["items"][0]["id"]
    report = await h.run(
        Input(
            kind="item_progress",
            source_topic=COURSE_PROGRESS,
            key=b"u1",
            raw=b"avro:p",
            message=ProgressInput("p-1", COURSE, "u1", item, "completed", None, WHEN),
            reply_to=REPLY_TO,
            correlation_id="p-1",
        )
    )
    assert report.replies[0].reply.refusal.kind is RefusalKind.NOT_ENROLLED
    assert ENROLLMENT_EVENTS not in report.topics
    rating = await h.run(
        from_api(command("rate_course", {"stars": 5}, actor=Actor("u1", "U", ("student",))))
    )
    assert rating.replies[0].reply.refusal.kind is RefusalKind.NOT_ENROLLED


async def test_the_head_moves_past_those_who_left_and_a_deleted_course_empties_its_queue() -> None:
    h = Harness()
    await created(h, capacity=1, waitlist_capacity=5)
    for minute, user in enumerate(["u0", "u1", "u2", "u3", "u4"], start=1):
        await h.run(enrol(user, minute))
    await h.run(cancel("u2", 6))  # a gap in the middle
    await h.run(cancel("u0", 7))  # u1 promoted
    await h.run(cancel("u1", 8))  # u3 promoted, past the gap
    assert h.final(seats_key(COURSE))["wait_head"] == 4
    assert [u for _, u in queue(h)] == ["u4"]
    gone = await h.run(from_api(command("delete_course", command_id="delete-1")))
    off = [r.value for r in gone.records if r.topic == LEARNER_MILESTONES]
    assert [(m["user_id"], m["reason"]) for m in off] == [("u4", "course-not-found")]
    assert queue(h) == [] and h.final(seats_key(COURSE))["waiting"] == 0

"""The chaos checker on small made-up histories: a clean one passes, and each kind of
anomaly it promises to find is found (each test breaks one thing)."""

from __future__ import annotations

from typing import Any

from chaos.history import Attempt
from chaos.verify import Observed, verify
from course_management.domain.commands import derived_id

C = "course-1"


def course_event(version: int, request_id: str, offset: int, **course: Any) -> dict[str, Any]:
    kind = "course_created" if version == 1 else "course_updated"
    snapshot = {"status": "published", "capacity": 1, **course}
    return {
        "event_id": f"ce-{version}-{request_id}",
        "event_type": kind,
        "course_id": C,
        "version": version,
        "course": snapshot,
        "request_id": request_id,
        "partition": 0,
        "offset": offset,
    }


def enrollment_event(
    kind: str, user: str, version: int, status: str, request_id: str, offset: int, done: int = 0
) -> dict[str, Any]:
    return {
        "event_id": f"ee-{user}-{version}-{kind}",
        "event_type": kind,
        "course_id": C,
        "user_id": user,
        "version": version,
        "enrollment": {"status": status, "progress": {"completed_items": done}},
        "request_id": request_id,
        "partition": 1,
        "offset": offset,
    }


def attempt(kind: str, request_id: str, status: int | None, outcome: str, **more: Any) -> Attempt:
    return Attempt(
        op=more.pop("op", request_id.split(".")[0]),
        request_id=request_id,
        kind=kind,
        client="t",
        course_id=C,
        user_id=more.pop("user_id", None),
        sent_at=more.pop("sent_at", 0.0),
        status=status,
        outcome=outcome,
        **more,
    )


def clean() -> tuple[list[Attempt], Observed]:
    attempts = [
        attempt("create", "c1.a", None, "unknown", sent_at=1),
        attempt("create", "c1.b", 201, "ok", sent_at=2, answer={"id": C, "version": 1}),
        attempt("update", "u1.a", 200, "ok", sent_at=3, answer={"version": 2}),
        attempt("enroll", "e1.a", 201, "ok", user_id="ann", sent_at=4),
        attempt("enroll", "e2.a", 409, "refused", user_id="bob", sent_at=5),
        attempt(
            "progress",
            "p1.a",
            200,
            "ok",
            user_id="ann",
            sent_at=6,
            args={"item_id": "i1", "status": "completed"},
        ),
        attempt("rate", "r1.a", 200, "ok", user_id="ann", sent_at=7, args={"stars": 4}),
        attempt("rate", "r2.a", None, "unknown", user_id="ann", sent_at=8, args={"stars": 2}),
        attempt("cancel", "x1.a", 204, "ok", user_id="ann", sent_at=9),
        attempt("enroll", "e3.a", 201, "ok", user_id="bob", sent_at=10),
        attempt(
            "feed_malformed",
            "feed-1.r",
            None,
            "ok",
            args={"malformed": "garbage", "sha256": "abc", "topic": "user-enrolled"},
        ),
        attempt(
            "feed_enroll",
            "feed-2.r",
            None,
            "ok",
            user_id="cy",
            args={"event_id": "00000000-0000-0000-0000-000000000001"},
        ),
    ]
    course_events = [course_event(1, "c1.a", 0), course_event(2, "u1.a", 1)]
    enrollment_events = [
        enrollment_event("enrollment_created", "ann", 1, "active", "e1.a", 0),
        enrollment_event("progress_updated", "ann", 2, "active", "p1.a", 1, done=1),
        enrollment_event("enrollment_cancelled", "ann", 3, "cancelled", "x1.a", 2, done=1),
        enrollment_event("enrollment_created", "bob", 1, "active", "e3.a", 3),
    ]
    seen = Observed(
        course_events=course_events,
        enrollment_events=enrollment_events,
        dead_letters=[
            {"topic": "user-enrolled.dlq", "sha256": "abc", "event_id": None},
            {
                "topic": "course-management-enrollment-inputs.dlq",
                "sha256": "def",
                "event_id": "00000000-0000-0000-0000-000000000001",
            },
        ],
        courses={C: {"version": 2, "enrollment_count": 1, "rating": {"average": 4.0, "count": 1}}},
        enrollments={
            f"{C}:ann": None,
            f"{C}:bob": {"status": "active", "progress": {"completed_items": 0, "items": []}},
        },
        mirror_courses={C: {"version": 2}},
        mirror_enrollments={
            f"{C}:ann": {"status": "cancelled", "version": 3, "completed_items": 1},
            f"{C}:bob": {"status": "active", "version": 1, "completed_items": 0},
        },
        catalog={C: {"version": 2, "enrollment_count": 1, "rating": {"average": 4.0, "count": 1}}},
        ratings={C: {"ann": 4}},
    )
    return attempts, seen


def kinds(attempts: list[Attempt], seen: Observed) -> list[str]:
    return sorted({a.kind for a in verify(attempts, seen)})


def test_a_clean_history_has_no_anomaly() -> None:
    assert verify(*clean()) == []


def test_a_redelivered_event_is_counted_once() -> None:
    attempts, seen = clean()
    seen.enrollment_events.append({**seen.enrollment_events[0], "offset": 9})
    assert verify(attempts, seen) == []


def test_an_accepted_enrolment_without_its_event() -> None:
    attempts, seen = clean()
    seen.enrollment_events = [e for e in seen.enrollment_events if e["user_id"] != "bob"]
    seen.mirror_enrollments.pop(f"{C}:bob")
    assert "accepted write without its event" in kinds(attempts, seen)


def test_an_accepted_create_whose_course_never_came() -> None:
    attempts, seen = clean()
    seen.course_events = [{**e, "request_id": "u1.a"} for e in seen.course_events[1:]]
    seen.course_events[0]["version"] = 1  # the course's one event, an edit's
    found = verify(attempts, seen)
    assert [(a.kind, a.id) for a in found if a.kind.startswith("accepted")] == [
        ("accepted write without its event", "c1")
    ]


def test_a_write_applied_twice_and_an_unknown_one_applied_twice() -> None:
    attempts, seen = clean()
    second = enrollment_event("enrollment_created", "bob", 2, "active", "e3.a", 4)
    seen.enrollment_events.append(second)
    assert "applied twice" in kinds(attempts, seen)
    attempts, seen = clean()
    seen.course_events.append({**course_event(3, "c1.b", 2), "event_type": "course_created"})
    found = kinds(attempts, seen)
    assert "operation applied twice" in found  # one Idempotency-Key, two courses made


def test_an_event_for_a_refused_write_and_one_without_a_request() -> None:
    attempts, seen = clean()
    seen.enrollment_events.append(enrollment_event("enrollment_created", "bob", 2, "x", "e2.a", 5))
    assert "event for a write not applied" in kinds(attempts, seen)
    attempts, seen = clean()
    seen.enrollment_events.append(enrollment_event("progress_updated", "bob", 2, "active", "", 5))
    assert "event without a request" in kinds(attempts, seen)


def test_capacity_exceeded_at_one_moment_even_if_not_at_the_end() -> None:
    attempts, seen = clean()
    # bob enrols while ann still holds the only seat, then ann cancels
    events = seen.enrollment_events
    seen.enrollment_events = [events[0], events[1], {**events[3], "offset": 2}, events[2]]
    seen.enrollment_events[3] = {**events[2], "offset": 3}
    assert "capacity exceeded" in kinds(attempts, seen)


def test_course_versions_with_a_gap_or_out_of_order() -> None:
    attempts, seen = clean()
    seen.course_events[1] = {**seen.course_events[1], "version": 3}
    assert "course versions not contiguous" in kinds(attempts, seen)


def test_stores_behind_or_different_from_the_events() -> None:
    attempts, seen = clean()
    seen.mirror_courses[C] = {"version": 1}
    seen.catalog[C] = {**seen.catalog[C], "enrollment_count": 2}
    seen.enrollments[f"{C}:bob"] = None
    found = kinds(attempts, seen)
    assert {"mirror behind the events", "catalog differs", "tables differ from the events"} <= set(
        found
    )


def test_accepted_progress_that_the_tables_lost() -> None:
    attempts, seen = clean()
    attempts.append(
        attempt(
            "progress",
            "p2.a",
            200,
            "ok",
            user_id="bob",
            sent_at=11,
            args={"item_id": "i2", "status": "completed"},
        )
    )
    assert "accepted progress missing" in kinds(attempts, seen)


def test_a_completed_item_no_request_reported() -> None:
    attempts, seen = clean()
    items = [{"item_id": "i9", "status": "completed"}, {"item_id": "i1", "status": "started"}]
    seen.enrollments[f"{C}:bob"] = {
        "status": "active",
        "progress": {"completed_items": 0, "items": items},
    }
    attempts.append(attempt("progress", "p3.a", 200, "ok", user_id="bob", sent_at=11,
                            args={"item_id": "i1", "status": "started"}))  # fmt: skip
    assert kinds(attempts, seen) == ["progress no request reported"]


def test_a_rating_the_history_does_not_allow_and_an_aggregate_that_is_off() -> None:
    attempts, seen = clean()
    seen.ratings[C] = {"ann": 3}
    seen.courses[C] = {**(seen.courses[C] or {}), "rating": {"average": 3.0, "count": 1}}
    seen.catalog[C] = {**seen.catalog[C], "rating": {"average": 3.0, "count": 1}}
    assert kinds(attempts, seen) == ["rating differs from the history"]
    attempts, seen = clean()
    seen.ratings[C] = {"ann": 2}  # the unknown attempt applied: allowed
    assert kinds(attempts, seen) == ["course rating differs from its ratings"]
    attempts, seen = clean()
    seen.catalog[C] = {**seen.catalog[C], "rating": {"average": 5.0, "count": 1}}
    assert kinds(attempts, seen) == ["catalog differs"]


def test_a_lost_feed_record_and_a_malformed_one_not_dead_lettered() -> None:
    attempts, seen = clean()
    seen.dead_letters = []
    assert kinds(attempts, seen) == [
        "malformed record not dead-lettered",
        "user_enrolled record lost",
    ]
    attempts, seen = clean()
    seen.dead_letters = seen.dead_letters[:1]  # its enrollment event instead will do
    created = derived_id("00000000-0000-0000-0000-000000000001", "enrollment_created")
    seen.enrollment_events.append(
        {**enrollment_event("enrollment_created", "cy", 1, "x", "feed-2.r", 9), "event_id": created}
    )
    assert "user_enrolled record lost" not in kinds(attempts, seen)


def test_the_last_accepted_cancel_decides_the_status() -> None:
    attempts, seen = clean()
    attempts.append(attempt("cancel", "x2.a", 204, "ok", user_id="bob", sent_at=12))
    found = kinds(attempts, seen)
    assert "enrollment status differs from the history" in found
    assert "accepted write without its event" in found


def test_ops_check_differences_are_anomalies() -> None:
    attempts, seen = clean()
    seen.ops_check = [{"store": "mirror", "id": C}]
    assert kinds(attempts, seen) == ["ops check difference"]

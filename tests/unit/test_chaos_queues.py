"""The chaos checker's waitlist and job checks (chaos/queues.py) find what they must."""

from __future__ import annotations

from typing import Any

from chaos.queues import check_jobs, check_queues

_offsets = iter(range(1_000_000))


def milestone(kind: str, user: str, **fields: Any) -> dict[str, Any]:
    offset = next(_offsets)
    return {
        "event_id": f"m-{offset}",
        "event_type": kind,
        "course_id": "c",
        "user_id": user,
        "partition": 0,
        "offset": offset,
        "request_id": fields.pop("request_id", f"r-{offset}"),
        **fields,
    }


def created(user: str, request_id: str) -> dict[str, Any]:
    return {"event_type": "enrollment_created", "course_id": "c", "user_id": user,
            "request_id": request_id}  # fmt: skip


def test_a_fair_queue_passes_and_an_unfair_promotion_is_found() -> None:
    fair = [
        milestone("waitlisted", "a", waitlist_position=1),
        milestone("waitlisted", "b", waitlist_position=2),
        milestone("waitlist_left", "a", reason="promoted", request_id="free-1"),
        milestone("waitlist_left", "b", reason="cancelled"),
    ]
    assert check_queues([created("a", "free-1")], fair) == []
    unfair = [
        milestone("waitlisted", "a", waitlist_position=1),
        milestone("waitlisted", "b", waitlist_position=3),
        milestone("waitlist_left", "b", reason="promoted", request_id="free-2"),
    ]
    kinds = [kind for kind, _, _ in check_queues([], unfair)]
    assert kinds == [
        "waitlist position wrong",
        "not first come first served",
        "promotion without its enrolment",
    ]


def test_a_job_with_a_missing_or_doubled_row_is_found() -> None:
    job = {"status": "done", "total": 3, "course_id": "c", "counts": {"enrolled": 2, "invalid": 1}}
    rows = [
        {"row": 1, "user_id": "a", "outcome": "enrolled"},
        {"row": 2, "user_id": "", "outcome": "invalid"},
        {"row": 3, "user_id": "b", "outcome": "enrolled"},
    ]
    events = [created("a", "j"), created("b", "j")]
    assert check_jobs({"j": {"job": job, "rows": rows}}, events) == []
    doubled = {"j": {"job": job, "rows": [*rows[:2], rows[1], rows[2]]}}
    assert next(k for k, _, _ in check_jobs(doubled, events)) == "job rows not one outcome each"
    lost = {"j": {"job": job, "rows": rows}}
    assert [k for k, _, _ in check_jobs(lost, events[:1])] == ["job row enrolled without its event"]

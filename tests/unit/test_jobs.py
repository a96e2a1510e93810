"""Bulk enrolment jobs (issue 26, item 2): the file's rules (domain/jobs.py), and the
agent's chunk handler through its route (a real Batch over an in-memory store): rows in
order under the rules of a single enrolment, no row applied twice when a chunk comes
again, counts that equal the outcomes."""

from __future__ import annotations

from typing import Any

import pytest

from course_management.domain.jobs import (
    CHUNK_ROWS,
    MAX_ROWS,
    JobFileError,
    chunks,
    row_input_id,
    rows_of_csv,
    rows_of_json,
)
from course_management.domain.outcomes import Outcome
from course_management.tables.keys import enrollment_key, job_key
from course_management.topology import ENROLLMENT_EVENTS, JOB_PROGRESS
from tests.unit.test_handlers import COURSE, Harness, command, from_api
from tests.unit.test_waitlist import created

JOB = "00000000-0000-0000-0000-0000000000a1"


def test_a_csv_file_gives_its_user_id_column_in_file_order() -> None:
    raw = "\ufeffname, user_id ,email\nAda,u-1,a@x\nBea, u-2 ,b@x\n\nCy,,c@x\nDi,u\x01x,d@x\n"
    raw += "Ed,u-3\x0b,e@x\n"
    rows = rows_of_csv(raw.encode())
    assert [(r.user_id, r.invalid) for r in rows] == [
        ("u-1", None),
        ("u-2", None),
        ("", "empty user id"),
        ("u\ufffdx", "a control character in the user id"),
        ("u-3\ufffd", "a control character in the user id"),
    ]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"name,email\nAda,a@x\n", "user_id"),
        (b"", "user_id"),
        (b"user_id\n\xff\xfe\n", "body"),
        (b"user_id\n", "user_ids"),
        (("user_id\n" + "u\n" * (MAX_ROWS + 1)).encode(), "user_ids"),
    ],
)
def test_a_malformed_csv_file_is_refused_whole(raw: bytes, field: str) -> None:
    with pytest.raises(JobFileError) as refused:
        rows_of_csv(raw)
    assert refused.value.field == field


def test_json_rows_that_are_not_ids_are_invalid_the_rest_applied() -> None:
    rows = rows_of_json({"user_ids": ["u-1", "x" * 201, " ", "u-1"]})
    assert [r.invalid is None for r in rows] == [True, False, False, False]
    assert rows[3].invalid == "repeats row 1"
    assert len(rows[1].user_id) == 200
    with pytest.raises(JobFileError) as not_an_id:  # no id at all: the file is malformed
        rows_of_json({"user_ids": ["u-1", 7]})
    assert not_an_id.value.field == "user_ids[1]"
    with pytest.raises(JobFileError):
        rows_of_json({"user_ids": "u-1"})
    with pytest.raises(JobFileError):
        rows_of_json({"user_ids": [], "extra": 1})
    with pytest.raises(JobFileError):
        rows_of_json({"user_ids": ["u"] * (MAX_ROWS + 1)})


def test_rows_are_cut_in_chunks_numbered_from_one_and_their_ids_are_stable() -> None:
    rows = rows_of_json({"user_ids": [f"u-{n}" for n in range(CHUNK_ROWS * 2 + 1)]})
    assert [(first, len(chunk)) for first, chunk in chunks(rows)] == [
        (1, CHUNK_ROWS),
        (CHUNK_ROWS + 1, CHUNK_ROWS),
        (2 * CHUNK_ROWS + 1, 1),
    ]
    assert row_input_id(JOB, 3) == row_input_id(JOB, 3) != row_input_id(JOB, 4)


def chunk(first: int, rows: list[list[Any]], total: int, job_hash: str = "h") -> Any:
    payload = {
        "job_id": JOB,
        "job_hash": job_hash,
        "total": total,
        "first_row": first,
        "rows": rows,
    }
    return from_api(command("enrollment_job", payload, command_id=f"chunk-{first}-{job_hash}"))


async def test_a_job_applies_each_row_once_with_seats_and_waitlist_rules() -> None:
    h = Harness()
    await created(h, capacity=2, waitlist_capacity=1)
    first = await h.run(chunk(1, [["a", None], ["", "empty user id"], ["b", None]], 5))
    assert first.replies[0].reply.outcome is Outcome.CREATED
    assert first.replies[0].reply.body["status"] == "running"
    h.next_batch()
    again = await h.run(chunk(1, [["a", None], ["", "empty user id"], ["b", None]], 5))
    assert again.replies[0].reply.outcome is Outcome.UNCHANGED
    assert JOB_PROGRESS not in again.topics and ENROLLMENT_EVENTS not in again.topics
    last = await h.run(chunk(4, [["c", None], ["a", None]], 5))
    progress = next(r.value for r in last.records if r.topic == JOB_PROGRESS)
    assert [(r["row"], r["outcome"]) for r in progress["rows"]] == [
        (4, "waitlisted"),
        (5, "already_enrolled"),
    ]
    job = h.final(job_key(JOB))
    assert job["counts"] == {
        "enrolled": 2,
        "already_enrolled": 1,
        "waitlisted": 1,
        "refused": 0,
        "invalid": 1,
    }
    assert job["finished_at"] is not None and job["next_row"] == 6
    assert sum(job["counts"].values()) == job["total"]
    assert h.final(enrollment_key(COURSE, "c"))["status"] == "waitlisted"
    full = await h.run(chunk(1, [["d", None]], 1, job_hash="other"))
    assert full.replies[0].reply.refusal is not None  # the same key, another file


async def test_a_row_that_fails_is_refused_and_the_rest_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from course_management.streams import job_handlers

    real = job_handlers.enrol

    async def enrol(batch: Any, enroll: Any) -> Any:
        if enroll.user_id == "boom":
            raise RuntimeError("a bug")
        return await real(batch, enroll)

    monkeypatch.setattr(job_handlers, "enrol", enrol)
    h = Harness()
    await created(h)
    ran = await h.run(chunk(1, [["a", None], ["boom", None], ["b", None]], 3))
    progress = next(r.value for r in ran.records if r.topic == JOB_PROGRESS)
    assert [(r["row"], r["outcome"], r["problem_type"]) for r in progress["rows"]] == [
        (1, "enrolled", None),
        (2, "refused", "internal"),
        (3, "enrolled", None),
    ]
    assert h.final(job_key(JOB))["finished_at"] is not None

"""Bulk enrolment jobs (CONTRACT §5.2): the file a job is made of, its rows' outcomes and
its counts. Pure.

A job is a list of user ids in file order (JSON `{"user_ids": [...]}` or CSV with a
`user_id` column). A malformed file is refused whole, before any row is applied
(`JobFileError`); a bad row is only that row's problem: it is `invalid`, and the rest
are applied. Each row is applied by the course agent under exactly the rules of a single
enrolment (streams/job_handlers.py), in chunks of CHUNK_ROWS rows per command; the job's
record in the course's table remembers the next row to apply, so a chunk sent again (a
retried request, a redelivery after a crash) applies no row twice.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, TypedDict

from course_management.domain.commands import derived_id
from course_management.domain.enrollment import MAX_TEXT_LENGTH, EnrollmentDecision
from course_management.domain.outcomes import Outcome

MAX_ROWS = 10_000
CHUNK_ROWS = 500  # rows per command: one unit of the agent each (about 1 MB of events)
OUTCOMES = ("enrolled", "already_enrolled", "waitlisted", "refused", "invalid")


class JobFileError(ValueError):
    """The file cannot be a job (refused whole): `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class JobRow:
    user_id: str  # as given (shown: control characters replaced, cut at the length limit)
    invalid: str | None  # why the row cannot be applied (None: it is applied)


def _row(value: str) -> JobRow:
    if not value.strip():
        return JobRow(value, "empty user id")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return JobRow(_shown(value), "a control character in the user id")
    if len(value) > MAX_TEXT_LENGTH:
        return JobRow(_shown(value), f"a user id over {MAX_TEXT_LENGTH} characters")
    return JobRow(value, None)


def _shown(value: str) -> str:
    """An invalid id as a row shows it: no control character, at most the length limit."""
    clean = "".join("\ufffd" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in value)
    return clean[:MAX_TEXT_LENGTH]


def rows_of_json(body: dict[str, Any]) -> list[JobRow]:
    ids = body.get("user_ids")
    unknown = sorted(set(body) - {"user_ids"})
    if unknown:
        raise JobFileError(unknown[0], 'unknown field (the body is {"user_ids": [...]})')
    if not isinstance(ids, list):
        raise JobFileError("user_ids", "required: a list of user ids")
    for n, value in enumerate(ids):  # a value that is no id at all: the body is malformed
        if not isinstance(value, str):
            raise JobFileError(f"user_ids[{n}]", "must be a string (a user id)")
    return _checked([_row(v) for v in ids])


def rows_of_csv(raw: bytes) -> list[JobRow]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobFileError("body", f"not UTF-8 (byte {exc.start})") from None
    if "\x00" in text:
        raise JobFileError("body", "a NUL character: not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise JobFileError("user_id", "an empty file: the header row needs a user_id column")
        names = [name.strip() for name in header]
        if "user_id" not in names:
            raise JobFileError("user_id", "the header row has no user_id column")
        column = names.index("user_id")
        rows = []
        for line in reader:
            if not line:  # a blank line is no row
                continue
            rows.append(_row(line[column].strip(" ") if column < len(line) else ""))
            if len(rows) > MAX_ROWS:
                break
    except csv.Error as exc:
        raise JobFileError("body", f"not a CSV file: {exc}") from None
    return _checked(rows)


def _checked(rows: list[JobRow]) -> list[JobRow]:
    """The rows, a repeated user id `invalid` after its first row (each learner's row is
    applied once); or the file refused whole."""
    if not rows:
        raise JobFileError("user_ids", "no rows: a job enrols at least one user")
    if len(rows) > MAX_ROWS:
        raise JobFileError("user_ids", f"more than {MAX_ROWS} rows")
    first: dict[str, int] = {}
    checked = []
    for n, row in enumerate(rows, start=1):
        if row.invalid is None and row.user_id in first:
            row = JobRow(row.user_id, f"repeats row {first[row.user_id]}")
        elif row.invalid is None:
            first[row.user_id] = n
        checked.append(row)
    return checked


def row_input_id(job_id: str, row: int) -> str:
    """A row's input id: the same for the row however often it is sent (decision 58)."""
    return derived_id(job_id, f"row:{row}")


# What a chunk may stage, about: its rows' events carry each learner's view of every item
# and module, so a course with many items takes fewer rows per chunk (one chunk is one
# input of the agent, and an input's effects go into one unit: tables/units.py).
CHUNK_BYTES = 1024 * 1024


def rows_per_chunk(course: dict[str, Any]) -> int:
    """How many rows one command of a job on `course` carries."""
    modules = course.get("modules") or ()
    items = sum(len(m.get("items") or ()) for m in modules)
    per_row = 600 + 160 * items + 120 * len(modules)  # an event's bytes, generously
    return max(1, min(CHUNK_ROWS, CHUNK_BYTES // per_row))


def chunks(rows: list[JobRow], size: int = CHUNK_ROWS) -> list[tuple[int, list[JobRow]]]:
    """(first row number, rows) of each command, in file order (rows are numbered from 1)."""
    return [(n + 1, rows[n : n + size]) for n in range(0, len(rows), size)]


class JobRecord(TypedDict):
    """`course-state`: "#job:<job id>" -> this, on the course's partition."""

    id: str
    course_id: str
    creator: str
    total: int
    next_row: int  # the next row to apply (rows are numbered from 1)
    counts: dict[str, int]
    created_at: str
    finished_at: str | None
    payload_hash: str  # of the rows: a key used again with other rows is refused


def new_job(
    job_id: str, course_id: str, creator: str, total: int, created_at: str, payload_hash: str
) -> JobRecord:
    return {
        "id": job_id,
        "course_id": course_id,
        "creator": creator,
        "total": total,
        "next_row": 1,
        "counts": dict.fromkeys(OUTCOMES, 0),
        "created_at": created_at,
        "finished_at": None,
        "payload_hash": payload_hash,
    }


def outcome_of(decision: EnrollmentDecision) -> tuple[str, str | None]:
    """A row's outcome and problem type from its enrolment's decision."""
    if decision.refusal is not None:
        kind = decision.refusal.kind.value
        return ("invalid", kind) if kind == "validation" else ("refused", kind)
    if decision.outcome is Outcome.CREATED:
        view = decision.reply_enrollment or {}
        return ("waitlisted" if view.get("status") == "waitlisted" else "enrolled", None)
    return "already_enrolled", None


def job_view(job: JobRecord) -> dict[str, Any]:
    """The job as GET /api/v1/jobs/{jobId} answers it."""
    return {
        "id": job["id"],
        "course_id": job["course_id"],
        "status": "done" if job["finished_at"] else "running",
        "total": job["total"],
        "counts": dict(job["counts"]),
        "created_at": job["created_at"],
        "finished_at": job["finished_at"],
    }

"""Bulk enrolment jobs (CONTRACT §5.2): `POST .../enrollments/batch` starts one, `GET
/api/v1/jobs/{jobId}` and its `/rows` follow it.

The file is read and checked here, whole, before any row is sent (domain/jobs.py); the
rows go to the course agent in chunks on course-commands (streams/job_handlers.py), the
first answered before the 202, and the counts and outcomes are read from the mirror.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from course_management.api.http import (
    json_response,
    read_raw_body,
    require_principal,
    token_headers,
)
from course_management.api.json_body import parse_json_object
from course_management.api.openapi import Endpoint, Param
from course_management.api.pages import PAGE_PARAMS, decode_cursor, page_body, page_query
from course_management.api.ports import READS, WRITES
from course_management.api.problems import Problem, success_status_or_raise, validation_problem
from course_management.api.route_helpers import (
    COURSE_ID,
    course_id_param,
    existing_course,
    visible_course,
)
from course_management.domain.access import (
    may_read_every_course_enrollment,
    may_run_enrollment_jobs,
)
from course_management.domain.commands import CourseCommand
from course_management.domain.jobs import (
    MAX_ROWS,
    OUTCOMES,
    JobFileError,
    JobRow,
    chunks,
    rows_of_csv,
    rows_of_json,
    rows_per_chunk,
)

JOBS_NAMESPACE = uuid.UUID("0b8f6a52-2f0e-4d7e-9a55-1d1c5e0a7b31")


class JobFile(BaseModel):
    """A job as JSON (or `text/csv` whose header row has a `user_id` column)."""

    model_config = ConfigDict(extra="forbid")
    user_ids: Annotated[list[str], Field(min_length=1, max_length=MAX_ROWS)]


class JobCounts(BaseModel):
    enrolled: int
    already_enrolled: int
    waitlisted: int
    refused: int
    invalid: int


class Job(BaseModel):
    id: str
    course_id: str
    status: str = Field(description="running | done")
    total: int
    counts: JobCounts
    created_at: str
    finished_at: str | None


class JobRowOutcome(BaseModel):
    row: int = Field(description="The row's number in the file, from 1")
    user_id: str
    outcome: str = Field(description=" | ".join(OUTCOMES))
    problem_type: str | None


class JobRowPage(BaseModel):
    items: list[JobRowOutcome]
    next_cursor: str | None


JOB_ID = Param("jobId", "path", "The job's id (the `Location` of its 202)")


async def _rows(request: web.Request) -> list[JobRow]:
    """The file's rows, or the whole file refused (415, 413, 400, 422 naming the field)."""
    kind = request.content_type
    if kind not in ("application/json", "text/csv"):
        raise Problem.of(
            415, "unsupported-media-type", "the body must be application/json or text/csv"
        )
    raw = await read_raw_body(request)
    try:
        if kind == "text/csv":
            return rows_of_csv(raw)
        return rows_of_json(parse_json_object(raw))
    except JobFileError as exc:
        raise validation_problem([(exc.field, exc.message)]) from None


def _job_id(request: web.Request, user_id: str, course_id: str) -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return str(uuid.uuid4())
    if not (1 <= len(key) <= 200):
        raise Problem.of(400, "bad-idempotency-key", "Idempotency-Key must be 1..200 characters")
    return str(uuid.uuid5(JOBS_NAMESPACE, f"{user_id}\n{course_id}\n{key}"))


def _hash(rows: list[JobRow]) -> str:
    canonical = json.dumps([[r.user_id, r.invalid] for r in rows], ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def start_job(request: web.Request) -> web.StreamResponse:
    who = require_principal(request)
    course_id = course_id_param(request)
    actor = who.actor()
    if may_read_every_course_enrollment(actor):  # admins and services: any course
        course = await existing_course(request, course_id)
    else:
        course = await visible_course(request, course_id)
    if not may_run_enrollment_jobs(course, actor):
        raise Problem.of(
            403,
            "not-course-owner",
            "bulk enrolment is for the course's owner, a co-instructor, admins and services",
        )
    rows = await _rows(request)
    job_id, job_hash = _job_id(request, who.user_id, course_id), _hash(rows)
    now = datetime.now(UTC)
    commands = [
        CourseCommand(
            command_id=str(uuid.uuid4()),
            command_type="enrollment_job",
            course_id=course_id,
            occurred_at=now,
            actor=actor,
            payload={
                "job_id": job_id,
                "job_hash": job_hash,
                "total": len(rows),
                "first_row": first,
                "rows": [[r.user_id, r.invalid] for r in chunk],
            },
            payload_hash=job_hash,
            expected_version=None,
        )
        for first, chunk in chunks(rows, rows_per_chunk(course))
    ]
    reply = await request.app[WRITES].start_job(commands)
    success_status_or_raise(reply)
    headers = token_headers(reply, {"Location": f"/api/v1/jobs/{job_id}"})
    return json_response(reply.body, status=202, headers=headers)


async def _job(request: web.Request) -> dict[str, Any]:
    """The job, for its creator and admins (404 to everyone else: no one learns it exists)."""
    who = require_principal(request)
    job_id = request.match_info["jobId"]
    try:
        canonical = str(uuid.UUID(job_id))
    except ValueError:
        raise Problem.of(404, "job-not-found", f"no job {job_id}") from None
    job = await request.app[READS].read_job(canonical)
    if job is None or not (who.actor().is_admin or job["creator"] == who.user_id):
        raise Problem.of(404, "job-not-found", f"no job {job_id}")
    return job


async def get_job(request: web.Request) -> web.StreamResponse:
    job = await _job(request)
    body = {
        "id": job["id"],
        "course_id": job["course_id"],
        "status": "done" if job["finished_at"] else "running",
        "total": job["total"],
        "counts": {name: int(job["counts"].get(name, 0)) for name in OUTCOMES},
        "created_at": _stamp(job["created_at"]),
        "finished_at": _stamp(job["finished_at"]) if job["finished_at"] else None,
    }
    return json_response(body)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def list_job_rows(request: web.Request) -> web.StreamResponse:
    job = await _job(request)
    query = page_query(request)
    outcome = request.query.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise validation_problem([("outcome", f"one of {', '.join(OUTCOMES)}")])
    position = decode_cursor(query.cursor, "row")
    after = position["row"] if position else "0"
    if not (after.isascii() and after.isdigit()) or len(after) > 6:
        raise validation_problem([("cursor", "not a cursor from this list")])
    rows = await request.app[READS].list_job_rows(job["id"], outcome, int(after), query.limit)
    last = rows[query.limit - 1] if len(rows) > query.limit else None
    return json_response(page_body(rows, query.limit, {"row": str(last["row"])} if last else None))


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/courses/{courseId}/enrollments/batch",
        start_job,
        summary="Enrol many learners at once (owner, co-instructor, admin, service): JSON "
        '`{"user_ids": [...]}` or `text/csv` with a `user_id` column, at most 10,000 rows, '
        "applied in file order under the rules of a single enrolment",
        tag="enrollments",
        body=JobFile,
        body_also=("text/csv",),
        responses={202: ("The job, running; `Location` names it", Job)},
        response_headers={202: ("Location",)},
        errors=(400, 401, 403, 404, 413, 415, 422, 503),
        params=(
            COURSE_ID,
            Param(
                "Idempotency-Key",
                "header",
                "A repeat with the same key (and file) returns the same job, applying no "
                "row twice; the same key with another file is a 422",
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/jobs/{jobId}",
        get_job,
        summary="A bulk enrolment job: its status and counts (its creator, admins)",
        tag="enrollments",
        responses={200: ("The job", Job)},
        errors=(401, 404, 503),
        params=(JOB_ID,),
    ),
    Endpoint(
        "GET",
        "/api/v1/jobs/{jobId}/rows",
        list_job_rows,
        summary="A page of a job's rows with their outcomes, in row order",
        tag="enrollments",
        responses={200: ("A page of rows", JobRowPage)},
        errors=(401, 404, 422, 503),
        params=(
            JOB_ID,
            Param(
                "outcome",
                "query",
                "Only the rows of this outcome",
                schema={"type": "string", "enum": list(OUTCOMES)},
            ),
            *PAGE_PARAMS,
        ),
    ),
]

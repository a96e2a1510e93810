"""`JobProgress` on course-management-job-progress (schemas/job_progress.avsc): a bulk
enrolment job after a chunk of its rows was applied (domain/jobs.py), for the mirror."""

from __future__ import annotations

from typing import Any

from course_management.domain.jobs import JobRecord
from course_management.topology import JOB_PROGRESS, spec

TOPIC = JOB_PROGRESS
SUBJECT = spec(TOPIC).subject


def encode(job: JobRecord, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "job_id": job["id"],
        "course_id": job["course_id"],
        "creator": job["creator"],
        "total": job["total"],
        "next_row": job["next_row"],
        "counts": dict(job["counts"]),
        "created_at": job["created_at"],
        "finished_at": job["finished_at"],
        "rows": rows,
    }


def decode(value: dict[str, Any]) -> dict[str, Any]:
    missing = [n for n in ("job_id", "course_id", "next_row", "counts", "rows") if n not in value]
    if missing:
        raise ValueError(f"a job progress record without {', '.join(missing)}")
    return value

"""The PostgreSQL tables of the bulk enrolment jobs (migration 0010): written from the
job progress topic by the mirror sink (sinks/mirror.py), read by the job routes
(gateways/reads.py). Every write is guarded (a job's record by `next_row`, a row once),
so a replayed batch changes nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from course_management.infra.database import parse_ts

_UPSERT_JOB = """
INSERT INTO enrollment_jobs AS j
    (id, course_id, creator, total, next_row, counts, created_at, finished_at)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
ON CONFLICT (id) DO UPDATE SET
    next_row = EXCLUDED.next_row, counts = EXCLUDED.counts, finished_at = EXCLUDED.finished_at
WHERE j.next_row < EXCLUDED.next_row
"""

_INSERT_ROWS = """
INSERT INTO enrollment_job_rows (job_id, row_number, user_id, outcome, problem_type)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[])
ON CONFLICT DO NOTHING
"""


async def mirror_job_progress(pool: asyncpg.Pool, records: Sequence[dict[str, Any]]) -> int:
    """Apply job progress records: the rows first, then each job's newest counts."""
    rows = [(r["job_id"], row) for r in records for row in r["rows"]]
    newest: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["job_id"] not in newest or newest[r["job_id"]]["next_row"] < r["next_row"]:
            newest[r["job_id"]] = r
    async with pool.acquire() as conn, conn.transaction():
        if rows:
            await conn.execute(
                _INSERT_ROWS,
                [job for job, _ in rows],
                [row["row"] for _, row in rows],
                [row["user_id"] for _, row in rows],
                [row["outcome"] for _, row in rows],
                [row["problem_type"] for _, row in rows],
            )
        for r in newest.values():
            await conn.execute(
                _UPSERT_JOB,
                r["job_id"],
                r["course_id"],
                r["creator"],
                r["total"],
                r["next_row"],
                json.dumps(r["counts"]),
                parse_ts(r["created_at"]),
                parse_ts(r["finished_at"]) if r["finished_at"] else None,
            )
    return len(rows)


async def fetch_job(pool: asyncpg.Pool, job_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        "SELECT id, course_id, creator, total, counts::text AS counts, created_at, finished_at"
        " FROM enrollment_jobs WHERE id = $1",
        job_id,
    )
    if row is None:
        return None
    return {**dict(row), "counts": json.loads(row["counts"])}


async def list_job_rows(
    pool: asyncpg.Pool, job_id: str, outcome: str | None, after_row: int, limit: int
) -> list[dict[str, Any]]:
    """`limit + 1` rows of the job after `after_row`, in row order (only `outcome`'s)."""
    rows = await pool.fetch(
        "SELECT row_number, user_id, outcome, problem_type FROM enrollment_job_rows"
        " WHERE job_id = $1 AND ($2::text IS NULL OR outcome = $2) AND row_number > $3"
        " ORDER BY row_number LIMIT $4",
        job_id,
        outcome,
        after_row,
        limit + 1,
    )
    return [
        {
            "row": r["row_number"],
            "user_id": r["user_id"],
            "outcome": r["outcome"],
            "problem_type": r["problem_type"],
        }
        for r in rows
    ]

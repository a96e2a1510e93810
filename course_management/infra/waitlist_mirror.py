"""The PostgreSQL mirror of the waitlists (migration 0009): written from the waitlist
milestones by the mirror sink (sinks/mirror.py), read by the enrollment lists and reads
(gateways/reads.py).

A row keeps the offsets of the learner's last `waitlisted` and last `waitlist_left`
milestones; each write keeps the greater of what it holds and what it brings, so a
replayed batch, or one applied twice, changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from course_management.domain.events import LearnerMilestone

# A learner waits when they joined after they last left: in every query below as
# "(w.left_seq IS NULL OR w.left_seq < w.joined_seq)".

_UPSERT = """
INSERT INTO course_waitlist AS w
    (course_id, user_id, joined_seq, joined_at, left_seq, left_reason, left_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::bigint[],
    $6::text[], $7::timestamptz[])
ON CONFLICT (course_id, user_id) DO UPDATE SET
    joined_seq = GREATEST(w.joined_seq, EXCLUDED.joined_seq),
    joined_at = CASE WHEN EXCLUDED.joined_seq > w.joined_seq THEN EXCLUDED.joined_at
        ELSE w.joined_at END,
    left_seq = CASE WHEN EXCLUDED.left_seq > COALESCE(w.left_seq, -1) THEN EXCLUDED.left_seq
        ELSE w.left_seq END,
    left_reason = CASE WHEN EXCLUDED.left_seq > COALESCE(w.left_seq, -1)
        THEN EXCLUDED.left_reason ELSE w.left_reason END,
    left_at = CASE WHEN EXCLUDED.left_seq > COALESCE(w.left_seq, -1)
        THEN EXCLUDED.left_at ELSE w.left_at END
WHERE EXCLUDED.joined_seq > w.joined_seq OR EXCLUDED.left_seq > COALESCE(w.left_seq, -1)
RETURNING 1
"""


def queue_changes(
    milestones: Sequence[tuple[int, LearnerMilestone]],
) -> list[tuple[Any, ...]]:
    """The rows a batch of (offset, milestone) brings: per learner, their last join and
    last leave in the batch (other milestones are not the queue's)."""
    rows: dict[tuple[str, str], list[Any]] = {}
    for offset, m in milestones:
        if m["event_type"] not in ("waitlisted", "waitlist_left"):
            continue
        row = rows.setdefault((m["course_id"], m["user_id"]), [-1, None, None, None, None])
        if m["event_type"] == "waitlisted" and offset > row[0]:
            row[0], row[1] = offset, m["occurred_at"]
        elif m["event_type"] == "waitlist_left" and offset > (row[2] or -1):
            row[2], row[3], row[4] = offset, m["reason"], m["occurred_at"]
    return [(c, u, *row) for (c, u), row in rows.items()]


async def mirror_waitlist(
    pool: asyncpg.Pool, milestones: Sequence[tuple[int, LearnerMilestone]]
) -> int:
    rows = queue_changes(milestones)
    if not rows:
        return 0
    columns = list(zip(*rows, strict=True))
    found = await pool.fetch(_UPSERT, *[list(c) for c in columns])
    return len(found)


# `cancel_reason` is the reason of those taken off a queue (a rule failed), not of those
# who left it themselves ('cancelled') or were promoted; and only when they left the
# queue after their enrollment's last status change.

_CANCELLED = """
SELECT e.user_id, e.snapshot::text AS snapshot, w.left_reason AS cancel_reason
FROM enrollments e LEFT JOIN course_waitlist w
    ON w.course_id = e.course_id AND w.user_id = e.user_id
    AND w.left_reason NOT IN ('promoted', 'cancelled')
    AND w.left_at >= (SELECT max(t.at) FROM enrollment_transitions t
                      WHERE t.course_id = e.course_id AND t.user_id = e.user_id)
WHERE e.course_id = $1 AND e.status = 'cancelled'
    AND NOT EXISTS (SELECT 1 FROM course_waitlist q WHERE q.course_id = e.course_id
        AND q.user_id = e.user_id AND (q.left_seq IS NULL OR q.left_seq < q.joined_seq))
    AND ($2::text IS NULL OR e.user_id > $2) AND ($3::text IS NULL OR e.user_id = $3)
UNION ALL
SELECT w.user_id, NULL, w.left_reason
FROM course_waitlist w
WHERE w.course_id = $1 AND w.left_seq > w.joined_seq
    AND w.left_reason NOT IN ('promoted', 'cancelled')
    AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.course_id = w.course_id
        AND e.user_id = w.user_id)
    AND ($2::text IS NULL OR w.user_id > $2) AND ($3::text IS NULL OR w.user_id = $3)
ORDER BY user_id LIMIT $4
"""


async def list_cancelled(
    pool: asyncpg.Pool, course_id: str, after_user: str | None, limit: int, only_user: str | None
) -> list[dict[str, Any]]:
    """`limit + 1` cancelled enrollments of a course by user id, with `cancel_reason` for
    those a rule took off the queue (also those who waited and were never enrolled:
    `snapshot` None). Not those waiting again."""
    rows = await pool.fetch(_CANCELLED, course_id, after_user, only_user, limit + 1)
    return [
        {
            "user_id": r["user_id"],
            "snapshot": None if r["snapshot"] is None else json.loads(r["snapshot"]),
            "cancel_reason": r["cancel_reason"],
        }
        for r in rows
    ]


async def count_waiting(pool: asyncpg.Pool, course_id: str) -> int:
    """How many learners wait for a seat in the course (its `waitlist_count`)."""
    n: int = await pool.fetchval(
        "SELECT count(*) FROM course_waitlist w WHERE w.course_id = $1"
        " AND (w.left_seq IS NULL OR w.left_seq < w.joined_seq)",
        course_id,
    )
    return n


async def list_waiting(
    pool: asyncpg.Pool, course_id: str, after_seq: int | None, limit: int, only_user: str | None
) -> list[dict[str, Any]]:
    """`limit + 1` learners waiting, in queue order after `after_seq`, with their place
    (one count of those ahead of the page, then one by one)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        rows = await conn.fetch(
            "SELECT w.user_id, w.joined_seq, w.joined_at, e.snapshot::text AS snapshot"
            " FROM course_waitlist w LEFT JOIN enrollments e"
            " ON e.course_id = w.course_id AND e.user_id = w.user_id"
            " WHERE w.course_id = $1 AND (w.left_seq IS NULL OR w.left_seq < w.joined_seq)"
            " AND ($2::bigint IS NULL OR w.joined_seq > $2)"
            " AND ($4::text IS NULL OR w.user_id = $4)"
            " ORDER BY w.joined_seq LIMIT $3",
            course_id,
            after_seq,
            limit + 1,
            only_user,
        )
        ahead = 0
        if rows:
            ahead = await conn.fetchval(
                "SELECT count(*) FROM course_waitlist w WHERE w.course_id = $1"
                " AND w.joined_seq < $2 AND (w.left_seq IS NULL OR w.left_seq < w.joined_seq)",
                course_id,
                rows[0]["joined_seq"],
            )
    return [
        {
            "user_id": r["user_id"],
            "seq": int(r["joined_seq"]),
            "joined_at": r["joined_at"],
            "position": int(ahead) + n + 1,  # (one row when `only_user`)
            "snapshot": None if r["snapshot"] is None else json.loads(r["snapshot"]),
        }
        for n, r in enumerate(rows)
    ]

"""The PostgreSQL mirror of enrollments: their snapshots, their status changes with their
times, and the ratings list. Written by the postgres sink group (sinks/mirror.py), read
by gateways/reads.py. Every write is guarded (by version, or by event id), so a replayed
batch changes nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from course_management.infra.database import parse_ts
from course_management.messages.rating_entry import RatingEntry

# One statement for a whole batch (one row per enrollment: the batch's newest version).
E = TypeVar("E", bound=Mapping[str, Any])

_UPSERT_ENROLLMENTS = """
INSERT INTO enrollments AS e (course_id, user_id, version, status, enrolled_at, completed_items,
    total_items, percent, completed_at, last_activity_at, next_item_id, snapshot, last_event_id)
SELECT course_id, user_id, version, status, enrolled_at, completed_items, total_items, percent,
    completed_at, last_activity_at, next_item_id, snapshot::jsonb, last_event_id
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::int[],
    $7::int[], $8::float8[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[],
    $13::text[])
    AS t(course_id, user_id, version, status, enrolled_at, completed_items, total_items,
         percent, completed_at, last_activity_at, next_item_id, snapshot, last_event_id)
ON CONFLICT (course_id, user_id) DO UPDATE SET
    version = EXCLUDED.version, status = EXCLUDED.status, enrolled_at = EXCLUDED.enrolled_at,
    completed_items = EXCLUDED.completed_items, total_items = EXCLUDED.total_items,
    percent = EXCLUDED.percent, completed_at = EXCLUDED.completed_at,
    last_activity_at = EXCLUDED.last_activity_at, next_item_id = EXCLUDED.next_item_id,
    snapshot = EXCLUDED.snapshot, last_event_id = EXCLUDED.last_event_id
WHERE e.version < EXCLUDED.version
RETURNING 1
"""


def _maybe_ts(value: str | None) -> datetime | None:
    return parse_ts(value) if value else None


def newest_per_enrollment(events: Sequence[E]) -> list[E]:
    """One event per (course, user): the highest version (the others change nothing)."""
    newest: dict[tuple[str, str], E] = {}
    for event in events:
        key = (event["course_id"], event["user_id"])
        if key not in newest or newest[key]["version"] < event["version"]:
            newest[key] = event
    return list(newest.values())


async def mirror_enrollment_events(pool: asyncpg.Pool, events: Sequence[Mapping[str, Any]]) -> int:
    """Apply a batch of EnrollmentEvents to the mirror in one statement; replays and older
    versions change nothing. Returns how many rows changed."""
    rows = newest_per_enrollment(events)
    if not rows:
        return 0
    columns: list[list[Any]] = [[] for _ in range(13)]
    for event in rows:
        enrollment = event["enrollment"]
        progress = enrollment["progress"]
        values = (
            event["course_id"],
            event["user_id"],
            event["version"],
            enrollment["status"],
            parse_ts(enrollment["enrolled_at"]),
            progress["completed_items"],
            progress["total_items"],
            progress["percent"],
            _maybe_ts(progress["completed_at"]),
            _maybe_ts(progress["last_activity_at"]),
            progress["next_item_id"],
            json.dumps(enrollment),
            event["event_id"],
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    transitions = [
        (
            e["event_id"],
            e["course_id"],
            e["user_id"],
            e["version"],
            _STATUS_OF[e["event_type"]],
            e["occurred_at"],
        )
        for e in events
        if e["event_type"] in _STATUS_OF
    ]
    async with pool.acquire() as conn, conn.transaction():
        if transitions:
            await conn.executemany(_INSERT_TRANSITION, transitions)
        return len(await conn.fetch(_UPSERT_ENROLLMENTS, *columns))


_STATUS_OF = {
    "enrollment_created": "enrolled",
    "enrollment_cancelled": "cancelled",
    "course_completed": "completed",
}
_INSERT_TRANSITION = """
INSERT INTO enrollment_transitions (event_id, course_id, user_id, version, status, at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING
"""


async def enrollment_transitions(
    pool: asyncpg.Pool, course_id: str, user_id: str
) -> list[dict[str, Any]]:
    """An enrollment's status changes, oldest first."""
    rows = await pool.fetch(
        "SELECT status, at, version, event_id FROM enrollment_transitions"
        " WHERE course_id = $1 AND user_id = $2 ORDER BY version",
        course_id,
        user_id,
    )
    return [dict(r) for r in rows]


async def enrollment_version(pool: asyncpg.Pool, course_id: str, user_id: str) -> int | None:
    value = await pool.fetchval(
        "SELECT version FROM enrollments WHERE course_id = $1 AND user_id = $2",
        course_id,
        user_id,
    )
    return None if value is None else int(value)


async def fetch_enrollment(
    pool: asyncpg.Pool, course_id: str, user_id: str
) -> tuple[dict[str, Any], int] | None:
    """The mirrored snapshot of an enrollment and its version."""
    row = await pool.fetchrow(
        "SELECT snapshot, version FROM enrollments WHERE course_id = $1 AND user_id = $2",
        course_id,
        user_id,
    )
    return (json.loads(row["snapshot"]), int(row["version"])) if row else None


async def count_seats_taken(pool: asyncpg.Pool, course_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM enrollments WHERE course_id = $1 AND status <> 'cancelled'",
            course_id,
        )
    )


async def list_course_enrollments(
    pool: asyncpg.Pool,
    course_id: str,
    after_user: str | None,
    limit: int,
    only_user: str | None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Enrollments of a course by user id, `limit + 1` rows to see a next page: those of
    `status` (active or completed), or both when it is None."""
    rows = await pool.fetch(
        # Lists leave out the enrollments of deleted courses (whose point reads answer
        # 404 on every worker); cancelled ones are listed apart (infra/waitlist_mirror.py).
        "SELECT e.snapshot FROM enrollments e WHERE e.course_id = $1"
        " AND ($5::text IS NULL AND e.status <> 'cancelled' OR e.status = $5)"
        " AND NOT EXISTS (SELECT 1 FROM courses c WHERE c.id = e.course_id"
        " AND c.deleted_at IS NOT NULL)"
        " AND ($2::text IS NULL OR e.user_id > $2) AND ($3::text IS NULL OR e.user_id = $3)"
        " ORDER BY e.user_id LIMIT $4",
        course_id,
        after_user,
        only_user,
        limit + 1,
        status,
    )
    return [json.loads(r["snapshot"]) for r in rows]


async def list_user_enrollments(
    pool: asyncpg.Pool, user_id: str, after_course: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT e.snapshot FROM enrollments e WHERE e.user_id = $1 AND e.status <> 'cancelled'"
        " AND NOT EXISTS (SELECT 1 FROM courses c WHERE c.id = e.course_id"
        " AND c.deleted_at IS NOT NULL)"
        " AND ($2::text IS NULL OR e.course_id > $2) ORDER BY e.course_id LIMIT $3",
        user_id,
        after_course,
        limit + 1,
    )
    return [json.loads(r["snapshot"]) for r in rows]


_UPSERT_RATINGS = """
INSERT INTO course_ratings AS r (course_id, user_id, course_version, seq, stars, review, rated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::smallint[],
    $6::text[], $7::timestamptz[])
ON CONFLICT (course_id, user_id) DO UPDATE SET
    course_version = EXCLUDED.course_version, seq = EXCLUDED.seq, stars = EXCLUDED.stars,
    review = EXCLUDED.review, rated_at = EXCLUDED.rated_at
WHERE (r.course_version, r.seq) < (EXCLUDED.course_version, EXCLUDED.seq)
RETURNING 1
"""


async def mirror_ratings(pool: asyncpg.Pool, entries: Sequence[RatingEntry]) -> int:
    """A batch of rating entries (the newest per student); returns the rows changed."""
    newest: dict[tuple[str, str], RatingEntry] = {}
    for entry in entries:
        key = (entry.course_id, entry.user_id)
        if key not in newest or newest[key].order < entry.order:
            newest[key] = entry
    if not newest:
        return 0
    rows = list(newest.values())
    return len(
        await pool.fetch(
            _UPSERT_RATINGS,
            [r.course_id for r in rows],
            [r.user_id for r in rows],
            [r.course_version for r in rows],
            [r.seq for r in rows],
            [r.stars for r in rows],
            [r.review for r in rows],
            [parse_ts(r.rated_at) for r in rows],
        )
    )


async def list_ratings(
    pool: asyncpg.Pool, course_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """A course's ratings, newest first (`limit + 1` rows, to see a next page)."""
    rows = await pool.fetch(
        "SELECT user_id, stars, review, rated_at FROM course_ratings WHERE course_id = $1"
        " AND ($2::timestamptz IS NULL OR (rated_at, user_id) < ($2, $3))"
        " ORDER BY rated_at DESC, user_id DESC LIMIT $4",
        course_id,
        after[0] if after else None,
        after[1] if after else "",
        limit + 1,
    )
    return [dict(r) for r in rows]


async def rating_order(pool: asyncpg.Pool, course_id: str, user_id: str) -> tuple[int, int] | None:
    """(course version, seats seq) of the student's rating as the mirror holds it."""
    row = await pool.fetchrow(
        "SELECT course_version, seq FROM course_ratings WHERE course_id = $1 AND user_id = $2",
        course_id,
        user_id,
    )
    return None if row is None else (int(row["course_version"]), int(row["seq"]))


async def rating_totals(pool: asyncpg.Pool, course_id: str) -> tuple[int, int]:
    """(stars summed, count) of a course's ratings as the mirror holds them."""
    row = await pool.fetchrow(
        "SELECT coalesce(sum(stars), 0) AS total, count(*) AS n FROM course_ratings"
        " WHERE course_id = $1",
        course_id,
    )
    return int(row["total"]), int(row["n"])

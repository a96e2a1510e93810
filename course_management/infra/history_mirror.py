"""The PostgreSQL mirror of history (migration 0011, CONTRACT §5.3): written by the mirror
sink (sinks/mirror.py) from course-events, enrollment-events and learner-milestones, read
by the history routes (gateways/history.py) and `course-management history`.

`course_versions` keeps every version of a course as its event published it (the
snapshot's JSON, byte for byte what the sink received, decoded) and the authoring changes
from the version before, computed once when the version is mirrored (domain/history.py),
so that a page of history is one indexed query. `learner_history` keeps one row per
enrollment event and milestone (domain/learner_history.py). Both are keyed so that a
replay, or the same event republished at another offset, writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from course_management.domain.history import course_changes
from course_management.domain.learner_history import Row

_PREVIOUS = """
SELECT snapshot FROM course_versions
WHERE course_id = $1 AND version < $2 ORDER BY version DESC LIMIT 1
"""

_INSERT_VERSION = """
INSERT INTO course_versions (course_id, version, event_id, event_type, actor_id, occurred_at,
    request_id, snapshot, changes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
ON CONFLICT (course_id, version) DO NOTHING
"""


def snapshot_text(course: Mapping[str, Any] | None) -> str | None:
    """A version's snapshot as stored and served."""
    if course is None:
        return None
    return json.dumps(course, separators=(",", ":"), ensure_ascii=False)


VersionEvents = Sequence[tuple[Mapping[str, Any], str | None]]  # (course event, request id)


async def mirror_course_versions(pool: asyncpg.Pool, events: VersionEvents) -> int:
    """Each (course event, request id) as a version with its changes, in one transaction;
    returns how many were new."""
    async with pool.acquire() as conn, conn.transaction():
        return await write_course_versions(conn, events)


async def write_course_versions(conn: asyncpg.Connection, events: VersionEvents) -> int:
    """`mirror_course_versions` on a connection (in the caller's transaction). A course's
    events come in version order (one partition), so the version before is there."""
    written = 0
    for event, request_id in events:
        course = event.get("course")
        if event["event_type"] == "course_deleted":
            course, changes = None, []
        else:
            raw = await conn.fetchval(_PREVIOUS, event["course_id"], event["version"])
            changes = course_changes(json.loads(raw) if raw else None, course)
        status = await conn.execute(
            _INSERT_VERSION,
            event["course_id"],
            event["version"],
            event["event_id"],
            event["event_type"],
            event["actor_id"],
            event["occurred_at"],
            request_id,
            snapshot_text(course),
            json.dumps(changes),
        )
        written += status.endswith(" 1")
    return written


async def course_version(
    pool: asyncpg.Pool, course_id: str, version: int
) -> tuple[bool, str | None]:
    """(whether the version is mirrored, its snapshot: None for the one that deleted it)."""
    row = await pool.fetchrow(
        "SELECT snapshot FROM course_versions WHERE course_id = $1 AND version = $2",
        course_id,
        version,
    )
    return (False, None) if row is None else (True, row["snapshot"])


async def latest_version(pool: asyncpg.Pool, course_id: str) -> int | None:
    value: int | None = await pool.fetchval(
        "SELECT max(version) FROM course_versions WHERE course_id = $1", course_id
    )
    return value


async def course_history(
    pool: asyncpg.Pool, course_id: str, before: int | None, limit: int
) -> list[dict[str, Any]]:
    """A page of versions, newest first, below `before` (None: from the newest)."""
    rows = await pool.fetch(
        "SELECT version, event_type, actor_id, occurred_at, request_id, changes::text AS changes"
        " FROM course_versions WHERE course_id = $1 AND version < $2"
        " ORDER BY version DESC LIMIT $3",
        course_id,
        before if before is not None else 2**31 - 1,
        limit,
    )
    return [dict(row) for row in rows]


_INSERT_ROWS = """
INSERT INTO learner_history (event_id, course_id, user_id, occurred_at, rank, source_offset,
    version, event_type, status, item_id, item_status, score, module_id, reason, request_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::smallint[],
    $6::bigint[], $7::integer[], $8::text[], $9::text[], $10::text[], $11::text[],
    $12::float8[], $13::text[], $14::text[], $15::text[])
ON CONFLICT (event_id) DO NOTHING
"""

_COLUMNS = (
    "event_id", "course_id", "user_id", "occurred_at", "rank", "source_offset", "version",
    "event_type", "status", "item_id", "item_status", "score", "module_id", "reason",
    "request_id",
)  # fmt: skip


async def mirror_learner_history(
    pool: asyncpg.Pool | asyncpg.Connection, rows: Sequence[Row]
) -> int:
    """Rows of domain/learner_history.py with `source_offset`, `version` and `request_id`
    set; returns how many were new."""
    if not rows:
        return 0
    columns = [[row[name] for row in rows] for name in _COLUMNS]
    status = await pool.execute(_INSERT_ROWS, *columns)
    return int(status.rsplit(" ", 1)[-1])


Position = tuple[int, int, int]  # enrollment version, rank, source offset


async def learner_history(
    pool: asyncpg.Pool, course_id: str, user_id: str, after: Position | None, limit: int
) -> list[dict[str, Any]]:
    """A page of a learner's rows, oldest first, after `after` (None: from the first)."""
    query = (
        "SELECT version, rank, source_offset, occurred_at, event_type, status, item_id,"
        " item_status, score, module_id, reason, request_id FROM learner_history"
        " WHERE course_id = $1 AND user_id = $2"
    )
    args: list[Any] = [course_id, user_id]
    if after is not None:
        query += " AND (version, rank, source_offset) > ($3, $4, $5)"
        args += list(after)
    query += f" ORDER BY version, rank, source_offset LIMIT ${len(args) + 1}"
    rows = await pool.fetch(query, *args, limit)
    return [dict(row) for row in rows]


async def learner_version(pool: asyncpg.Pool, course_id: str, user_id: str) -> int | None:
    """The newest enrollment version in the learner's history (for Consistency-Tokens)."""
    value: int | None = await pool.fetchval(
        "SELECT max(version) FROM learner_history WHERE course_id = $1 AND user_id = $2",
        course_id,
        user_id,
    )
    return value

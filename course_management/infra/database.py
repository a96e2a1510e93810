"""PostgreSQL: migrations (yoyo), the pool, and the course mirror (asyncpg). The enrollment
mirror is infra/enrollment_mirror.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from yoyo import get_backend, read_migrations

from course_management.domain.records import CourseRecord

MIGRATIONS = Path(__file__).parent / "migrations"

# PostgreSQL cannot be reached, is shutting down or is starting up: worth waiting for
# (writers) or answering 503 (readers); every other database error is a bug.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,  # refused, dropped, closed mid-query
    asyncpg.AdminShutdownError,  # the server is stopping
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,  # the server is starting or recovering
)


def migrate(database_url: str) -> int:
    """Apply the pending migrations; returns how many were applied. Idempotent."""
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
        "postgres://", "postgresql+psycopg://", 1
    )
    backend = get_backend(url)
    migrations = read_migrations(str(MIGRATIONS))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)


async def connect_pool(database_url: str) -> asyncpg.Pool:
    """A pool that connects on first use (no connection at all while the server is down)."""
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=8, command_timeout=30)
    assert pool is not None
    return pool


class Database:
    """The worker's connection pool, opened at start (it needs the event loop).

    The pool opens its connections when they are first needed (`min_size=0`), so a worker
    starts while PostgreSQL is down: it reports not ready until the server answers, and
    the sinks wait for it as they do during any outage. (Before, a worker restarted during
    a PostgreSQL outage exited with a traceback: found by the chaos run.)
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self._pool = await connect_pool(self._url)

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database pool has not been opened")
        return self._pool

    async def probe(self) -> None:
        """Readiness: the server answers a query."""
        await self.pool.fetchval("SELECT 1")


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


_UPSERT_COURSE = """
INSERT INTO courses AS c (id, version, title, description, category, tags, level, language,
    status, instructor_id, instructor_name, snapshot, created_at, updated_at, deleted_at,
    last_event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, NULL, $15)
ON CONFLICT (id) DO UPDATE SET
    version = EXCLUDED.version, title = EXCLUDED.title, description = EXCLUDED.description,
    category = EXCLUDED.category, tags = EXCLUDED.tags, level = EXCLUDED.level,
    language = EXCLUDED.language, status = EXCLUDED.status,
    instructor_id = EXCLUDED.instructor_id, instructor_name = EXCLUDED.instructor_name,
    snapshot = EXCLUDED.snapshot, updated_at = EXCLUDED.updated_at, deleted_at = NULL,
    last_event_id = EXCLUDED.last_event_id
WHERE c.version < EXCLUDED.version
"""

_MARK_DELETED = """
UPDATE courses SET deleted_at = $3, version = $2, last_event_id = $4
WHERE id = $1 AND version < $2
"""


async def mirror_course_event(pool: asyncpg.Pool, event: Mapping[str, Any]) -> bool:
    """Apply one CourseEvent to the mirror; a replayed or older version changes nothing.

    Returns True when a row changed.
    """
    course = event.get("course")
    async with pool.acquire() as conn, conn.transaction():
        if event["event_type"] == "course_deleted" or course is None:
            status = await conn.execute(
                _MARK_DELETED,
                event["course_id"],
                event["version"],
                event["occurred_at"],
                event["event_id"],
            )
        else:
            status = await conn.execute(
                _UPSERT_COURSE,
                course["id"],
                course["version"],
                course["title"],
                course["description"],
                course["category"],
                course["tags"],
                course["level"],
                course["language"],
                course["status"],
                course["instructor"]["id"],
                course["instructor"]["name"],
                json.dumps(course),
                parse_ts(course["created_at"]),
                parse_ts(course["updated_at"]),
                event["event_id"],
            )
            if not status.endswith(" 0"):
                await _replace_structure(conn, course)
    return not status.endswith(" 0")


async def _replace_structure(conn: asyncpg.Connection, course: dict[str, Any]) -> None:
    """The course's modules and items as of this version (the course row was just written)."""
    await conn.execute("DELETE FROM course_modules WHERE course_id = $1", course["id"])
    await conn.executemany(
        "INSERT INTO course_modules (id, course_id, title, position) VALUES ($1, $2, $3, $4)",
        [(m["id"], course["id"], m["title"], m["position"]) for m in course["modules"]],
    )
    await conn.executemany(
        "INSERT INTO course_items (id, course_id, module_id, type, title, position, content_key,"
        " duration_seconds, max_score, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [
            (
                i["id"],
                course["id"],
                m["id"],
                i["type"],
                i["title"],
                i["position"],
                i["content_key"],
                i["duration_seconds"],
                i["max_score"],
                parse_ts(i["due_at"]) if i["due_at"] else None,
            )
            for m in course["modules"]
            for i in m["items"]
        ],
    )


async def course_version(pool: asyncpg.Pool, course_id: str) -> int | None:
    """The mirror's version of a course (None: not there yet)."""
    value = await pool.fetchval("SELECT version FROM courses WHERE id = $1", course_id)
    return None if value is None else int(value)


async def fetch_course_state(pool: asyncpg.Pool, course_id: str) -> CourseRecord | None:
    """The mirror's state of a course, `{"course", "deleted"}` (None when unknown)."""
    row = await pool.fetchrow(
        "SELECT snapshot, version, deleted_at FROM courses WHERE id = $1", course_id
    )
    if row is None:
        return None
    course = {**json.loads(row["snapshot"]), "version": row["version"]}
    return {"course": course, "deleted": row["deleted_at"] is not None}

"""History and time travel (CONTRACT §5.3), read from the mirror (infra/history_mirror.py):
a course's versions and their changes, a learner's record change by change.

The mirror is fed by the sink, so it may be behind the agent's table: a version the
table has reached but the mirror has not yet is waited for (up to `wait_s`, then
Unavailable `not-yet-consistent`), and so is the version or enrollment a request's
Consistency-Token names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from course_management.api.ports import Unavailable
from course_management.domain.consistency import NONE, Marks
from course_management.infra import history_mirror
from course_management.infra.database import Database
from course_management.infra.history_mirror import Position

T = TypeVar("T")


class HistoryReads:
    """api.ports.History over the mirror."""

    def __init__(self, mirror: Database, wait_s: float = 3.0) -> None:
        self._mirror = mirror
        self._wait_s = wait_s

    async def _until(self, read: Callable[[], Awaitable[T]], ok: Callable[[T], bool]) -> T:
        deadline = time.monotonic() + self._wait_s
        pause = 0.01
        while True:
            value = await read()
            if ok(value):
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable(
                    "not-yet-consistent",
                    "the history has not caught up with the course yet; retry shortly",
                )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.2)

    async def course_version(self, course_id: str, version: int) -> str | None:
        """The snapshot of a version the course has reached (None: the version that
        deleted it)."""
        pool = self._mirror.pool
        _, snapshot = await self._until(
            lambda: history_mirror.course_version(pool, course_id, version), lambda v: v[0]
        )
        return snapshot

    async def course_history(
        self,
        course_id: str,
        before: int | None,
        limit: int,
        since: Marks = NONE,
        reached: int = 0,
    ) -> list[dict[str, Any]]:
        pool = self._mirror.pool
        wanted = max(since.course_version(course_id), reached)

        def page() -> Awaitable[list[dict[str, Any]]]:
            return history_mirror.course_history(pool, course_id, before, limit + 1)

        if before is None and wanted:  # the first page starts at the newest version
            return await self._until(page, lambda rows: bool(rows) and rows[0]["version"] >= wanted)
        if wanted:
            await self._until(
                lambda: history_mirror.latest_version(pool, course_id),
                lambda v: v is not None and v >= wanted,
            )
        return await page()

    async def learner_history(
        self,
        course_id: str,
        user_id: str,
        after: Position | None,
        limit: int,
        since: Marks = NONE,
        exists: bool = False,
    ) -> list[dict[str, Any]]:
        pool = self._mirror.pool
        wanted = since.enrollment_version(course_id, user_id)
        if wanted:
            await self._until(
                lambda: history_mirror.learner_version(pool, course_id, user_id),
                lambda v: v is not None and v >= wanted,
            )

        def page() -> Awaitable[list[dict[str, Any]]]:
            return history_mirror.learner_history(pool, course_id, user_id, after, limit + 1)

        if exists and after is None:  # the table has the learner: so will the mirror
            return await self._until(page, bool)
        return await page()

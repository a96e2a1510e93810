"""The reads that enrolment management adds (CONTRACT §5.2), all from the mirror: the
learners waiting, in queue order, and the cancelled enrollments with the `cancel_reason`
of those taken off a queue (infra/waitlist_mirror.py, drawn against the course as it is
now); the bulk enrolment jobs and their rows (infra/job_mirror.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from course_management.domain.progress import current_view, progress_of
from course_management.domain.records import Course, CourseRecord, course_of
from course_management.domain.times import rfc3339
from course_management.infra import job_mirror, waitlist_mirror
from course_management.infra.database import Database

ReadState = Callable[[str], Awaitable[CourseRecord | None]]


def _view(
    course_id: str,
    user_id: str,
    snapshot: dict[str, Any] | None,
    course: Course,
    now: datetime,
    since: str,
) -> dict[str, Any]:
    """A learner's view from their mirrored snapshot, or, never enrolled, an empty one."""
    if snapshot is not None:
        return current_view(snapshot, course, now)
    return {
        "course_id": course_id,
        "user_id": user_id,
        "status": "cancelled",
        "enrolled_at": None,
        "progress": progress_of(course, {}, None, since, now),
    }


class QueueLists:
    def __init__(self, mirror: Database, read_state: ReadState, wait_s: float) -> None:
        self._mirror = mirror
        self._read_state = read_state
        self._wait_s = wait_s

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """The job; one not mirrored yet (just answered 202) is waited for, up to wait_s."""
        deadline = time.monotonic() + self._wait_s
        while True:
            found = await job_mirror.fetch_job(self._mirror.pool, job_id)
            if found is not None or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(0.05)

    async def job_rows(
        self, job_id: str, outcome: str | None, after_row: int, limit: int
    ) -> list[dict[str, Any]]:
        return await job_mirror.list_job_rows(self._mirror.pool, job_id, outcome, after_row, limit)

    async def _course(self, course_id: str) -> Course | None:
        return course_of(await self._read_state(course_id))

    async def waiting(
        self, course_id: str, after_seq: int | None, limit: int, only_user: str | None
    ) -> list[tuple[int, dict[str, Any]]]:
        course = await self._course(course_id)
        if course is None:
            return []
        rows = await waitlist_mirror.list_waiting(
            self._mirror.pool, course_id, after_seq, limit, only_user
        )
        now = datetime.now(UTC)
        page: list[tuple[int, dict[str, Any]]] = []
        for row in rows:
            joined = rfc3339(row["joined_at"])
            view = _view(course_id, row["user_id"], row["snapshot"], course, now, joined)
            view.update(status="waitlisted", waitlist_position=row["position"])
            page.append((row["seq"], view))
        return page

    async def cancelled(
        self, course_id: str, after_user: str | None, limit: int, only_user: str | None
    ) -> list[dict[str, Any]]:
        course = await self._course(course_id)
        if course is None:
            return []
        rows = await waitlist_mirror.list_cancelled(
            self._mirror.pool, course_id, after_user, limit, only_user
        )
        now = datetime.now(UTC)
        views = []
        for row in rows:
            view = _view(course_id, row["user_id"], row["snapshot"], course, now, rfc3339(now))
            if row["cancel_reason"]:
                view["cancel_reason"] = row["cancel_reason"]
            views.append(view)
        return views

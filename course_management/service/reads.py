"""The API's reads (api.ports.Reads): Redis, then the local table, then the mirror.

The agent puts every change into Redis before it answers, so a reader never sees an
older course than the one a write returned, whichever worker it asks. On a cache miss a
worker reads its own table when it owns the course's partition, else the PostgreSQL
mirror (decision 8). Enrollment lists come from the mirror, with progress recomputed
against each course as it is now; catalog pages from catalog/search.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from course_management.api.ports import Unavailable
from course_management.catalog.query import CatalogQuery
from course_management.catalog.search import UNAVAILABLE as CATALOG_UNAVAILABLE
from course_management.catalog.search import CatalogSearch
from course_management.domain.enrollment import current_view, public_view
from course_management.infra import database
from course_management.infra.cache import CourseCache, ReadBypass
from course_management.infra.database import Database
from course_management.infra.metrics import CACHE_READS
from course_management.tables.courses import course_of
from course_management.tables.enrollments import enrollment_key, seats_key
from course_management.tables.records import CourseRecord


class ReadService:
    def __init__(
        self,
        courses: Any,
        enrollments: Any,
        is_local: Callable[[str], bool],
        cache: CourseCache,
        bypass: ReadBypass,
        mirror: Database,
        catalog: CatalogSearch,
    ) -> None:
        self._courses = courses  # the Faust tables (their local partitions)
        self._enrollments = enrollments
        self._is_local = is_local  # does this worker own the course's partition?
        self._cache = cache
        self._bypass = bypass
        self._mirror = mirror
        self._catalog = catalog

    async def read_course_state(self, course_id: str) -> CourseRecord | None:
        """Redis first; on a miss the table when its partition is here, else the mirror."""
        cached = await self._bypass.call(lambda: self._cache.get(course_id))
        if cached is not None:
            CACHE_READS.labels("hit").inc()
            return await self._with_enrollment_count(course_id, cached)
        state: CourseRecord | None
        if self._is_local(course_id):
            CACHE_READS.labels("miss_table").inc()
            record: CourseRecord | None = self._courses.get(course_id)
            state = (
                {"course": record.get("course"), "deleted": bool(record.get("deleted"))}
                if record
                else None
            )
        else:
            CACHE_READS.labels("miss_mirror").inc()
            state = await database.fetch_course_state(self._mirror.pool, course_id)
        if state is not None and (course := state.get("course")) is not None:
            deleted = bool(state.get("deleted"))
            await self._bypass.call(lambda: self._cache.put(course, deleted=deleted))
        return await self._with_enrollment_count(course_id, state)

    async def _with_enrollment_count(
        self, course_id: str, state: CourseRecord | None
    ) -> CourseRecord | None:
        """Seats taken change without a course version: merged in at read time."""
        course = state.get("course") if state is not None else None
        if state is None or course is None:
            return state
        count = await self._bypass.call(lambda: self._cache.enrollment_count(course_id))
        if count is None:
            if self._is_local(course_id):
                seats = self._enrollments.get(seats_key(course_id)) or {}
                count = seats.get("count", 0)
            else:
                count = await database.count_seats_taken(self._mirror.pool, course_id)
            # NX: a count the agent set meanwhile is newer than the one read here.
            filled = count
            await self._bypass.call(lambda: self._cache.fill_enrollment_count(course_id, filled))
        return {**state, "course": {**course, "enrollment_count": count}}

    async def read_enrollment(self, course_id: str, user_id: str) -> dict[str, Any] | None:
        """The Enrollment with progress: from the table when local, else the mirror."""
        if self._is_local(course_id):
            record = self._enrollments.get(enrollment_key(course_id, user_id))
            course = course_of(self._courses.get(course_id))
            if record is None or course is None:
                return None
            return public_view(record, course)
        snapshot = await database.fetch_enrollment(self._mirror.pool, course_id, user_id)
        return (await self._current([snapshot]))[0] if snapshot else None

    async def list_course_enrollments(
        self, course_id: str, after_user: str | None, limit: int, only_user: str | None
    ) -> list[dict[str, Any]]:
        rows = await database.list_course_enrollments(
            self._mirror.pool, course_id, after_user, limit, only_user
        )
        return await self._current(rows)

    async def list_user_enrollments(
        self, user_id: str, after_course: str | None, limit: int
    ) -> list[dict[str, Any]]:
        rows = await database.list_user_enrollments(self._mirror.pool, user_id, after_course, limit)
        return await self._current(rows)

    async def search_catalog(self, query: CatalogQuery) -> dict[str, Any]:
        try:
            return await self._catalog.search(query)
        except CATALOG_UNAVAILABLE as exc:
            raise Unavailable("search-unavailable", "the catalog cannot be searched now") from exc

    async def _current(self, snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Mirrored enrollments with progress recomputed against each course as it is now."""
        courses: dict[str, dict[str, Any] | None] = {}
        for course_id in {s["course_id"] for s in snapshots}:
            state = await self.read_course_state(course_id)
            courses[course_id] = state.get("course") if state else None
        return [current_view(s, courses[s["course_id"]]) for s in snapshots]

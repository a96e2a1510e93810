"""The API's reads (api.ports.Reads): Redis, then the local table, then the mirror.

The agent puts every change of a course and of an enrollment into Redis before it
answers, so a point read on any worker never sees older than a write that any worker has
answered. On a cache miss a worker reads its own table when it owns the course's
partition, else the PostgreSQL mirror (decision 8). Enrollment lists and the ratings list
come from the mirror (progress recomputed against each course as it is now), catalog
pages from catalog/search.py.

A read given a consistency token (`since`, domain/consistency.py) answers only from a
store that holds the versions the token names: a source that does not is passed over or
waited for, up to `wait_s`; then the read is Unavailable (503, Retry-After), never stale.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from course_management.api.ports import EnrollmentView, Unavailable
from course_management.catalog.query import CatalogQuery, catalog_version
from course_management.catalog.search import UNAVAILABLE as CATALOG_UNAVAILABLE
from course_management.catalog.search import CatalogSearch
from course_management.domain.consistency import NONE, Marks
from course_management.domain.enrollment import EMPTY_SEATS
from course_management.domain.progress import current_view, public_view
from course_management.domain.ratings import as_read
from course_management.domain.records import (
    CourseRecord,
    EnrollmentRecord,
    SeatsRecord,
    course_of,
)
from course_management.gateways.queue_lists import QueueLists
from course_management.infra import database, enrollment_mirror, waitlist_mirror
from course_management.infra.cache import CourseCache, CourseEntry, ReadBypass
from course_management.infra.database import Database
from course_management.infra.metrics import CACHE_READS
from course_management.infra.rate_limit import Charge
from course_management.tables.keys import enrollment_key, seats_key

T = TypeVar("T")


def _course_reaches(state: CourseRecord | None, version: int) -> bool:
    """A deleted course is past every version (nothing follows a delete)."""
    if version == 0:
        return True
    if state is None:
        return False
    course = state.get("course")
    return bool(state.get("deleted")) or (course is not None and course["version"] >= version)


def _entry_reaches(entry: CourseEntry, since: Marks) -> bool:
    """A cached entry answers a read with a token when it holds the token's course
    version and, for a token of this course's catalog, its seats too."""
    if entry.deleted:
        return True
    if entry.version < since.course_version(entry.course_id):
        return False
    mark = since.catalog_version()
    return (
        mark is None
        or mark[0] != entry.course_id
        or (catalog_version(entry.version, entry.seq) >= mark[1])
    )


def _over_budget(charge: Charge | None) -> bool:
    return charge is not None and charge.decision is not None and not charge.decision.allowed


def _course(entry: CourseEntry) -> dict[str, Any]:
    course = entry.state()["course"]
    assert course is not None
    return course


def _now() -> datetime:
    """The moment a read draws a learner's path at (time locks open by the clock)."""
    return datetime.now(UTC)


def _view(view: dict[str, Any]) -> EnrollmentView:
    return EnrollmentView(str(view["status"]), orjson.dumps(view))


class ReadGateway:
    """api.ports.Reads: Redis, then the local table or the mirror; catalog pages."""

    def __init__(
        self,
        state: Any,
        is_local: Callable[[str], bool],
        cache: CourseCache,
        bypass: ReadBypass,
        mirror: Database,
        catalog: CatalogSearch,
        wait_s: float = 3.0,
    ) -> None:
        self._state = state  # the course-state table (its local partitions)
        self._is_local = is_local  # does this worker own the course's partition?
        self._cache = cache
        self._bypass = bypass
        self._mirror = mirror
        self._catalog = catalog
        self._wait_s = wait_s  # how long a read with a token waits for its store
        self._lists = QueueLists(mirror, self.read_course_state, wait_s)

    async def _until(
        self, read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str
    ) -> T:
        """`read()` again until `ok` of it, for at most `wait_s`; then Unavailable."""
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
                    f"{what} has not applied the write of the Consistency-Token yet; retry shortly",
                )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.2)

    # -- courses ---------------------------------------------------------------------

    async def read_course(
        self,
        course_id: str,
        since: Marks = NONE,
        charge: Charge | None = None,
        view: str = "body",
    ) -> CourseEntry | None:
        """The course as a read answers it (None if unknown): Redis first, in one script
        that also spends `charge` and fetches the one body `view` names (infra.cache); on a
        miss the table when its partition is here, else the mirror (both bodies). Over
        budget: None (the charge says so; nothing more is read)."""
        entry = await self._bypass.call(
            lambda: self._cache.spend_and_get_course(course_id, charge, view)
        )
        if _over_budget(charge):
            return None
        if entry is not None and _entry_reaches(entry, since):
            CACHE_READS.labels("hit").inc()
            return entry
        return await self._course_from_store(course_id, since)

    async def read_course_state(self, course_id: str, since: Marks = NONE) -> CourseRecord | None:
        """`{"course", "deleted"}` (seats taken included), as `read_course` finds it."""
        entry = await self.read_course(course_id, since)
        return entry.state() if entry is not None else None

    async def _course_from_store(self, course_id: str, since: Marks) -> CourseEntry | None:
        need = since.course_version(course_id)
        state: CourseRecord | None
        local = self._is_local(course_id)
        if local:
            CACHE_READS.labels("miss_table").inc()
            state = await self._until(
                self._table_state(course_id), lambda s: _course_reaches(s, need), "the table"
            )
        else:
            CACHE_READS.labels("miss_mirror").inc()
            state = await self._until(
                lambda: database.fetch_course_state(self._mirror.pool, course_id),
                lambda s: _course_reaches(s, need),
                "the mirror",
            )
        course = state.get("course") if state is not None else None
        if state is None or course is None:
            return None
        seats: SeatsRecord
        if local:  # the table's seats and rating are exact
            seats = self._state.get(seats_key(course_id)) or EMPTY_SEATS
        else:  # the mirror's, once it has the token's enrollment
            if since.enrollment and since.enrollment[0] == course_id:
                await self._mirror_enrollment_reaches(since)
            if since.rating and since.rating[0] == course_id:
                await self._mirror_rating_reaches(since.rating)
            count = await enrollment_mirror.count_seats_taken(self._mirror.pool, course_id)
            total, rated = await enrollment_mirror.rating_totals(self._mirror.pool, course_id)
            # seq 0: not known here, so any entry of the agent's is newer
            waiting = await waitlist_mirror.count_waiting(self._mirror.pool, course_id)
            seats = {
                "count": count,
                "seq": 0,
                "rating_sum": total,
                "rating_count": rated,
                "waiting": waiting,
            }
        shown = as_read(course, state, seats)
        entry = CourseEntry.of(shown, deleted=bool(state.get("deleted")), seq=int(seats["seq"]))
        # Only if absent: an entry the agent put there meanwhile is newer than this one.
        await self._bypass.call(lambda: self._cache.fill_course(entry))
        return entry

    def _table_state(self, course_id: str) -> Callable[[], Awaitable[CourseRecord | None]]:
        async def read() -> CourseRecord | None:
            record: CourseRecord | None = self._state.get(course_id)
            return record or None

        return read

    # -- enrollments -----------------------------------------------------------------

    async def read_enrollment(
        self, course_id: str, user_id: str, since: Marks = NONE, charge: Charge | None = None
    ) -> tuple[CourseEntry | None, EnrollmentView | None]:
        """The course (None if unknown or over budget) and the learner's enrollment with
        progress, encoded (None: never enrolled, or the course is gone): Redis in one
        script that also spends `charge`; else the table when local, else the mirror."""
        course, hit = await self._bypass.call(
            lambda: self._cache.spend_and_get_enrollment(course_id, user_id, charge)
        ) or (None, None)
        if _over_budget(charge):
            return None, None
        if course is None or not _entry_reaches(course, since):
            course = await self.read_course(course_id, since)
        if course is None or course.deleted:
            return course, None  # a deleted course's enrollments are gone on every worker
        need = since.enrollment_version(course_id, user_id)
        if hit is not None and hit.version >= need:
            CACHE_READS.labels("hit").inc()
            if hit.view is not None and hit.course_version == course.version:
                return course, EnrollmentView(hit.status, hit.view)
            if hit.record is not None:  # another course version, or a time lock opened
                return course, _view(public_view(hit.record, _course(course), _now()))
        return course, await self._enrollment_from_store(course, user_id, need)

    async def _enrollment_from_store(
        self, entry: CourseEntry, user_id: str, need: int
    ) -> EnrollmentView | None:
        course_id = entry.course_id
        course = _course(await self._with_body(entry))
        if self._is_local(course_id):

            async def from_table() -> EnrollmentRecord | None:
                record: EnrollmentRecord | None = self._state.get(
                    enrollment_key(course_id, user_id)
                )
                return record

            record = await self._until(
                from_table, lambda r: need == 0 or (r or {}).get("version", 0) >= need, "the table"
            )
            return _view(public_view(record, course, _now())) if record is not None else None
        found = await self._until(
            lambda: enrollment_mirror.fetch_enrollment(self._mirror.pool, course_id, user_id),
            lambda row: need == 0 or (row is not None and row[1] >= need),
            "the mirror",
        )
        return _view(current_view(found[0], course, _now())) if found else None

    async def _with_body(self, entry: CourseEntry) -> CourseEntry:
        """The entry with its body (an enrollment read's script leaves it out)."""
        if entry.body is not None:
            return entry
        return await self.read_course(entry.course_id) or entry

    async def _mirror_enrollment_reaches(self, since: Marks) -> None:
        if since.enrollment is None:
            return
        course_id, user_id, version = since.enrollment
        await self._until(
            lambda: enrollment_mirror.enrollment_version(self._mirror.pool, course_id, user_id),
            lambda v: v is not None and v >= version,
            "the mirror",
        )

    async def list_course_enrollments(
        self,
        course_id: str,
        after_user: str | None,
        limit: int,
        only_user: str | None,
        since: Marks = NONE,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        await self._mirror_enrollment_reaches(since)
        if status == "cancelled":
            return await self._lists.cancelled(course_id, after_user, limit, only_user)

        async def fetch(after: str | None, n: int) -> list[dict[str, Any]]:
            return await enrollment_mirror.list_course_enrollments(
                self._mirror.pool, course_id, after, n, only_user, status
            )

        return await self._page(fetch, "user_id", after_user, limit, since)

    async def read_job(self, job_id: str) -> dict[str, Any] | None:
        return await self._lists.job(job_id)

    async def list_job_rows(
        self, job_id: str, outcome: str | None, after_row: int, limit: int
    ) -> list[dict[str, Any]]:
        return await self._lists.job_rows(job_id, outcome, after_row, limit)

    async def list_waitlist(
        self, course_id: str, after_seq: int | None, limit: int, only_user: str | None
    ) -> list[tuple[int, dict[str, Any]]]:
        return await self._lists.waiting(course_id, after_seq, limit, only_user)

    async def list_user_enrollments(
        self, user_id: str, after_course: str | None, limit: int, since: Marks = NONE
    ) -> list[dict[str, Any]]:
        await self._mirror_enrollment_reaches(since)

        async def fetch(after: str | None, n: int) -> list[dict[str, Any]]:
            return await enrollment_mirror.list_user_enrollments(
                self._mirror.pool, user_id, after, n
            )

        return await self._page(fetch, "course_id", after_course, limit, since)

    async def _page(
        self,
        fetch: Callable[[str | None, int], Awaitable[list[dict[str, Any]]]],
        key: str,
        after: str | None,
        limit: int,
        since: Marks,
    ) -> list[dict[str, Any]]:
        """limit + 1 enrollments the caller may see, or every one left: the mirror is read
        on past the rows of a course deleted meanwhile (left out), so that a page does not
        end early, without a next cursor, while rows remain."""
        found: list[dict[str, Any]] = []
        while True:
            rows = await fetch(after, limit + 1)
            found += await self._current(rows, since)
            if len(found) > limit or len(rows) <= limit:
                return found[: limit + 1]
            after = rows[-1][key]

    async def _current(self, snapshots: list[dict[str, Any]], since: Marks) -> list[dict[str, Any]]:
        """Mirrored enrollments with progress recomputed against each course as it is now
        (the courses read at once, not one after another); those of a course deleted
        meanwhile are left out (as their point reads are 404)."""
        ids = list({s["course_id"]: None for s in snapshots})
        states = await asyncio.gather(*(self.read_course_state(c, since) for c in ids))
        courses = {c: course_of(state) for c, state in zip(ids, states, strict=True)}
        now = _now()
        return [
            current_view(s, course, now)
            for s in snapshots
            if (course := courses[s["course_id"]]) is not None
        ]

    # -- ratings and the catalog -----------------------------------------------------

    async def list_ratings(
        self, course_id: str, after: tuple[datetime, str] | None, limit: int, since: Marks = NONE
    ) -> list[dict[str, Any]]:
        if since.rating is not None and since.rating[0] == course_id:
            await self._mirror_rating_reaches(since.rating)
        return await enrollment_mirror.list_ratings(self._mirror.pool, course_id, after, limit)

    async def _mirror_rating_reaches(self, mark: tuple[str, str, int]) -> None:
        """Until the mirror holds the rating a token names (by the catalog version it
        made: a rating makes no course version)."""
        course_id, user_id, order = mark

        async def held() -> int | None:
            found = await enrollment_mirror.rating_order(self._mirror.pool, course_id, user_id)
            return None if found is None else catalog_version(*found)

        await self._until(held, lambda v: v is not None and v >= order, "the ratings list")

    async def search_catalog(self, query: CatalogQuery, since: Marks = NONE) -> dict[str, Any]:
        try:
            mark = since.catalog_version()
            if mark is None:
                return await self._catalog.search(query)
            course_id, version = mark
            await self._until(
                lambda: self._catalog.applied_version(course_id),
                lambda v: v is not None and v >= version,
                "the catalog",
            )
            return await self._catalog.search(query, cached=False)
        except CATALOG_UNAVAILABLE as exc:
            raise Unavailable("search-unavailable", "the catalog cannot be searched now") from exc

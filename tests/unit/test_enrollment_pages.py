"""Enrolment lists (issue 24, item 10): a page does not end early past the rows of a
course deleted meanwhile, and the courses of a page are read at once. The gateway's
paging over a fake mirror page function and a fake course store (named fakes: the real
mirror is tests/integration/test_enrollment_lists.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from course_management.domain.consistency import NONE
from course_management.gateways.reads import ReadGateway


def _snapshot(course_id: str, user_id: str) -> dict[str, Any]:
    progress = {"completed_items": 0, "total_items": 0, "percent": 0.0, "items": []}
    return {"course_id": course_id, "user_id": user_id, "status": "active", "progress": progress}


class _Gateway(ReadGateway):
    """The real paging, over a fake store of course states (None: deleted)."""

    def __init__(self, deleted: set[str]) -> None:
        self.deleted = deleted
        self.reads: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def read_course_state(self, course_id: str, since: Any = NONE) -> Any:
        self.reads.append(course_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)  # a read that yields, as a Redis read does
        self.in_flight -= 1
        if course_id in self.deleted:
            return None
        return {"course": {"id": course_id, "version": 1, "modules": []}}


async def test_a_page_reads_on_past_a_deleted_courses_rows() -> None:
    # a user's enrollments in courses c00..c09; c01-c04 deleted meanwhile
    rows = [_snapshot(f"c{n:02d}", "u") for n in range(10)]
    fetched: list[tuple[str | None, int]] = []

    async def fetch(after: str | None, n: int) -> list[dict[str, Any]]:
        fetched.append((after, n))
        return [r for r in rows if after is None or r["course_id"] > after][:n]

    gateway = _Gateway(deleted={"c01", "c02", "c03", "c04"})
    page = await gateway._page(fetch, "course_id", None, 3, NONE)
    # limit + 1 visible rows, so the route gives a next cursor: not 4 rows read, 1 shown
    assert [r["course_id"] for r in page] == ["c00", "c05", "c06", "c07"]
    assert fetched == [(None, 4), ("c03", 4)]
    last = await gateway._page(fetch, "course_id", "c07", 3, NONE)
    assert [r["course_id"] for r in last] == ["c08", "c09"]  # the end: no next page


async def test_the_courses_of_a_page_are_read_at_once() -> None:
    rows = [_snapshot(f"c{n:02d}", "u") for n in range(50)]

    async def fetch(after: str | None, n: int) -> list[dict[str, Any]]:
        return rows[:n]

    gateway = _Gateway(deleted=set())
    page = await gateway._page(fetch, "course_id", None, 100, NONE)
    assert len(page) == 50 and sorted(gateway.reads) == [r["course_id"] for r in rows]
    assert gateway.most_in_flight == 50  # not one after another

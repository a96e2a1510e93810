"""The consistency marks of an answer: the versions the batch leaves a course (and an
enrollment) at, for the `Consistency-Token` of the write's response (domain/consistency.py).
"""

from __future__ import annotations

from course_management.catalog.query import catalog_version
from course_management.domain.consistency import NONE, Marks
from course_management.streams.batch import Batch


def marks_after(
    batch: Batch, course_id: str, user_id: str | None = None, *, rating: bool = False
) -> Marks:
    record = batch.course_record(course_id)
    course = (record or {}).get("course")
    if course is None:
        return NONE
    seats = batch.seats(course_id)
    version = int(course["version"])
    enrollment = batch.enrollment(course_id, user_id) if user_id else None
    return Marks(
        course=(course_id, version),
        catalog=(course_id, catalog_version(version, int(seats["seq"]))),
        enrollment=(course_id, user_id, int(enrollment["version"]))
        if enrollment and user_id
        else None,
        rating=(course_id, user_id, catalog_version(version, int(seats["seq"])))
        if rating and user_id
        else None,
    )

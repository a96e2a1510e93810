"""The `courses` table: course id -> the course's record (snapshot, create fingerprint,
recently applied commands). RocksDB-backed, made durable by a compacted changelog."""

from __future__ import annotations

from typing import Any

import faust

from course_management.tables.records import Course, CourseRecord
from course_management.topology import COURSES_TABLE


def define_courses_table(app: faust.App, partitions: int) -> Any:
    return app.Table(
        COURSES_TABLE,
        default=None,
        key_type=str,
        value_type=None,
        partitions=partitions,
        help="course id -> {course, deleted, create, recent}",
    )


def course_of(record: CourseRecord | None) -> Course | None:
    """The visible course in a table record (None when absent or deleted)."""
    if not record or record.get("deleted"):
        return None
    return record.get("course")

"""The `enrollments` table: "<course id>:<user id>" -> the enrollment record, and
"<course id>#seats" -> the course's seats record (see domain.enrollment.settle_seats).

Written only by the agent that owns the course's partition (the changelog record goes to
that partition), so a course and its enrollments recover and move together.
"""

from __future__ import annotations

from typing import Any

import faust

from course_management.topology import ENROLLMENTS_TABLE


def define_enrollments_table(app: faust.App, partitions: int) -> Any:
    return app.Table(
        ENROLLMENTS_TABLE,
        default=None,
        key_type=str,
        value_type=None,
        partitions=partitions,
        help="<course id>:<user id> -> enrollment record",
    )


def enrollment_key(course_id: str, user_id: str) -> str:
    return f"{course_id}:{user_id}"


def seats_key(course_id: str) -> str:
    return f"{course_id}#seats"

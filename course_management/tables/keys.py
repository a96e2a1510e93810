"""The keys of the `course-state` table (tables/state.py). Pure."""

from __future__ import annotations


def enrollment_key(course_id: str, user_id: str) -> str:
    return f"{course_id}:{user_id}"


def seats_key(course_id: str) -> str:
    return f"{course_id}#seats"


def outbox_key(partition: int) -> str:
    return f"#outbox:{partition}"


def is_course_key(key: str) -> bool:
    """A course record's key (not an enrollment, seats, tracking or outbox key)."""
    return not key.startswith("#") and ":" not in key and "#" not in key

"""The keys of the `course-state` table (tables/state.py). Pure."""

from __future__ import annotations


def enrollment_key(course_id: str, user_id: str) -> str:
    return f"{course_id}:{user_id}"


def seats_key(course_id: str) -> str:
    return f"{course_id}#seats"


def wait_key(course_id: str, ticket: int) -> str:
    """A learner's place in a course's waitlist (tickets sort as numbers: 12 digits)."""
    return f"{course_id}#wait:{ticket:012d}"


def job_key(job_id: str) -> str:
    """A bulk enrolment job's record (domain.jobs.JobRecord), on its course's partition."""
    return f"#job:{job_id}"


def outbox_key(partition: int) -> str:
    return f"#outbox:{partition}"


def is_course_key(key: str) -> bool:
    """A course record's key (not an enrollment, seats, tracking or outbox key)."""
    return not key.startswith("#") and ":" not in key and "#" not in key


DUE_PREFIX = "#due:"


def due_key(moment: str, course_id: str, module_id: str, user_id: str | None) -> str:
    """A time lock to look at again (domain.timers.Due), ordered by its moment (RFC 3339
    strings of one format sort as the moments do)."""
    base = f"{DUE_PREFIX}{moment}:{course_id}:{module_id}"
    return base if user_id is None else f"{base}:{user_id}"


def enrollment_prefix(course_id: str) -> str:
    """The prefix of every enrollment key of a course (the table orders them by user id)."""
    return f"{course_id}:"

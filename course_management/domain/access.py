"""Who may see and change a course, and who may enroll, report, rate and read
enrollments (CONTRACT §2). Pure: the routes turn a "no" into their problem."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol


class Caller(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...


class CallerWithRoles(Caller, Protocol):
    @property
    def roles(self) -> Collection[str]: ...


def owns(course: dict[str, Any], caller: Caller | None) -> bool:
    return owned_by(course["instructor"]["id"], caller)


def owned_by(owner_id: str, caller: Caller | None) -> bool:
    """`owns` from the course's owner id alone (a read that has not decoded the course)."""
    return caller is not None and caller.id == owner_id


def can_see(course: dict[str, Any], caller: Caller | None) -> bool:
    """Published and archived courses are public; drafts only to their owner and admins."""
    return may_see(course["status"], course["instructor"]["id"], caller)


def may_see(status: str, owner_id: str, caller: Caller | None) -> bool:
    """`can_see` from a course's status and owner alone (a read that has not decoded it)."""
    if status != "draft":
        return True
    return caller is not None and (caller.is_admin or owned_by(owner_id, caller))


def can_change(course: dict[str, Any], caller: Caller) -> bool:
    return caller.is_admin or owns(course, caller)


def sees_content_keys(owner_id: str, caller: CallerWithRoles | None) -> bool:
    """Content keys name a course's stored objects: shown to whoever may edit the course
    and to services (Content Delivery fetches the objects); null to everyone else."""
    if caller is None:
        return False
    return caller.is_admin or _has(caller, "service") or owned_by(owner_id, caller)


def may_see_content_keys(caller: CallerWithRoles | None) -> bool | None:
    """Before the course is read: True (admins, services), False (anonymous), None (any
    other caller: it depends on whose course it is, `sees_content_keys`)."""
    if caller is None:
        return False
    if caller.is_admin or _has(caller, "service"):
        return True
    return None


def _has(caller: CallerWithRoles, *roles: str) -> bool:
    return any(role in caller.roles for role in roles)


def _student_for_self(caller: CallerWithRoles, named: str | None) -> bool:
    """A student acting for themselves: naming no user, or themselves."""
    return _has(caller, "student") and named in (None, caller.id)


def may_enroll_others(caller: CallerWithRoles) -> bool:
    """Admins and services enroll a user they name."""
    return _has(caller, "admin", "service")


def may_enroll_self(caller: CallerWithRoles, named: str | None) -> bool:
    """A student enrolls only themselves (naming no user, or themselves)."""
    return _student_for_self(caller, named)


def may_report_progress_for_others(caller: CallerWithRoles) -> bool:
    """A service reports progress for a user it names."""
    return _has(caller, "service")


def may_report_own_progress(caller: CallerWithRoles, named: str | None) -> bool:
    """A student reports only their own progress (naming no user, or themselves)."""
    return _student_for_self(caller, named)


def may_cancel_enrollment(caller: CallerWithRoles, user_id: str) -> bool:
    """The enrolled student themselves, or an admin."""
    return _has(caller, "admin") or (_has(caller, "student") and caller.id == user_id)


def may_read_enrollments_of(caller: CallerWithRoles, user_id: str) -> bool:
    """A user's enrollments: that user, admins and services (a course's owner reads its
    course's enrollments: `owns`)."""
    return _has(caller, "admin", "service") or caller.id == user_id


def may_read_every_course_enrollment(caller: CallerWithRoles) -> bool:
    """Admins and services read any course's enrollments, without reading the course."""
    return _has(caller, "admin", "service")


def may_read_own_course_enrollment(caller: CallerWithRoles) -> bool:
    """A student who does not own the course reads only their own enrollment in it."""
    return _has(caller, "student")


def may_rate(caller: CallerWithRoles) -> bool:
    """Ratings come from students (the agent checks that they are enrolled)."""
    return _has(caller, "student")

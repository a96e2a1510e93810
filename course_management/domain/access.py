"""Who may see and change a course, and who may enroll, report, rate and read
enrollments (CONTRACT §2), with the course's staff (§5.2). Pure: the routes turn a "no"
into their problem.

Staff rights follow the token's `sub`, whatever its roles: a co-instructor does what the
owner does except delete the course or change its staff; a teaching assistant reads the
course (drafts too), its enrollments and each learner's progress, and reports progress
for a learner. Neither needs an enrolment, and neither takes a seat.
"""

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


CO_INSTRUCTOR, TEACHING_ASSISTANT = "co_instructor", "teaching_assistant"


def owns(course: dict[str, Any], caller: Caller | None) -> bool:
    return owned_by(course["instructor"]["id"], caller)


def staff_role(course: dict[str, Any], caller: Caller | None) -> str | None:
    """The caller's role on the course's staff (None: not one of them)."""
    if caller is None:
        return None
    return next(
        (str(m["role"]) for m in course.get("staff") or () if m["user_id"] == caller.id), None
    )


def teaches(course: dict[str, Any], caller: Caller | None) -> bool:
    """The owner or a co-instructor: who authors the course."""
    return owns(course, caller) or staff_role(course, caller) == CO_INSTRUCTOR


def on_staff(course: dict[str, Any], caller: Caller | None) -> bool:
    """The owner or anyone on its staff: who reads everything of the course."""
    return owns(course, caller) or staff_role(course, caller) is not None


def owned_by(owner_id: str, caller: Caller | None) -> bool:
    """`owns` from the course's owner id alone (a read that has not decoded the course)."""
    return caller is not None and caller.id == owner_id


def can_see(course: dict[str, Any], caller: Caller | None) -> bool:
    """Published and archived courses are public; drafts only to their owner, its staff
    and admins."""
    if may_see(course["status"], course["instructor"]["id"], caller):
        return True
    return staff_role(course, caller) is not None


def may_see(status: str, owner_id: str, caller: Caller | None) -> bool:
    """`can_see` from a course's status and owner alone (a read that has not decoded it;
    its staff are not known: a "no" for a draft is decided again with `can_see`)."""
    if status != "draft":
        return True
    return caller is not None and (caller.is_admin or owned_by(owner_id, caller))


def can_change(course: dict[str, Any], caller: Caller) -> bool:
    """Edit the course, upload its content: its owner, a co-instructor, admins."""
    return caller.is_admin or teaches(course, caller)


def can_delete(course: dict[str, Any], caller: Caller) -> bool:
    """Delete the course, or change its `staff`: its owner and admins only."""
    return caller.is_admin or owns(course, caller)


def may_follow_course(course: dict[str, Any], caller: CallerWithRoles) -> bool:
    """A course's live stream: its owner and staff, admins and services (CONTRACT §5.4)."""
    return _has(caller, "admin", "service") or on_staff(course, caller)


def may_read_history(course: dict[str, Any], caller: Caller) -> bool:
    """A course's authoring history: its owner, a co-instructor, admins (CONTRACT §5.3)."""
    return caller.is_admin or teaches(course, caller)


def may_read_versions(course: dict[str, Any], caller: Caller | None, deleted: bool) -> bool:
    """A course's past versions: whoever may read it now; once it is deleted, its owner
    and admins only (CONTRACT §5.3)."""
    if deleted:
        return caller is not None and (caller.is_admin or owns(course, caller))
    return can_see(course, caller)


def sees_content_keys(
    owner_id: str, caller: CallerWithRoles | None, course: dict[str, Any] | None = None
) -> bool:
    """Content keys name a course's stored objects: shown to whoever may edit the course
    (a co-instructor too, when `course` is given) and to services (Content Delivery
    fetches the objects); null to everyone else."""
    if caller is None:
        return False
    if caller.is_admin or _has(caller, "service") or owned_by(owner_id, caller):
        return True
    return course is not None and staff_role(course, caller) == CO_INSTRUCTOR


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
    """A service reports progress for a user it names (a teaching assistant too, on their
    course: `assists`)."""
    return _has(caller, "service")


def assists(course: dict[str, Any], caller: Caller | None) -> bool:
    """A teaching assistant of the course: reports progress for a learner they name."""
    return staff_role(course, caller) == TEACHING_ASSISTANT


def may_run_enrollment_jobs(course: dict[str, Any], caller: CallerWithRoles) -> bool:
    """Bulk enrolment (CONTRACT §5.2): the owner, a co-instructor, admins, services."""
    return _has(caller, "admin", "service") or teaches(course, caller)


def may_report_own_progress(caller: CallerWithRoles, named: str | None) -> bool:
    """A student reports only their own progress (naming no user, or themselves)."""
    return _student_for_self(caller, named)


def may_cancel_enrollment(caller: CallerWithRoles, user_id: str) -> bool:
    """The enrolled student themselves, or an admin."""
    return _has(caller, "admin") or (_has(caller, "student") and caller.id == user_id)


def may_read_enrollments_of(caller: CallerWithRoles, user_id: str) -> bool:
    """A user's enrollments: that user, admins and services (a course's owner and staff
    read its course's enrollments: `on_staff`)."""
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


def may_subscribe_webhooks(caller: CallerWithRoles) -> bool:
    """Webhook subscriptions are made by admins and services (CONTRACT §5.4)."""
    return _has(caller, "admin", "service")


def may_manage_webhook(creator_id: str, caller: Caller) -> bool:
    """A subscription is read, replayed and deleted by its creator and by admins."""
    return caller.is_admin or caller.id == creator_id

"""Who may see and change a course (CONTRACT §2). Pure."""

from __future__ import annotations

from typing import Any, Protocol


class Caller(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def is_admin(self) -> bool: ...


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

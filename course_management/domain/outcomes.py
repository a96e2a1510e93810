"""What a decision leads to, in domain terms: an outcome, or a refusal and its kind. Pure.

The domain never speaks HTTP. The API edge (`api/problems.py`) turns an `Outcome` into a
status code and a `Refusal` into a problem document (RFC 9457), whose `type` ends with
the refusal's kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError


class Outcome(StrEnum):
    """A decision that was carried out (or had been already)."""

    CREATED = "created"  # something new exists
    APPLIED = "applied"  # a change was made
    UNCHANGED = "unchanged"  # nothing needed changing (a repeat, or the same values)
    REMOVED = "removed"  # deleted or cancelled


_OUTCOMES = frozenset(o.value for o in Outcome)


class RefusalKind(StrEnum):
    """Why a decision was refused. The values are the problem types of CONTRACT §3."""

    INVALID = "validation"
    UNKNOWN_COMMAND = "unknown-command"
    COURSE_NOT_FOUND = "course-not-found"
    NOT_COURSE_OWNER = "not-course-owner"
    VERSION_MISMATCH = "version-mismatch"
    COURSE_NOT_PUBLISHED = "course-not-published"
    ENROLLMENT_CLOSED = "enrollment-closed"
    COURSE_FULL = "course-full"
    NOT_ENROLLED = "not-enrolled"
    ENROLLMENT_CANCELLED = "enrollment-cancelled"
    ITEM_LOCKED = "item-locked"
    PREREQUISITES_NOT_MET = "prerequisites-not-met"
    FAILED = "internal"  # the decision itself failed (a bug); nothing was applied


@dataclass(frozen=True)
class Refusal(Exception):
    """A refused decision. Raised by pure parsers, returned by deciders."""

    kind: RefusalKind
    detail: str = ""
    errors: tuple[dict[str, str], ...] = field(default_factory=tuple)  # {"field", "message"}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "detail": self.detail, "errors": list(self.errors)}

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Refusal:
        return cls(RefusalKind(body["kind"]), body.get("detail", ""), tuple(body.get("errors", ())))


def invalid(errors: Iterable[tuple[str, str]]) -> Refusal:
    """A refusal naming each invalid field with its message."""
    listed = tuple({"field": f, "message": m} for f, m in errors)
    names = ", ".join(sorted({e["field"] for e in listed}))
    return Refusal(
        RefusalKind.INVALID, f"invalid fields: {names}" if names else "invalid request", listed
    )


def invalid_from(exc: ValidationError, prefix: str = "") -> Refusal:
    """A pydantic validation error as a refusal naming the fields (`modules[0].title`)."""
    return invalid((_field_path(prefix, err.get("loc", ())), _message(err)) for err in exc.errors())


@dataclass(frozen=True)
class Reply:
    """What the caller of a command or input is told: an outcome and its body, or a
    refusal (`outcome` is then its kind and `body` the refusal's dict)."""

    outcome: str
    body: dict[str, Any] | None
    token: str | None = None  # the consistency token of what it left (domain/consistency.py)

    @classmethod
    def refusing(cls, refusal: Refusal) -> Reply:
        return cls(str(refusal.kind), refusal.to_dict())

    @property
    def refusal(self) -> Refusal | None:
        if self.outcome in _OUTCOMES:
            return None
        return Refusal.from_dict(self.body or {"kind": self.outcome})


def _field_path(prefix: str, loc: Iterable[Any]) -> str:
    parts = [prefix] if prefix else []
    for part in loc:
        if isinstance(part, int) and parts:
            parts[-1] = f"{parts[-1]}[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts) or "body"


def _message(err: Any) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown field (not writable)"
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")

"""Problem details (RFC 9457), and the HTTP status of every domain outcome and refusal.

This is the one place where domain terms become HTTP: `success_status_or_raise` for what a
decision led to (a refusal is raised as its problem), `problem_of` for why it was
refused. A route that gives a refusal another status (a student not enrolled is 404 to the
cancel route, 403 to the progress route) says so with `overrides`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from course_management.domain.outcomes import (
    Outcome,
    Refusal,
    RefusalKind,
    Reply,
    invalid,
    invalid_from,
)

PROBLEM_BASE = "https://moocflix.example/problems/"

OUTCOME_STATUS: dict[str, int] = {
    Outcome.CREATED: 201,
    Outcome.APPLIED: 200,
    Outcome.UNCHANGED: 200,
    Outcome.REMOVED: 204,
}

REFUSAL_STATUS: dict[RefusalKind, int] = {
    RefusalKind.INVALID: 422,
    RefusalKind.UNKNOWN_COMMAND: 400,
    RefusalKind.COURSE_NOT_FOUND: 404,
    RefusalKind.NOT_COURSE_OWNER: 403,
    RefusalKind.VERSION_MISMATCH: 412,
    RefusalKind.COURSE_NOT_PUBLISHED: 409,
    RefusalKind.ENROLLMENT_CLOSED: 409,
    RefusalKind.COURSE_FULL: 409,
    RefusalKind.NOT_ENROLLED: 404,
    RefusalKind.ENROLLMENT_CANCELLED: 409,
    RefusalKind.ITEM_LOCKED: 409,
    RefusalKind.PREREQUISITES_NOT_MET: 409,
    RefusalKind.FAILED: 500,
}

Overrides = Mapping[RefusalKind, int]


@dataclass(frozen=True)
class Problem(Exception):
    """An error answer; raised anywhere in the api, rendered by the middleware."""

    status: int
    type: str
    title: str
    detail: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        status: int,
        slug: str,
        detail: str = "",
        title: str | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> Problem:
        return cls(
            status=status,
            type=PROBLEM_BASE + slug,
            title=title or _title(status),
            detail=detail,
            errors=list(errors or []),
        )

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "") -> Problem:
        return problem_of(invalid_from(exc, prefix))

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def problem_of(refusal: Refusal, overrides: Overrides | None = None) -> Problem:
    status = (overrides or {}).get(refusal.kind) or REFUSAL_STATUS[refusal.kind]
    return Problem(
        status=status,
        type=PROBLEM_BASE + refusal.kind.value,
        title=_title(status),
        detail=refusal.detail,
        errors=list(refusal.errors),
    )


def validation_problem(errors: Iterable[tuple[str, str]]) -> Problem:
    """422 naming each invalid field."""
    return problem_of(invalid(errors))


def success_status_or_raise(reply: Reply, overrides: Overrides | None = None) -> int:
    """The status a reply that is not a refusal is answered with; a refusal is raised as
    its problem (with `overrides`' status for its kind, if any)."""
    refusal = reply.refusal
    if refusal is not None:
        raise problem_of(refusal, overrides)
    return OUTCOME_STATUS[reply.outcome]


def _title(status: int) -> str:
    if status == 422:
        return "Unprocessable Content"  # RFC 9110's name (Python's is the older one)
    return HTTPStatus(status).phrase

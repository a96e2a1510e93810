"""Problem details (RFC 9457): the one shape every error of this service takes. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

PROBLEM_BASE = "https://moocflix.example/problems/"


@dataclass(frozen=True)
class Problem(Exception):
    status: int
    type: str
    title: str
    detail: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, status: int, slug: str, detail: str = "", title: str | None = None) -> Problem:
        return cls(
            status=status,
            type=PROBLEM_BASE + slug,
            title=title or HTTPStatus(status).phrase,
            detail=detail,
        )

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "") -> Problem:
        return validation_problem(
            (_field_path(prefix, err.get("loc", ())), _message(err)) for err in exc.errors()
        )

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


def validation_problem(errors: Iterable[tuple[str, str]]) -> Problem:
    listed = [{"field": f, "message": m} for f, m in errors]
    names = ", ".join(sorted({e["field"] for e in listed}))
    return Problem(
        status=422,
        type=PROBLEM_BASE + "validation",
        title="Unprocessable Content",
        detail=f"invalid fields: {names}" if names else "invalid request",
        errors=listed,
    )


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

"""The course: its writable fields, their rules, and how a snapshot is built. Pure: no I/O.

The same models validate HTTP bodies (unknown fields refused) and feed the OpenAPI
document, so a rule written here is enforced and documented in one place.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Category = Annotated[str, StringConstraints(strip_whitespace=True, max_length=80)]


class Level(StrEnum):
    beginner = "beginner"
    intermediate = "intermediate"
    advanced = "advanced"


class Status(StrEnum):
    draft = "draft"
    published = "published"
    archived = "archived"


class ItemType(StrEnum):
    lesson = "lesson"
    quiz = "quiz"
    assignment = "assignment"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ItemInput(_Strict):
    id: str | None = Field(default=None, description="Omit for a new item; the server assigns it")
    type: ItemType
    title: Title
    position: Annotated[int, Field(ge=0, le=10_000)]
    content_key: Annotated[str, StringConstraints(max_length=1024)] | None = None
    duration_seconds: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    max_score: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    due_at: datetime | None = None

    _nul = field_validator("title")(_no_nul)


class ModuleInput(_Strict):
    id: str | None = Field(default=None, description="Omit for a new module; the server assigns it")
    title: Title
    position: Annotated[int, Field(ge=0, le=10_000)]
    items: Annotated[list[ItemInput], Field(max_length=500)] = []

    _nul = field_validator("title")(_no_nul)


class CourseFields(_Strict):
    """The writable fields of a course (create: `title` required, the rest defaulted)."""

    title: Title
    description: Description = ""
    category: Category = ""
    tags: Annotated[list[Tag], Field(max_length=30)] = []
    level: Level = Level.beginner
    language: Annotated[str, StringConstraints(max_length=35)] = "en"
    status: Status = Status.draft
    capacity: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    enrollment_opens_at: datetime | None = None
    enrollment_closes_at: datetime | None = None
    modules: Annotated[list[ModuleInput], Field(max_length=200)] = []

    _nul = field_validator("title", "description", "category")(_no_nul)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not _BCP47.match(value):
            raise ValueError("must be a BCP 47 language tag such as 'en' or 'pt-BR'")
        return value


def _ts(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def new_course(
    course_id: str,
    fields: CourseFields,
    instructor_id: str,
    instructor_name: str,
    now: datetime,
    new_id: Any,
) -> dict[str, Any]:
    """The first snapshot of a course (version 1). `new_id()` gives ids for modules/items."""
    stamp = rfc3339(now)
    return {
        "id": course_id,
        "title": fields.title,
        "description": fields.description,
        "category": fields.category,
        "tags": list(fields.tags),
        "level": fields.level.value,
        "language": fields.language,
        "status": fields.status.value,
        "instructor": {"id": instructor_id, "name": instructor_name},
        "capacity": fields.capacity,
        "enrollment_opens_at": _ts(fields.enrollment_opens_at),
        "enrollment_closes_at": _ts(fields.enrollment_closes_at),
        "modules": [
            {
                "id": module.id or str(new_id()),
                "title": module.title,
                "position": module.position,
                "items": [
                    {
                        "id": item.id or str(new_id()),
                        "type": item.type.value,
                        "title": item.title,
                        "position": item.position,
                        "content_key": item.content_key,
                        "duration_seconds": item.duration_seconds,
                        "max_score": item.max_score,
                        "due_at": _ts(item.due_at),
                    }
                    for item in sorted(module.items, key=lambda i: i.position)
                ],
            }
            for module in sorted(fields.modules, key=lambda m: m.position)
        ],
        "rating": {"average": None, "count": 0},
        "enrollment_count": 0,
        "version": 1,
        "created_at": stamp,
        "updated_at": stamp,
    }

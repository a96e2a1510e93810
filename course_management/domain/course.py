"""The course: its writable fields, their rules, and how a snapshot is built. Pure: no I/O.

The same models validate HTTP bodies (unknown fields refused) and feed the OpenAPI
document, so a rule written here is enforced and documented in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def no_nul(value: str) -> str:
    """PostgreSQL cannot store a NUL character: no text this service keeps may hold one.
    (None passes: whether a field may be null is its own rule.)"""
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=20_000)]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=40),
    AfterValidator(no_nul),
]


def no_control(value: str) -> str:
    """Ids travel in paths, headers and keys: no control character (NUL included)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain control characters")
    return value


# An id given by a caller (a user id, an item id): short, no control character.
Id = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(no_control)]
ContentKey = Annotated[str, StringConstraints(max_length=1024), AfterValidator(no_nul)]
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
    content_key: ContentKey | None = None
    duration_seconds: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    max_score: Annotated[float | None, Field(gt=0, le=1_000_000, validate_default=True)] = None
    due_at: Annotated[AwareDatetime | None, Field(validate_default=True)] = None

    _nul = field_validator("title")(no_nul)

    @field_validator("max_score")
    @classmethod
    def _score_by_type(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("type")
        if kind in (ItemType.quiz, ItemType.assignment) and value is None:
            raise ValueError(f"a {kind.value} needs max_score")
        if kind is ItemType.lesson and value is not None:
            raise ValueError("a lesson has no max_score")
        return value

    @field_validator("due_at")
    @classmethod
    def _due_only_for_assignments(
        cls, value: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        if value is not None and info.data.get("type") is not ItemType.assignment:
            raise ValueError("only an assignment has due_at")
        return value


class ModuleInput(_Strict):
    id: str | None = Field(default=None, description="Omit for a new module; the server assigns it")
    title: Title
    position: Annotated[int, Field(ge=0, le=10_000)]
    items: Annotated[list[ItemInput], Field(max_length=500)] = []

    _nul = field_validator("title")(no_nul)


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
    enrollment_opens_at: AwareDatetime | None = None
    enrollment_closes_at: AwareDatetime | None = None
    modules: Annotated[list[ModuleInput], Field(max_length=200)] = []

    _nul = field_validator("title", "description", "category")(no_nul)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not _BCP47.match(value):
            raise ValueError("must be a BCP 47 language tag such as 'en' or 'pt-BR'")
        return value


class CourseUpdate(_Strict):
    """A partial update: only the fields given change; `null` clears a nullable field."""

    title: Title | None = None
    description: Description | None = None
    category: Category | None = None
    tags: Annotated[list[Tag], Field(max_length=30)] | None = None
    level: Level | None = None
    language: Annotated[str, StringConstraints(max_length=35)] | None = None
    status: Status | None = None
    capacity: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    enrollment_opens_at: AwareDatetime | None = None
    enrollment_closes_at: AwareDatetime | None = None
    modules: Annotated[list[ModuleInput], Field(max_length=200)] | None = None

    _nul = field_validator("title", "description", "category")(no_nul)

    @field_validator(
        "title",
        "description",
        "category",
        "tags",
        "level",
        "language",
        "status",
        "modules",
    )
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # After validation (it runs only on a field the body gave, and then on its value
        # as validated): a before-validator would hand the nested values on as Python
        # objects, which strict validation of the JSON (api/http.read_body) then refuses
        # where it takes JSON text, such as a timestamp.
        if value is None:
            raise ValueError("cannot be null")
        return value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and not _BCP47.match(value):
            raise ValueError("must be a BCP 47 language tag such as 'en' or 'pt-BR'")
        return value


# Status changes a course may make (a change to the same status is no change).
TRANSITIONS = {
    ("draft", "published"),
    ("published", "archived"),
    ("archived", "published"),
}


def _ts(value: datetime | None) -> str | None:
    return rfc3339(value) if value is not None else None


def build_modules(
    modules: list[ModuleInput], existing: dict[str, Any] | None, new_id: Callable[[], str]
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The snapshot's modules from input; ids given must be this course's own.

    Returns (modules, errors). A module or item without an id is new and gets one.
    """
    known_modules = {m["id"] for m in (existing or {}).get("modules", [])}
    known_items = {i["id"] for m in (existing or {}).get("modules", []) for i in m.get("items", [])}
    errors: list[tuple[str, str]] = []
    built = []
    for mi, module in enumerate(modules):
        where = f"modules[{mi}]"
        if module.id is not None and module.id not in known_modules:
            errors.append((f"{where}.id", "not a module of this course (omit it for a new one)"))
        items = []
        for ii, item in enumerate(module.items):
            if item.id is not None and item.id not in known_items:
                errors.append(
                    (
                        f"{where}.items[{ii}].id",
                        "not an item of this course (omit it for a new one)",
                    )
                )
            items.append(
                {
                    "id": item.id or new_id(),
                    "type": item.type.value,
                    "title": item.title,
                    "position": item.position,
                    "content_key": item.content_key,
                    "duration_seconds": item.duration_seconds,
                    "max_score": item.max_score,
                    "due_at": _ts(item.due_at),
                }
            )
        built.append(
            {
                "id": module.id or new_id(),
                "title": module.title,
                "position": module.position,
                "items": items,
            }
        )
    return built, errors


def check_course(course: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules over the whole snapshot: positions, ids, publishing, the enrollment window."""
    errors: list[tuple[str, str]] = []
    positions = [m["position"] for m in course["modules"]]
    if len(positions) != len(set(positions)):
        errors.append(("modules", "module positions must be unique"))
    seen_ids: set[str] = set()
    for mi, module in enumerate(course["modules"]):
        item_positions = [i["position"] for i in module["items"]]
        if len(item_positions) != len(set(item_positions)):
            errors.append((f"modules[{mi}].items", "item positions must be unique in a module"))
        for ii, part in enumerate([module, *module["items"]]):
            if part["id"] in seen_ids:
                where = f"modules[{mi}]" + (f".items[{ii - 1}]" if ii else "")
                errors.append((f"{where}.id", "appears twice"))
            seen_ids.add(part["id"])
    if course["status"] == "published" and not any(m["items"] for m in course["modules"]):
        errors.append(("status", "a course is published only with a module holding an item"))
    opens, closes = course["enrollment_opens_at"], course["enrollment_closes_at"]
    if opens and closes and closes <= opens:
        errors.append(("enrollment_closes_at", "must be after enrollment_opens_at"))
    return errors


def _ordered(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**m, "items": sorted(m["items"], key=lambda i: i["position"])}
        for m in sorted(modules, key=lambda m: m["position"])
    ]


def new_course(
    course_id: str,
    fields: CourseFields,
    instructor_id: str,
    instructor_name: str,
    now: datetime,
    new_id: Callable[[], str],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The first snapshot of a course (version 1) and the rules it breaks, if any."""
    stamp = rfc3339(now)
    modules, errors = build_modules(fields.modules, None, new_id)
    course = {
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
        "modules": _ordered(modules),
        "rating": {"average": None, "count": 0},
        "enrollment_count": 0,
        "version": 1,
        "created_at": stamp,
        "updated_at": stamp,
        "published_at": stamp if fields.status.value == "published" else None,
    }
    return course, errors + check_course(course)


def updated_course(
    course: dict[str, Any],
    changes: CourseUpdate,
    given: set[str],
    now: datetime,
    new_id: Callable[[], str],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The course after a partial update (same version), and the rules it breaks.

    The caller bumps `version` and `updated_at` only when something really changed.
    """
    result = dict(course)
    errors: list[tuple[str, str]] = []
    for name in given:
        value = getattr(changes, name)
        if name == "modules":
            modules, module_errors = build_modules(value, course, new_id)
            result["modules"] = _ordered(modules)
            errors += module_errors
        elif name in ("enrollment_opens_at", "enrollment_closes_at"):
            result[name] = _ts(value)
        elif name in ("level", "status"):
            result[name] = value.value
        elif name == "tags":
            result[name] = list(value)
        else:
            result[name] = value
    if (
        result["status"] != course["status"]
        and (course["status"], result["status"]) not in TRANSITIONS
    ):
        errors.append(("status", f"a {course['status']} course cannot become {result['status']}"))
    elif not course.get("published_at"):
        result["published_at"] = published_at(course, result, now)
    return result, errors + check_course(result)


def published_at(before: dict[str, Any], after: dict[str, Any], now: datetime) -> str | None:
    """When a course without `published_at` was first published, after this change: now,
    if it leaves the draft it was; its creation, if it was made before decision 53 and
    left the draft then (taking a course down and up again never makes it new)."""
    if before["status"] == "draft":
        return rfc3339(now) if after["status"] == "published" else None
    return str(before["created_at"])


# Every record that carries a course (its event, its catalog entry, its table record with
# the first create's reply, the reply to the writer) must fit one Kafka record (1 MiB by
# default): a course is at most this many bytes as compact JSON (decision 26).
MAX_COURSE_BYTES = 256 * 1024


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def course_size_error(value: dict[str, Any]) -> tuple[str, str] | None:
    """(field, message) when a course, or the fields that would make one, is too large."""
    size = json_size(value)
    if size <= MAX_COURSE_BYTES:
        return None
    return (
        "modules",
        f"the course would take {size} bytes as JSON, over the {MAX_COURSE_BYTES} allowed: "
        "split it into several courses or shorten its modules",
    )


def with_new_version(course: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {**course, "version": course["version"] + 1, "updated_at": rfc3339(now)}

"""The writable fields of a course as callers send them: the models that validate HTTP
bodies and commands (unknown fields refused) and feed the OpenAPI document. Pure.

The rules over a whole course (positions, publishing, the learning path) are in
domain/course.py and domain/paths.py.
"""

from __future__ import annotations

import re
from datetime import datetime
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RequirementType(StrEnum):
    complete = "complete"
    view = "view"
    min_score = "min_score"


class Completion(_Strict):
    """An item's requirement (CONTRACT §5.1): `complete` (a `completed` report), `view`
    (any report) or, for quizzes and assignments, `min_score` (a `completed` report
    scoring at least `min_score`; checked against the item in domain/paths.py)."""

    type: RequirementType = RequirementType.complete
    min_score: Annotated[float, Field(gt=0, le=1_000_000)] | None = None

    @field_validator("min_score")
    @classmethod
    def _score_only_for_min_score(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("type")
        if kind is RequirementType.min_score and value is None:
            raise ValueError("a min_score requirement needs min_score")
        if kind is not RequirementType.min_score and value is not None:
            raise ValueError(f"a {getattr(kind, 'value', kind)} requirement has no min_score")
        return value


MAX_PREREQUISITES = 50
MAX_UNLOCK_DAYS = 3650


class ItemInput(_Strict):
    id: str | None = Field(default=None, description="Omit for a new item; the server assigns it")
    type: ItemType
    title: Title
    position: Annotated[int, Field(ge=0, le=10_000)]
    content_key: ContentKey | None = None
    duration_seconds: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    max_score: Annotated[float | None, Field(gt=0, le=1_000_000, validate_default=True)] = None
    due_at: Annotated[AwareDatetime | None, Field(validate_default=True)] = None
    completion: Completion | None = Field(
        default=None, description='The requirement; omitted or null: `{"type": "complete"}`'
    )

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
    id: Id | None = Field(
        default=None,
        description="Omit for a new module and the server assigns it. On create, a "
        "reference of your choice that `prerequisite_module_ids` in the same body may name "
        "(the module still gets the server's id, which the prerequisites then name)",
    )
    title: Title
    position: Annotated[int, Field(ge=0, le=10_000)]
    items: Annotated[list[ItemInput], Field(max_length=500)] = []
    prerequisite_module_ids: Annotated[list[Id], Field(max_length=MAX_PREREQUISITES)] = Field(
        default=[], description="Modules of this course to complete before this one unlocks"
    )
    unlock_at: AwareDatetime | None = Field(
        default=None, description="Locked for everyone before this moment"
    )
    unlock_after_days: Annotated[int, Field(ge=0, le=MAX_UNLOCK_DAYS)] | None = Field(
        default=None, description="Locked until this many days after the learner's enrolled_at"
    )
    sequential: bool = Field(
        default=False, description="Items unlock one after another, each when the one before is met"
    )

    _nul = field_validator("title")(no_nul)


class StaffRole(StrEnum):
    co_instructor = "co_instructor"
    teaching_assistant = "teaching_assistant"


MAX_STAFF = 100
MAX_WAITLIST = 1_000_000


class StaffMember(_Strict):
    """A member of the course's staff, by the `sub` of their tokens (CONTRACT §5.2)."""

    user_id: Id
    role: StaffRole


WaitlistCapacity = Annotated[int, Field(ge=0, le=MAX_WAITLIST)]


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
    prerequisite_course_ids: Annotated[list[Id], Field(max_length=MAX_PREREQUISITES)] = Field(
        default=[], description="Courses a learner must complete before enrolling in this one"
    )
    waitlist_capacity: WaitlistCapacity | None = Field(
        default=None, description="Learners who may wait for a seat (null and 0: no waitlist)"
    )
    staff: Annotated[list[StaffMember], Field(max_length=MAX_STAFF)] = Field(
        default=[], description="Co-instructors and teaching assistants (owner and admins set it)"
    )

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
    prerequisite_course_ids: Annotated[list[Id], Field(max_length=MAX_PREREQUISITES)] | None = None
    waitlist_capacity: WaitlistCapacity | None = None
    staff: Annotated[list[StaffMember], Field(max_length=MAX_STAFF)] | None = None

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
        "prerequisite_course_ids",
        "staff",
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

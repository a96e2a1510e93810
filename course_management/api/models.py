"""Response shapes of the HTTP API (CONTRACT §3), for the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from course_management.domain.course_fields import ItemType, Level, RequirementType, Status


class Instructor(BaseModel):
    id: str
    name: str


class Item(BaseModel):
    id: str
    type: ItemType
    title: str
    position: int
    content_key: str | None
    duration_seconds: int | None
    max_score: float | None
    due_at: str | None
    completion: Completion = Field(description="The item's requirement (CONTRACT §5.1)")


class Completion(BaseModel):
    type: RequirementType
    min_score: float | None = Field(description="Set for `min_score` only")


class Module(BaseModel):
    id: str
    title: str
    position: int
    items: list[Item]
    prerequisite_module_ids: list[str] = Field(
        description="Modules of this course to complete before this one unlocks"
    )
    unlock_at: str | None = Field(description="Locked for everyone before this moment")
    unlock_after_days: int | None = Field(
        description="Locked until this many days after the learner's `enrolled_at`"
    )
    sequential: bool = Field(description="Items unlock one after another")


class Rating(BaseModel):
    average: float | None
    count: int


class StaffMember(BaseModel):
    user_id: str
    role: Literal["co_instructor", "teaching_assistant"]


class _CourseFields(BaseModel):
    """What a course read and a catalog summary share."""

    id: str
    title: str
    description: str
    category: str
    tags: list[str]
    level: Level
    language: str
    status: Status
    instructor: Instructor
    capacity: int | None
    enrollment_opens_at: str | None
    enrollment_closes_at: str | None
    rating: Rating
    enrollment_count: int
    version: int
    created_at: str
    updated_at: str
    published_at: str | None = Field(
        description="When the course was first published (null while a draft)"
    )
    prerequisite_course_ids: list[str] = Field(
        description="Courses a learner must complete before enrolling in this one"
    )
    waitlist_capacity: int | None = Field(
        default=None, description="Learners who may wait for a seat (null and 0: no waitlist)"
    )
    waitlist_count: int = Field(default=0, description="Learners waiting for a seat now")
    staff: list[StaffMember] = Field(
        default=[], description="Co-instructors and teaching assistants, by their `sub`"
    )


class Course(_CourseFields):
    """A course as readers see it. `version`, `updated_at` and the course events move only
    with its authors' changes; `enrollment_count` and `rating` change without them."""

    modules: list[Module]


class CourseModules(BaseModel):
    course_id: str
    version: int
    modules: list[Module]


class PresignedRequest(BaseModel):
    method: str
    url: str
    headers: dict[str, str] = {}


class PresignedPart(BaseModel):
    part_number: int
    method: str
    url: str
    size_bytes: int = Field(description="The exact length this part's URL was signed for")


class MultipartUpload(BaseModel):
    upload_id: str
    part_size_bytes: int
    parts: list[PresignedPart]
    complete: dict[str, str]
    abort: dict[str, str]


class UploadGrant(BaseModel):
    key: str
    content_type: str
    size_bytes: int
    max_size_bytes: int
    expires_in_seconds: int
    single: PresignedRequest | None = None
    multipart: MultipartUpload | None = None


class ItemState(BaseModel):
    item_id: str
    status: Literal["not_started", "started", "completed", "failed"] = Field(
        description="`failed`: a `completed` report below the item's `min_score`"
    )
    score: float | None = Field(description="The best score reported")
    completed_at: str | None
    locked: bool = Field(description="The learner may not report on it now")


class ModuleState(BaseModel):
    module_id: str
    state: Literal["locked", "unlocked", "started", "completed"]
    unlocks_at: str | None = Field(
        description="When the module's time lock opens for this learner (null: none applies)"
    )


class Progress(BaseModel):
    completed_items: int
    total_items: int
    percent: float
    completed_at: str | None
    last_activity_at: str | None
    next_item_id: str | None = Field(
        description="The first unlocked item whose requirement is not met"
    )
    items: list[ItemState] = Field(description="Each item's state, in course order")
    modules: list[ModuleState] = Field(description="Each module's state, in course order")


class Enrollment(BaseModel):
    course_id: str
    user_id: str
    status: Literal["active", "completed", "cancelled", "waitlisted"]
    enrolled_at: str | None = Field(
        description="Null for a learner who waited for a seat and was never enrolled"
    )
    progress: Progress
    waitlist_position: int | None = Field(
        default=None, description="`waitlisted` only: the learner's place in the queue (1 is next)"
    )
    cancel_reason: str | None = Field(
        default=None,
        description="The problem type of the rule that took the learner off the waitlist",
    )


class EnrollmentPage(BaseModel):
    items: list[Enrollment]
    next_cursor: str | None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool]


class CourseSummary(_CourseFields):
    """A course as the catalog lists it: everything but its modules, with their counts
    and total duration (the structure: `GET /api/v1/courses/{courseId}/modules`)."""

    module_count: int
    item_count: int
    duration_seconds: int = Field(description="The items' `duration_seconds`, summed")


class CoursePage(BaseModel):
    items: list[CourseSummary]
    next_cursor: str | None
    facets: dict[str, dict[str, int]] = Field(
        description="Counts per `category`, `level` and `language` for the filtered set "
        "(all pages of it), as `{value: count}`, largest first"
    )


class RatingResult(BaseModel):
    course_id: str
    user_id: str
    stars: int
    review: str | None
    rated_at: str
    course_rating: Rating


class RatingView(BaseModel):
    user_id: str
    stars: int
    review: str | None
    rated_at: str


class RatingPage(BaseModel):
    items: list[RatingView]
    next_cursor: str | None


class Webhook(BaseModel):
    id: str
    url: str
    event_types: list[str]
    course_id: str | None
    created_at: str


class WebhookCreated(Webhook):
    secret: str = Field(
        description="`whsec_<base64>`: the signing key of `webhook-signature` (Standard "
        "Webhooks), shown in this reply only"
    )


class WebhookStatus(Webhook):
    status: Literal["active", "failing", "paused"] = Field(
        description="`failing` while its oldest undelivered event is being retried; "
        "`paused` by an operator (`course-management ops webhooks pause`)"
    )
    last_delivery_at: str | None
    last_error: str | None
    failing_since: str | None
    pending: int = Field(
        description="Records of its event topics' partitions not yet passed: an upper "
        "bound on the events still to deliver (0: caught up)"
    )

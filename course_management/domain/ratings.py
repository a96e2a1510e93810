"""Ratings: one per student and course, ever, replaced by re-posting. Pure. The rating
lives on the student's one enrollment record, which cancelling and enrolling again keep,
so a rating is never counted twice.

A rating is a course command (`rate_course`), applied by the agent that owns the course,
so the average never races. The totals (the stars summed, the count) live on the
course's seats record, beside the seats taken: what readers see of a course next to what
its authors wrote. A rating changes no course `version`, `updated_at` or event (decision
52); it moves the seats record's `seq`, which the catalog's and the cache's versions
follow. The student's stars on their enrollment record are how a replacement knows what
to take away. A unit holds the seats record, the enrollment and the remembered command
together (decision 49), so a redelivered command is answered from the course record's
`recent` list and never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from course_management.domain.commands import CourseCommand, live_course, remember
from course_management.domain.course_fields import no_nul
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind, Reply, invalid_from
from course_management.domain.path_rules import with_path_defaults
from course_management.domain.records import (
    Course,
    CourseRecord,
    EnrollmentRecord,
    RatingRecord,
    SeatsRecord,
)
from course_management.domain.times import rfc3339

MAX_REVIEW_CHARS = 2000


Review = Annotated[str, StringConstraints(max_length=MAX_REVIEW_CHARS), AfterValidator(no_nul)]


class RatingInput(BaseModel):
    """`POST /api/v1/courses/{courseId}/ratings`."""

    model_config = ConfigDict(extra="forbid")

    stars: Annotated[int, Field(ge=1, le=5, strict=True)]
    review: Review | None = None


@dataclass(frozen=True)
class RatingDecision:
    record: CourseRecord | None  # the course record to write: the command remembered
    seats: SeatsRecord | None  # the seats record to write, with the new totals
    enrollment: EnrollmentRecord | None  # the enrollment record to write (None: unchanged)
    reply: Reply


def _refuse(refusal: Refusal) -> RatingDecision:
    return RatingDecision(None, None, None, Reply.refusing(refusal))


def average(total: int, count: int) -> float | None:
    return round(total / count, 2) if count else None


def rating_totals(record: CourseRecord | None, seats: SeatsRecord) -> tuple[int, int]:
    """(stars summed, count) of a course's ratings: on its seats record; for a course not
    rated since decision 52, still on its course record (`rating_sum`, `course.rating`)."""
    if "rating_count" in seats:
        return int(seats.get("rating_sum", 0)), int(seats["rating_count"])
    course = (record or {}).get("course") or {}
    legacy = course.get("rating") or {}
    return int((record or {}).get("rating_sum", 0)), int(legacy.get("count") or 0)


def course_rating(record: CourseRecord | None, seats: SeatsRecord) -> dict[str, Any]:
    """The course's public `rating`: {average, count}."""
    total, count = rating_totals(record, seats)
    return {"average": average(total, count), "count": count}


def as_read(course: Course, record: CourseRecord | None, seats: SeatsRecord) -> Course:
    """The course as readers see it: what its authors wrote, with the seats taken and
    the rating (neither makes a course version)."""
    shown: Course = {
        "waitlist_capacity": None,
        "staff": [],
        **with_path_defaults(course),
        "enrollment_count": int(seats["count"]),
        "waitlist_count": int(seats.get("waiting", 0)),
        "rating": course_rating(record, seats),
    }
    if course.get("published_at") is None:  # a draft, or made before decision 53
        shown["published_at"] = None if course["status"] == "draft" else course["created_at"]
    return shown


def decide_rating(
    record: CourseRecord | None,
    seats: SeatsRecord,
    enrollment: EnrollmentRecord | None,
    command: CourseCommand,
) -> RatingDecision:
    try:
        given = RatingInput.model_validate(command.payload)
    except ValidationError as exc:
        return _refuse(invalid_from(exc))
    rating: RatingRecord = {
        "stars": given.stars,
        "review": given.review,
        "rated_at": rfc3339(command.occurred_at),
    }
    for seen in (record or {}).get("recent", []):
        if seen["command_id"] == command.command_id:  # a repeat: its first answer
            return RatingDecision(None, None, None, Reply(seen["outcome"], seen["body"]))
    course = live_course(record, command.actor)
    if record is None or course is None:
        return _refuse(Refusal(RefusalKind.COURSE_NOT_FOUND, f"no course {command.course_id}"))
    if enrollment is None or enrollment.get("status") == "waitlisted":
        return _refuse(
            Refusal(RefusalKind.NOT_ENROLLED, "only a student enrolled in the course may rate it")
        )
    if enrollment.get("status") == "cancelled":
        return _refuse(
            Refusal(
                RefusalKind.ENROLLMENT_CANCELLED,
                "the enrollment was cancelled; enrol again to rate the course",
            )
        )
    old = enrollment.get("rating")
    if old and old["stars"] == rating["stars"] and old.get("review") == rating["review"]:
        reply = Reply(Outcome.UNCHANGED, _reply_body(command, old, course_rating(record, seats)))
        return RatingDecision(remember(record, command.command_id, reply), None, None, reply)
    total, count = rating_totals(record, seats)
    total += given.stars - (int(old["stars"]) if old else 0)
    count += 0 if old else 1
    rated: SeatsRecord = {
        **seats,
        "seq": seats["seq"] + 1,
        "rating_sum": total,
        "rating_count": count,
    }
    reply = Reply(Outcome.APPLIED, _reply_body(command, rating, course_rating(record, rated)))
    return RatingDecision(
        remember(record, command.command_id, reply),
        rated,
        {**enrollment, "rating": rating},
        reply,
    )


def _reply_body(
    command: CourseCommand, rating: RatingRecord, course_rating: dict[str, Any]
) -> dict[str, Any]:
    return {
        "course_id": command.course_id,
        "user_id": command.actor.id,
        **rating,
        "course_rating": course_rating,
    }

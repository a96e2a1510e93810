"""Ratings: one per student and course, ever, replaced by re-posting; the course keeps the
sum. Pure. The rating lives on the student's one enrollment record, which cancelling and
enrolling again keep, so a rating is never counted twice.

A rating is a course command (`rate_course`), applied by the agent that owns the course,
so the average never races. The course record keeps `rating_sum` beside the public
`rating` (average, count); the student's stars live on their enrollment record, which
is how a replacement knows what to take away.

Crash safety: the course record is written first and remembers the command; a
redelivered command finds it remembered and only (re)writes the enrollment's rating,
which is idempotent. The sum is never applied twice.
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

from course_management.domain.commands import CourseCommand, course_event, live_course, remember
from course_management.domain.course import no_nul, rfc3339, with_new_version
from course_management.domain.events import CourseEvent
from course_management.domain.outcomes import Outcome, Refusal, RefusalKind, Reply, invalid_from
from course_management.domain.records import CourseRecord, EnrollmentRecord, RatingRecord

MAX_REVIEW_CHARS = 2000


Review = Annotated[str, StringConstraints(max_length=MAX_REVIEW_CHARS), AfterValidator(no_nul)]


class RatingInput(BaseModel):
    """`POST /api/v1/courses/{courseId}/ratings`."""

    model_config = ConfigDict(extra="forbid")

    stars: Annotated[int, Field(ge=1, le=5, strict=True)]
    review: Review | None = None


@dataclass(frozen=True)
class RatingDecision:
    record: CourseRecord | None  # the course record to write (None: unchanged)
    enrollment: EnrollmentRecord | None  # the enrollment record to write (None: unchanged)
    event: CourseEvent | None  # course_updated, to publish
    reply: Reply


def _refuse(refusal: Refusal) -> RatingDecision:
    return RatingDecision(None, None, None, Reply.refusing(refusal))


def average(total: int, count: int) -> float | None:
    return round(total / count, 2) if count else None


def decide_rating(
    record: CourseRecord | None, enrollment: EnrollmentRecord | None, command: CourseCommand
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
    rated: EnrollmentRecord | None = (
        None if enrollment is None else {**enrollment, "rating": rating}
    )
    for seen in (record or {}).get("recent", []):
        if seen["command_id"] == command.command_id:  # redelivered: finish the second write
            again = rated if enrollment and enrollment.get("rating") != rating else None
            return RatingDecision(None, again, None, Reply(seen["outcome"], seen["body"]))
    course = live_course(record, command.actor)
    if record is None or course is None:
        return _refuse(Refusal(RefusalKind.COURSE_NOT_FOUND, f"no course {command.course_id}"))
    if enrollment is None:
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
    count = int(course["rating"]["count"])
    total = int(record.get("rating_sum", 0))
    if old and old["stars"] == rating["stars"] and old.get("review") == rating["review"]:
        reply = Reply(Outcome.UNCHANGED, _reply_body(command, old, course["rating"]))
        return RatingDecision(remember(record, command.command_id, reply), None, None, reply)
    total += given.stars - (int(old["stars"]) if old else 0)
    count += 0 if old else 1
    changed = with_new_version(
        {**course, "rating": {"average": average(total, count), "count": count}},
        command.occurred_at,
    )
    reply = Reply(Outcome.APPLIED, _reply_body(command, rating, changed["rating"]))
    new_record = remember(
        {**record, "course": changed, "rating_sum": total}, command.command_id, reply
    )
    return RatingDecision(
        new_record,
        rated,
        course_event(command, "course_updated", changed, changed["version"]),
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

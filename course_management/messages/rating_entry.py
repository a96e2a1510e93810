"""`RatingEntry` on the compacted course-management-ratings (schemas/rating_entry.avsc): a
student's rating of a course as it is now, keyed "<course id>:<user id>", for the ratings
list in the mirror."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from course_management.topology import COURSE_RATINGS, spec

TOPIC = COURSE_RATINGS
SUBJECT = spec(TOPIC).subject


@dataclass(frozen=True)
class RatingEntry:
    course_id: str
    user_id: str
    course_version: int  # the course's version when it was rated
    seq: int  # the course's seats seq the rating made: (course_version, seq) orders them
    stars: int
    review: str | None
    rated_at: str  # RFC 3339 UTC

    @property
    def key(self) -> str:
        return f"{self.course_id}:{self.user_id}"

    @property
    def order(self) -> tuple[int, int]:
        """Grows with every rating of the course (a rating made a course version before
        decision 52, with `seq` 0; since, it moves the seats seq)."""
        return (self.course_version, self.seq)


def encode(entry: RatingEntry) -> dict[str, Any]:
    return asdict(entry)


def decode(value: dict[str, Any]) -> RatingEntry:
    return RatingEntry(
        course_id=value["course_id"],
        user_id=value["user_id"],
        course_version=int(value["course_version"]),
        seq=int(value.get("seq", 0)),
        stars=int(value["stars"]),
        review=value.get("review"),
        rated_at=value["rated_at"],
    )

"""The events the course agent's decisions publish, typed (their wire form:
messages/course_event.py, messages/enrollment_event.py). Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from course_management.domain.records import Course


class CourseEvent(TypedDict):
    """course_created, course_updated, course_deleted (CONTRACT §4)."""

    event_id: str  # derived from the command: a re-decided command has the same id
    event_type: str
    occurred_at: datetime
    course_id: str
    version: int
    actor_id: str
    course: Course | None  # the snapshot after the change (None: deleted)


class EnrollmentEvent(TypedDict):
    """enrollment_created, enrollment_cancelled, progress_updated, course_completed."""

    event_id: str  # derived from the input
    event_type: str
    occurred_at: datetime
    course_id: str
    user_id: str
    version: int  # the enrollment's version after the change
    enrollment: dict[str, Any]  # its public view, with `completed_item_ids`
    reactivated: bool | None  # enrollment_created: a cancelled enrollment enrolled again
    item_id: str | None  # progress_updated, course_completed: the item reported
    module_id: str | None  # the module of item_id


class LearnerMilestone(TypedDict):
    """A moment of a learner's path (CONTRACT §5.5, learner-milestones): `module_unlocked`
    (with `module_id`); `event_type` is a string so that later kinds break no reader."""

    event_id: str  # module_unlocked: derived from course, learner and module (once, ever)
    event_type: str
    occurred_at: datetime
    course_id: str
    user_id: str
    module_id: str | None
    waitlist_position: int | None
    reason: str | None
    enrollment_version: int | None  # the learner's version then: orders it among the events

"""What an enrollment decision changes, staged in the batch: the enrollment events and
milestones, a completion's entry, the seats record (and the catalog), the waitlist's
tickets, the enrollment record and its Redis entry. One place for every enrollment
handler (streams/enrollment_handlers.py) and the waitlist's admissions
(streams/waitlist.py)."""

from __future__ import annotations

from course_management.domain.enrollment import EnrollmentDecision
from course_management.domain.records import course_of
from course_management.infra.metrics import ENROLLMENTS_APPLIED, MILESTONES
from course_management.messages import completion_entry, enrollment_event, learner_milestone
from course_management.streams.batch import Batch
from course_management.tables.keys import wait_key

_APPLIED = {  # the counter of each event type, looked up once
    kind: ENROLLMENTS_APPLIED.labels(kind)
    for kind in (
        "enrollment_created",
        "enrollment_cancelled",
        "progress_updated",
        "course_completed",
    )
}


def stage_enrollment_change(
    batch: Batch, course_id: str, user_id: str, decision: EnrollmentDecision
) -> None:
    """The events and milestones, the table writes, the seat count and (seats changed)
    the catalog."""
    topic, subject = enrollment_event.TOPIC, enrollment_event.SUBJECT
    batch.stage_records(
        [(topic, course_id, subject, enrollment_event.encode(e)) for e in decision.events]
    )
    for event in decision.events:
        _APPLIED[event["event_type"]].inc()
    for milestone in decision.milestones:
        MILESTONES.labels(milestone["event_type"]).inc()
    if decision.enrollment is not None and any(
        e["event_type"] == "course_completed" for e in decision.events
    ):  # for enrolments elsewhere that require this course (decision 57)
        entry = completion_entry.CompletionEntry(
            user_id, course_id, str(decision.enrollment["completed_at"])
        )
        encoded = completion_entry.encode(entry)
        batch.stage_records(
            [(completion_entry.TOPIC, entry.key, completion_entry.SUBJECT, encoded)]
        )
    batch.stage_records(
        [
            (learner_milestone.TOPIC, course_id, learner_milestone.SUBJECT, m)
            for m in map(learner_milestone.encode, decision.milestones)
        ]
    )
    if decision.seats is not None:
        batch.stage_seats(course_id, decision.seats)
        batch.stage_catalog(course_id)
    for ticket, waiting in decision.queue:  # the waitlist's tickets taken or handed out
        batch.put(wait_key(course_id, ticket), waiting)
    if decision.enrollment is not None:
        course = course_of(batch.course_record(course_id))
        view = decision.new_view
        drawn = (int(course["version"]), view) if course is not None and view is not None else None
        batch.stage_enrollment(course_id, user_id, decision.enrollment, drawn)
    batch.stage_course_state(course_id)

"""Applying enrollment inputs (user_enrolled, cancel) next to their course.

Called by the course partition agent (streams/course_commands.py), which is the only
writer of the `courses` and `enrollments` tables for its partitions.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import TYPE_CHECKING, Any

from course_management.domain.enrollment import (
    EMPTY_SEATS,
    CancelInput,
    EnrollInput,
    EnrollmentDecision,
    ProgressInput,
    decide_cancel,
    decide_enroll,
    decide_progress,
    seat_change,
    settle_seats,
)
from course_management.domain.ratings import decide_rating
from course_management.infra.avro import AvroDecodeError
from course_management.infra.metrics import ENROLLMENTS_APPLIED
from course_management.streams.catalog import catalog_entry, catalog_record
from course_management.tables.courses import course_of
from course_management.tables.enrollments import enrollment_key, seats_key
from course_management.topology import (
    CORRELATION_HEADER,
    COURSE_EVENTS,
    COURSE_PROGRESS,
    ENROLLMENT_EVENTS,
    REPLY_TO_HEADER,
    SOURCE_KEY_HEADER,
    USER_ENROLLED,
)

if TYPE_CHECKING:
    from course_management.runtime import Runtime
    from course_management.streams.batch import Batch

log = logging.getLogger(__name__)


class EnrollmentApplier:
    """Decides enrollment inputs against the batch's view of the tables; its effects go
    to the batch (streams/batch.py), which applies them after the whole batch."""

    def __init__(self, runtime: Runtime, batch: Batch) -> None:
        self.runtime = runtime
        self.batch = batch
        self.courses = batch.courses
        self.enrollments = batch.enrollments

    async def user_enrolled(self, event: Any) -> None:
        headers = event.headers or {}
        try:
            value = await self.runtime.codec.decode(f"{USER_ENROLLED}-value", event.value)
        except AvroDecodeError as exc:  # the router checked it; this is defensive
            self.batch.dead_letter(USER_ENROLLED, event.key, event.value, str(exc), "malformed")
            return
        enroll = EnrollInput(
            event_id=value["event_id"],
            course_id=value["course_id"],
            user_id=value["user_id"],
            occurred_at=value["occurred_at"].astimezone(UTC),
            source=value["source"],
        )
        decision = decide_enroll(
            course_of(self.courses.get(enroll.course_id)),
            (await self.seats(enroll.course_id))["count"],
            self.enrollments.get(enrollment_key(enroll.course_id, enroll.user_id)),
            enroll,
        )
        await self.apply(enroll.course_id, enroll.user_id, decision)
        if decision.problem is not None:
            await self._dead_letter(USER_ENROLLED, event, decision)
        await self.reply(headers, decision)

    async def item_progress(self, event: Any) -> None:
        try:
            value = await self.runtime.codec.decode(f"{COURSE_PROGRESS}-value", event.value)
        except AvroDecodeError as exc:
            self.batch.dead_letter(COURSE_PROGRESS, event.key, event.value, str(exc), "malformed")
            return
        progress = ProgressInput(
            event_id=value["event_id"],
            course_id=value["course_id"],
            user_id=value["user_id"],
            item_id=value["item_id"],
            status=value["status"],
            score=value["score"],
            occurred_at=value["occurred_at"].astimezone(UTC),
        )
        key = enrollment_key(progress.course_id, progress.user_id)
        course = course_of(self.courses.get(progress.course_id))
        decision = decide_progress(course, self.enrollments.get(key), progress)
        await self.apply(progress.course_id, progress.user_id, decision)
        if decision.problem is not None:
            await self._dead_letter(COURSE_PROGRESS, event, decision)
        await self.reply(event.headers or {}, decision, progress_only=True)

    async def _dead_letter(self, topic: str, event: Any, decision: EnrollmentDecision) -> None:
        assert decision.problem is not None
        code = decision.problem.type.rsplit("/", 1)[-1]
        detail = decision.problem.detail
        key = (event.headers or {}).get(SOURCE_KEY_HEADER, event.key)  # as it was on `topic`
        self.batch.dead_letter(topic, key, event.value, f"{code}: {detail}", code)

    async def cancel(self, command: Any, reply_to: str | None) -> None:
        """A `cancel_enrollment` course command (from the DELETE route)."""
        payload = command.payload
        cancel = CancelInput(
            event_id=command.command_id,
            course_id=command.course_id,
            user_id=str(payload.get("user_id", "")),
            occurred_at=command.occurred_at,
        )
        decision = decide_cancel(
            course_of(self.courses.get(cancel.course_id)),
            (await self.seats(cancel.course_id))["count"],
            self.enrollments.get(enrollment_key(cancel.course_id, cancel.user_id)),
            cancel,
        )
        await self.apply(cancel.course_id, cancel.user_id, decision)
        if reply_to:
            await self.reply(
                {
                    REPLY_TO_HEADER: reply_to.encode(),
                    CORRELATION_HEADER: command.command_id.encode(),
                },
                decision,
            )

    async def apply(self, course_id: str, user_id: str, decision: EnrollmentDecision) -> None:
        """The events and the catalog entry, the table writes and the seat count, to the
        batch (which applies them in that order)."""
        outgoing = [
            (ENROLLMENT_EVENTS, course_id, f"{ENROLLMENT_EVENTS}-value", event)
            for event in decision.events
        ]
        seats = None
        if decision.seats_taken is not None:
            seats, _ = seat_change(await self.seats(course_id), user_id, decision.seats_taken)
            entry = catalog_entry(course_id, self.courses.get(course_id), seats)
            if entry is not None:
                outgoing.append(catalog_record(entry))
        self.batch.publish(outgoing)
        for event in decision.events:
            ENROLLMENTS_APPLIED.labels(event["event_type"]).inc()
        enrollment = decision.enrollment
        if seats is not None:
            self.enrollments[seats_key(course_id)] = seats  # first: see settle_seats
            assert enrollment is not None
            enrollment = {**enrollment, "seat_seq": seats["seq"]}
        if enrollment is not None:
            self.enrollments[enrollment_key(course_id, user_id)] = enrollment
        self.batch.cache_current_seats(course_id)

    async def publish_course_change(
        self, course_id: str, event: dict[str, Any], record: dict[str, Any]
    ) -> None:
        """A course's event and its catalog entry, acked together (before any table write)."""
        outgoing = [(COURSE_EVENTS, course_id, f"{COURSE_EVENTS}-value", event)]
        entry = catalog_entry(course_id, record, await self.seats(course_id))
        if entry is not None:
            outgoing.append(catalog_record(entry))
        self.batch.publish(outgoing)

    async def rate(self, command: Any, reply_to: str | None) -> None:
        """A `rate_course` course command: course record first, then the enrollment."""
        key = enrollment_key(command.course_id, command.actor.id)
        decision = decide_rating(
            self.courses.get(command.course_id), self.enrollments.get(key), command
        )
        if decision.event is not None and decision.record is not None:
            await self.publish_course_change(command.course_id, decision.event, decision.record)
        if decision.record is not None:
            self.courses[command.course_id] = decision.record  # first: see domain.ratings
        if decision.enrollment is not None:
            self.enrollments[key] = decision.enrollment
        self.batch.cache_current_course(command.course_id)
        if reply_to:
            self.batch.reply(
                reply_to, command.command_id, decision.reply.status, decision.reply.body
            )

    async def seats(self, course_id: str) -> dict[str, Any]:
        """The course's seats record, settled after a crash (see domain.enrollment)."""
        seats = self.enrollments.get(seats_key(course_id)) or EMPTY_SEATS
        if seats.get("pending"):
            pending_user = seats["pending"]["user_id"]
            settled = settle_seats(
                seats, self.enrollments.get(enrollment_key(course_id, pending_user))
            )
            self.enrollments[seats_key(course_id)] = settled
            return settled
        return dict(seats)

    async def reply(
        self, headers: dict[str, bytes], decision: EnrollmentDecision, progress_only: bool = False
    ) -> None:
        reply_to = headers.get(REPLY_TO_HEADER)
        correlation = headers.get(CORRELATION_HEADER)
        if not reply_to or not correlation:
            return
        if decision.problem is not None:
            body: Any = decision.problem.to_dict()
        elif progress_only and decision.reply_enrollment is not None:
            body = decision.reply_enrollment["progress"]
        else:
            body = decision.reply_enrollment
        self.batch.reply(reply_to.decode(), correlation.decode(), decision.status, body)

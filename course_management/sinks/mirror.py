"""The PostgreSQL mirror: `course-events`, `enrollment-events`, `learner-milestones` and
the internal ratings topic -> the mirror tables (courses, enrollments and their status
changes, waitlists, ratings) and history (every course version with its changes, every
change to a learner's record: infra/history_mirror.py).

Handlers of the `postgres` consumer group (topology.POSTGRES_GROUP; it also feeds the
catalog table, sinks/catalog.py). Each write is version-guarded, so a replayed batch
changes nothing; while PostgreSQL is unreachable the handler waits, it never skips.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
from aiokafka import ConsumerRecord

from course_management.domain.learner_history import enrollment_row, milestone_row
from course_management.infra.avro import AvroCodec
from course_management.infra.database import UNAVAILABLE as PG_UNAVAILABLE
from course_management.infra.database import Database, mirror_course_event
from course_management.infra.dead_letters import DeadLetter, decode_or_dead_letter
from course_management.infra.enrollment_mirror import mirror_enrollment_events, mirror_ratings
from course_management.infra.history_mirror import mirror_course_versions, mirror_learner_history
from course_management.infra.job_mirror import mirror_job_progress
from course_management.infra.kafka import request_id
from course_management.infra.metrics import EVENTS_MIRRORED
from course_management.infra.retrying import until_written
from course_management.infra.waitlist_mirror import mirror_waitlist
from course_management.messages import (
    course_event,
    enrollment_event,
    job_progress,
    learner_milestone,
    rating_entry,
)
from course_management.topology import COURSE_EVENTS, spec

WriteBatch = Callable[[asyncpg.Pool, list[Any]], Awaitable[int]]


def _history_row(record: ConsumerRecord, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "source_offset": record.offset, "request_id": request_id(record)}


class Message(Protocol):
    """A wire message's module (messages/): its topic, and how its records decode."""

    TOPIC: str

    def decode(self, value: dict[str, Any]) -> Any: ...


class EventMirror:
    def __init__(self, codec: AvroCodec, database: Database, dead_letter: DeadLetter) -> None:
        self._codec = codec
        self._database = database
        self._dead_letter = dead_letter

    async def course_events(self, records: list[ConsumerRecord]) -> None:
        """Course events are few, each with modules and items: one transaction each; then
        the batch's versions, with their changes, in one."""
        pool = self._database.pool
        versions: list[tuple[Any, str | None]] = []
        for record in records:
            value = await decode_or_dead_letter(
                self._codec,
                spec(COURSE_EVENTS),
                record.key,
                record.value,
                self._dead_letter,
                parse=course_event.decode,
            )
            if value is None:
                continue
            versions.append((value, request_id(record)))
            changed = await until_written(
                PG_UNAVAILABLE, functools.partial(mirror_course_event, pool, value)
            )
            EVENTS_MIRRORED.labels("course", "applied" if changed else "skipped").inc()
        written = await until_written(
            PG_UNAVAILABLE, functools.partial(mirror_course_versions, pool, versions)
        )
        EVENTS_MIRRORED.labels("course_version", "applied").inc(written)

    async def enrollment_events(self, records: list[ConsumerRecord]) -> None:
        """Many per course: one statement for the whole batch, and one for its rows of
        the learners' histories."""
        taken = await self._batch(records, enrollment_event, mirror_enrollment_events, "enrollment")
        rows = [_history_row(record, enrollment_row(value)) for record, value in taken]
        await self._history(rows)

    async def milestones(self, records: list[ConsumerRecord]) -> None:
        """The waitlist milestones -> the waitlists, by their offsets (queue order); every
        milestone -> its learner's history."""
        taken: list[tuple[int, Any]] = []
        rows: list[dict[str, Any]] = []
        for record in records:
            value = await decode_or_dead_letter(
                self._codec,
                spec(learner_milestone.TOPIC),
                record.key,
                record.value,
                self._dead_letter,
                parse=learner_milestone.decode,
            )
            if value is not None:
                taken.append((record.offset, value))
                rows.append(_history_row(record, milestone_row(value)))
        pool = self._database.pool
        applied = await until_written(
            PG_UNAVAILABLE, functools.partial(mirror_waitlist, pool, taken)
        )
        EVENTS_MIRRORED.labels("milestone", "applied").inc(applied)
        await self._history(rows)

    async def _history(self, rows: list[dict[str, Any]]) -> None:
        pool = self._database.pool
        written = await until_written(
            PG_UNAVAILABLE, functools.partial(mirror_learner_history, pool, rows)
        )
        EVENTS_MIRRORED.labels("learner_history", "applied").inc(written)

    async def job_progress(self, records: list[ConsumerRecord]) -> None:
        """Bulk enrolment jobs: their counts and each row's outcome."""
        await self._batch(records, job_progress, mirror_job_progress, "job")

    async def ratings(self, records: list[ConsumerRecord]) -> None:
        """Each student's rating as it is now: one statement for the batch."""
        await self._batch(records, rating_entry, mirror_ratings, "rating")

    async def _batch(
        self, records: list[ConsumerRecord], message: Message, write: WriteBatch, kind: str
    ) -> list[tuple[ConsumerRecord, Any]]:
        """Decode the batch (dead-lettering what does not decode), write it in one
        statement, waiting while PostgreSQL is unreachable, and count what changed.
        Returns the records that decoded, with their values."""
        taken = [
            (record, value)
            for record in records
            if (
                value := await decode_or_dead_letter(
                    self._codec,
                    spec(message.TOPIC),
                    record.key,
                    record.value,
                    self._dead_letter,
                    parse=message.decode,
                )
            )
            is not None
        ]
        values = [value for _, value in taken]
        pool = self._database.pool
        applied = await until_written(PG_UNAVAILABLE, functools.partial(write, pool, values))
        EVENTS_MIRRORED.labels(kind, "applied").inc(applied)
        EVENTS_MIRRORED.labels(kind, "skipped").inc(len(values) - applied)
        return taken

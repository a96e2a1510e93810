"""A batch of the course agent's inputs: decided one by one, their effects applied together.

The course agent (streams/agent.py) takes its inputs in batches. Each input is
decided in order against the tables *plus the batch's own earlier writes* (`Overlay`),
so every decision is the one it would be alone; its effects are staged here
(`stage_*`) and applied once for the whole batch (`apply`), in the order that keeps
decision 3's guarantee:

1. every event and the last catalog entry of each course is published, and all their
   acks awaited (one round trip for the batch instead of one per input);
2. the inputs that could not be applied, to their dead-letter topics (acked). They are
   effects like the events: before the table writes, which carry each input's tracking
   (streams/tracking.py). Sent after the writes, a crash between the two left inputs
   marked applied whose dead letters never went out, and the restarted agent skipped
   them: records neither applied nor dead-lettered (found by the chaos run, issue 15);
3. the table writes, in order, each under its own input's Faust event (Faust takes the
   RocksDB and changelog partition from the current event);
4. Redis: the entry of each course and enrollment touched, in one round trip (waiting
   for Redis, decision 22), so readers on any worker never see older than a write
   returns;
5. the replies to waiting HTTP requests (one round trip).

Only then are the inputs acked. A crash anywhere repeats at most this batch, and its
decisions, being deterministic, repeat with the same event ids (consumers deduplicate).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import orjson

from course_management.domain import consistency
from course_management.domain.consistency import Marks
from course_management.domain.enrollment import EMPTY_SEATS, public_view, settle_seats
from course_management.domain.outcomes import Reply
from course_management.infra.cache import CourseEntry, EnrollmentEntry
from course_management.infra.kafka import Headers
from course_management.infra.logs import log_context
from course_management.infra.metrics import AGENT_BATCH_SECONDS
from course_management.infra.publisher import Record
from course_management.infra.retrying import until_cached, until_published
from course_management.streams.faust_compat import as_current_event
from course_management.tables.enrollments import enrollment_key, seats_key
from course_management.tables.records import CourseRecord, EnrollmentRecord, SeatsRecord
from course_management.topology import (
    COURSE_CATALOG,
    REPLY_SUBJECT,
    REQUEST_ID_HEADER,
    is_reply_topic,
)

log = logging.getLogger(__name__)

PHASE_SECONDS = {
    phase: AGENT_BATCH_SECONDS.labels(phase) for phase in ("publish", "tables", "cache", "answer")
}


class Sends(Protocol):
    """What a batch sends through (infra.publisher.Publisher)."""

    async def send_all(self, records: list[Record], headers: list[Headers]) -> None: ...
    async def send_dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None: ...
    async def send_replies(self, replies: list[Record]) -> None: ...


class CachesCourses(Protocol):
    """Where readers find a course's latest state (infra.cache.CourseCache)."""

    async def put_entries(
        self, courses: Sequence[CourseEntry], enrollments: Sequence[EnrollmentEntry]
    ) -> None: ...


def latest_catalog_entries(records: list[Record]) -> list[int]:
    """The places of the records to publish: every event, and only the last catalog entry
    of each course. The catalog topic is compacted and its sinks keep the newest version,
    so the entries an enrolment after another in the same batch superseded would only
    cost writes (one per enrolment, then one per course per batch)."""
    last = {key: i for i, (topic, key, _, _) in enumerate(records) if topic == COURSE_CATALOG}
    return [
        i for i, record in enumerate(records) if record[0] != COURSE_CATALOG or last[record[1]] == i
    ]


def _request_id(event: Any) -> bytes | None:
    """The request id an input carries (from the HTTP request that sent it), if any."""
    headers = getattr(event, "headers", None) or {}
    value = headers.get(REQUEST_ID_HEADER)
    return bytes(value) if value else None


class Overlay:
    """A Faust table as seen by the batch: its own pending writes first."""

    def __init__(self, table: Any, batch: Batch) -> None:
        self.table = table
        self.batch = batch
        self.pending: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key in self.pending:
            return self.pending[key]
        return self.table.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        """Stage a table write (applied by `Batch.apply`, under the current input)."""
        self.pending[key] = value
        self.batch.writes.append((self.table, key, value, self.batch.current))


class Batch:
    """The staged effects of one batch (see the module's docstring for their order)."""

    def __init__(self, courses: Any, enrollments: Any, sends: Sends, cache: CachesCourses) -> None:
        self.courses = Overlay(courses, self)
        self.enrollments = Overlay(enrollments, self)
        self._sends = sends
        self._cache = cache
        self.current: Any = None  # the input being decided
        self.records: list[Record] = []
        self.record_headers: list[Headers] = []  # each record's: its input's request id
        self.writes: list[tuple[Any, str, Any, Any]] = []
        self.cached_courses: set[str] = set()  # courses whose Redis entry is rewritten
        self.enrollment_states: dict[str, EnrollmentRecord] = {}
        self.replies: list[Record] = []
        self.dead_letters: list[tuple[str, bytes | None, bytes | None, str, str]] = []

    def begin(self) -> None:
        for overlay in (self.courses, self.enrollments):
            overlay.pending.clear()
        self.current = None
        self.records.clear()
        self.record_headers.clear()
        self.writes.clear()
        self.cached_courses.clear()
        self.enrollment_states.clear()
        self.replies.clear()
        self.dead_letters.clear()

    @contextmanager
    def deciding(self, event: Any) -> Iterator[None]:
        self.current = event
        message = getattr(event, "message", None)
        with (
            as_current_event(event),
            log_context(
                request_id=_request_id(event),
                course_id=event.key.decode(errors="replace")
                if getattr(event, "key", None)
                else None,
                topic=getattr(message, "topic", None),
                partition=getattr(message, "partition", None),
                offset=getattr(message, "offset", None),
            ),
        ):
            yield

    # -- the tables as the batch sees them (typed) -------------------------------------

    def course_record(self, course_id: str) -> CourseRecord | None:
        record: CourseRecord | None = self.courses.get(course_id)
        return record

    def enrollment(self, course_id: str, user_id: str) -> EnrollmentRecord | None:
        record: EnrollmentRecord | None = self.enrollments.get(enrollment_key(course_id, user_id))
        return record

    def seats(self, course_id: str) -> SeatsRecord:
        """The course's seats record as the batch sees it, settled after a crash (see
        domain.enrollment.settle_seats; the settled record is staged)."""
        seats: SeatsRecord = self.enrollments.get(seats_key(course_id)) or EMPTY_SEATS
        pending = seats.get("pending")
        if pending:
            settled = settle_seats(seats, self.enrollment(course_id, pending["user_id"]))
            self.stage_seats(course_id, settled)
            return settled
        return {"count": seats["count"], "seq": seats["seq"], "pending": None}

    # -- effects, staged: table writes ---------------------------------------------------

    def stage_course_record(self, course_id: str, record: CourseRecord) -> None:
        self.courses[course_id] = record

    def stage_enrollment(self, course_id: str, user_id: str, record: EnrollmentRecord) -> None:
        """The table record, and Redis after it (any worker's point read finds it there
        before the write is answered)."""
        key = enrollment_key(course_id, user_id)
        self.enrollments[key] = record
        self.enrollment_states[key] = record

    def stage_seats(self, course_id: str, seats: SeatsRecord) -> None:
        self.enrollments[seats_key(course_id)] = seats

    # -- effects, staged: the rest -------------------------------------------------------

    def stage_records(self, records: list[Record]) -> None:
        """Events and catalog entries, sent first and together, each with the request id
        of the input it came of (so an HTTP request can be followed into its events)."""
        request_id = _request_id(self.current)
        headers: Headers = [(REQUEST_ID_HEADER, request_id)] if request_id else []
        self.records.extend(records)
        self.record_headers.extend(headers for _ in records)

    def stage_course_state(self, course_id: str) -> None:
        """Redis gets the course, with its seats, as the batch leaves it (readers see a
        change before its writer does): once per course per batch. Also after a duplicate
        input: a crash between the table write and Redis is healed by the redelivery (the
        put is version-guarded)."""
        self.cached_courses.add(course_id)

    def stage_enrollment_state(self, course_id: str, user_id: str) -> None:
        """Redis gets the enrollment as the tables hold it (after a repeat: see
        stage_course_state)."""
        record = self.enrollment(course_id, user_id)
        if record is not None:
            self.enrollment_states[enrollment_key(course_id, user_id)] = record

    def stage_seat_count(self, course_id: str) -> None:
        """Redis gets the course's seats taken as the batch leaves them (its entry holds
        them; also after a duplicate input, as above)."""
        self.cached_courses.add(course_id)

    def _course_entry(self, course_id: str) -> CourseEntry | None:
        record = self.course_record(course_id)
        course = record.get("course") if record else None
        if record is None or course is None:
            return None
        seats = self.enrollments.get(seats_key(course_id)) or EMPTY_SEATS
        return CourseEntry.of(
            course, deleted=bool(record.get("deleted")), count=seats["count"], seq=seats["seq"]
        )

    def _enrollment_entry(self, record: EnrollmentRecord) -> EnrollmentEntry:
        """The record, and its public view drawn against the course as the batch leaves it."""
        course_record = self.course_record(record["course_id"])
        course = course_record.get("course") if course_record else None
        if course is None or (course_record or {}).get("deleted"):
            return EnrollmentEntry(record)
        view = orjson.dumps(public_view(record, course))
        return EnrollmentEntry(record, view, int(course["version"]))

    async def stage_dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None:
        """An input that cannot be applied, kept on `<topic>.dlq` with the batch's events,
        before the table writes that mark it applied. A coroutine, so that it is an
        infra.dead_letters.DeadLetter; it only stages."""
        self.dead_letters.append((topic, key, value, reason, code))

    def stage_reply(
        self, reply_to: str, command_id: str, reply: Reply, marks: Marks | None = None
    ) -> None:
        """Answer the request waiting on `reply_to` for `command_id` (with the consistency
        token of `marks`)."""
        if not is_reply_topic(reply_to):
            log.warning("reply address ignored: not a reply topic", extra={"topic": reply_to})
            return
        record = {
            "command_id": command_id,
            "status": 0,  # superseded by `outcome` (the API maps it to HTTP)
            "outcome": reply.outcome,
            "body_json": json.dumps(reply.body) if reply.body is not None else None,
            "consistency_token": consistency.encode(marks) if marks else None,
        }
        self.replies.append((reply_to, command_id, REPLY_SUBJECT, record))

    # -- applied, together -----------------------------------------------------------

    async def apply(self) -> None:
        """Apply every staged effect, in the order of the module's docstring."""
        sends = self._sends
        started = time.perf_counter()
        if self.records:
            kept = latest_catalog_entries(self.records)
            records = [self.records[i] for i in kept]
            headers = [self.record_headers[i] for i in kept]
            await until_published(functools.partial(sends.send_all, records, headers))
        for dead in self.dead_letters:
            await until_published(functools.partial(sends.send_dead_letter, *dead))
        published = time.perf_counter()
        for table, key, value, event in self.writes:
            with as_current_event(event):
                table[key] = value
        written = time.perf_counter()
        courses = [e for c in self.cached_courses if (e := self._course_entry(c)) is not None]
        enrollments = [self._enrollment_entry(r) for r in self.enrollment_states.values()]
        if courses or enrollments:
            await until_cached(functools.partial(self._cache.put_entries, courses, enrollments))
        cached = time.perf_counter()
        PHASE_SECONDS["publish"].observe(published - started)
        PHASE_SECONDS["tables"].observe(written - published)
        PHASE_SECONDS["cache"].observe(cached - written)
        if self.replies:  # to the workers still there (a stopped one deleted its topic)
            await until_published(functools.partial(sends.send_replies, self.replies))
        PHASE_SECONDS["answer"].observe(time.perf_counter() - cached)

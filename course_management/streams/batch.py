"""A batch of the course agent's inputs: decided one by one, their effects staged per
partition, applied together (streams/apply.py).

Each input is decided in order against the `course-state` table *plus the batch's own
earlier writes*, so every decision is the one it would be alone. What a batch stages on
a partition becomes one unit of the table's changelog (tables/units.py, decision 49):

- the table writes, merged: the last value of each key (a seats record written by 60
  enrolments is one record);
- the tracking of what it applied (streams/tracking.py), once per partition, by the
  same rule;
- its outbox: every event, dead letter and rating entry, encoded once, in decision
  order, then one catalog entry per course, built from the state the batch leaves;
- the Redis entries to rewrite (each course and enrollment touched, once).

- the replies to the requests waiting for its inputs (sent last; kept so that the
  partition's next opener answers them if this worker could not).

Reads decode each key once per batch; the enrollment view an input's decision made is
kept for Redis when the course does not change after it in the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from course_management.catalog.feed import entry_of
from course_management.domain import consistency
from course_management.domain.consistency import Marks
from course_management.domain.enrollment import EMPTY_SEATS
from course_management.domain.outcomes import Reply
from course_management.domain.records import CourseRecord, EnrollmentRecord, SeatsRecord
from course_management.infra.dead_letters import dead_letter_record
from course_management.infra.logs import log_context
from course_management.infra.metrics import DEAD_LETTERS
from course_management.messages import catalog_entry, command_reply
from course_management.messages.command_reply import CommandReply
from course_management.tables.keys import enrollment_key, seats_key
from course_management.tables.units import (
    Outbox,
    Outgoing,
    decode_key,
    encode_key,
    records_size,
)
from course_management.topology import REQUEST_ID_HEADER, is_reply_topic

log = logging.getLogger(__name__)

# (topic, key, subject, value): a record to encode with the subject's schema
Record = tuple[str, str, str, dict[str, Any]]


class ReadsState(Protocol):
    """The table's local store (tables/store.UnitStore)."""

    def read(self, partition: int, key: bytes) -> bytes | None: ...

    def scan(self, partition: int, start: bytes, prefix: bytes, limit: int) -> list[bytes]: ...


class KnowsCompletions(Protocol):
    """The completions index (streams/completions.py)."""

    async def completed(self, user_id: str, course_ids: Collection[str]) -> frozenset[str]: ...


Encode = Callable[[str, dict[str, Any]], bytes]  # (subject, value) -> Avro, wire format
Decode = Callable[[bytes | None], Any]  # a stored value


class UndeclaredWrite(Exception):
    """A handler staged a record for a topic its route does not declare (streams/routes.py):
    a bug, refused before it reaches the outbox."""


@dataclass
class PartitionWork:
    """What a batch decided on one partition: a unit's writes and its outbox."""

    writes: dict[str, Any] = field(default_factory=dict)  # key -> last value (None: deleted)
    records: list[Outgoing] = field(default_factory=list)  # in decision order
    catalog: dict[str, None] = field(default_factory=dict)  # courses, in first-touched order
    courses: dict[str, None] = field(default_factory=dict)  # Redis: course entries
    enrollments: dict[tuple[str, str], None] = field(default_factory=dict)  # Redis
    # the public view a decision made of an enrollment, and the course version it used
    views: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    replies: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    inputs: int = 0


def _request_id(event: Any) -> bytes | None:
    """The request id an input carries (from the HTTP request that sent it), if any."""
    headers = getattr(event, "headers", None) or {}
    value = headers.get(REQUEST_ID_HEADER)
    return bytes(value) if value else None


class Batch:
    """The staged effects of one batch, per partition (see the module's docstring)."""

    def __init__(
        self,
        store: ReadsState,
        encode: Encode,
        decode: Decode,
        completions: KnowsCompletions | None = None,
    ) -> None:
        self._store = store
        self._completions = completions
        self._encode = encode
        self._decode = decode
        self.partitions: dict[int, PartitionWork] = {}
        self.current: Any = None  # the input being decided
        self._work = PartitionWork()
        self._partition = -1
        self._read: dict[tuple[int, str], Any] = {}  # decoded once per batch
        self.staged_bytes = 0
        # the route deciding the current input: the topics it may write, its source
        self._declared: frozenset[str] | None = None
        self._source = ""

    def begin(self) -> None:
        self.partitions = {}
        self.current = None
        self._work = PartitionWork()
        self._partition = -1
        self._read.clear()
        self.staged_bytes = 0

    @property
    def partition(self) -> int:
        """The partition of the input being decided."""
        return self._partition

    @contextmanager
    def deciding(self, event: Any) -> Iterator[None]:
        message = event.message
        self.current = event
        self._partition = int(message.partition)
        self._work = self.partitions.setdefault(self._partition, PartitionWork())
        self._work.inputs += 1
        with log_context(
            request_id=_request_id(event),
            course_id=event.key.decode(errors="replace") if event.key else None,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        ):
            yield

    @contextmanager
    def on_partition(self, partition: int) -> Iterator[None]:
        """Decide for `partition` without an input (the timer: streams/timer.py)."""
        self.current = None
        self._partition = partition
        self._work = self.partitions.setdefault(partition, PartitionWork())
        yield

    def forget_untouched(self) -> None:
        """Drop the partitions nothing was staged on (no unit for them)."""
        self.partitions = {
            p: w
            for p, w in self.partitions.items()
            if w.writes or w.records or w.catalog or w.courses or w.enrollments or w.replies
        }

    def keys(self, prefix: str, after: str | None, limit: int) -> list[str]:
        """Up to `limit` keys of the current partition's store that begin with `prefix`,
        after `after` (exclusive), in the store's order. The store's, not the batch's
        writes: the timer scans at the start of its own batch."""
        raw_prefix = encode_key(prefix)[:-1]  # the JSON string, without its closing quote
        start = encode_key(after) if after is not None else raw_prefix
        found = self._store.scan(self._partition, start, raw_prefix, limit + 1)
        keys = [decode_key(k) for k in found]
        return [k for k in keys if k != after][:limit]

    @contextmanager
    def routed(self, writes: frozenset[str], source: str) -> Iterator[None]:
        """While a route's handler decides: records only for the topics in `writes`, dead
        letters only of `source` (outside a route, records for no topic at all)."""
        self._declared, self._source = writes, source
        try:
            yield
        finally:
            self._declared, self._source = None, ""

    def _check(self, topic: str) -> None:
        if self._declared is None or topic not in self._declared:
            raise UndeclaredWrite(f"{topic!r} is not among its route's writes")

    # -- the table as the batch sees it ------------------------------------------------

    def get(self, key: str) -> Any:
        """The key's value on the current partition: the batch's own last write, else the
        store's (decoded once per batch)."""
        return self._value(self._partition, self._work, key)

    def final(self, partition: int, key: str) -> Any:
        """The key's value on `partition` as the batch leaves it."""
        return self._value(partition, self.partitions.get(partition), key)

    def _value(self, partition: int, work: PartitionWork | None, key: str) -> Any:
        if work is not None and key in work.writes:
            return work.writes[key]
        place = (partition, key)
        if place not in self._read:
            self._read[place] = self._decode(self._store.read(partition, encode_key(key)))
        return self._read[place]

    def put(self, key: str, value: Any) -> None:
        """Stage a table write on the current partition (its last value goes in the unit)."""
        self._work.writes[key] = value

    def course_record(self, course_id: str) -> CourseRecord | None:
        record: CourseRecord | None = self.get(course_id)
        return record

    def enrollment(self, course_id: str, user_id: str) -> EnrollmentRecord | None:
        record: EnrollmentRecord | None = self.get(enrollment_key(course_id, user_id))
        return record

    def seats(self, course_id: str) -> SeatsRecord:
        seats: SeatsRecord = self.get(seats_key(course_id)) or EMPTY_SEATS
        return seats

    async def completed_courses(self, user_id: str, course_ids: Collection[str]) -> frozenset[str]:
        """Those of `course_ids` the learner completed, on any partition (an enrolment's
        prerequisites: decision 57). Without an index, none."""
        if not course_ids or self._completions is None:
            return frozenset()
        return await self._completions.completed(user_id, course_ids)

    # -- effects, staged: table writes ---------------------------------------------------

    def stage_course_record(self, course_id: str, record: CourseRecord) -> None:
        self.put(course_id, record)

    def stage_enrollment(
        self,
        course_id: str,
        user_id: str,
        record: EnrollmentRecord,
        view: tuple[int, dict[str, Any]] | None = None,
    ) -> None:
        """The table record, and Redis after it (any worker's point read finds it there
        before the write is answered). `view`: (course version, public view) as the
        decision drew it, reused for Redis if the course stays at that version."""
        self.put(enrollment_key(course_id, user_id), record)
        self.stage_enrollment_state(course_id, user_id)
        if view is not None:
            self._work.views[(course_id, user_id)] = view
        else:
            self._work.views.pop((course_id, user_id), None)

    def stage_seats(self, course_id: str, seats: SeatsRecord) -> None:
        self.put(seats_key(course_id), seats)

    # -- effects, staged: the outbox -----------------------------------------------------

    def stage_records(self, records: list[Record]) -> None:
        """Events and rating entries, encoded now, each with the request id of the input
        it came of (so an HTTP request can be followed into its events)."""
        request_id = _request_id(self.current)
        headers: list[tuple[str, bytes]] = [(REQUEST_ID_HEADER, request_id)] if request_id else []
        for topic, _, _, _ in records:
            self._check(topic)
        for topic, key, subject, value in records:
            encoded = self._encode(subject, value)
            self._work.records.append((topic, key.encode(), encoded, list(headers)))
            self.staged_bytes += len(encoded)

    def stage_catalog(self, course_id: str) -> None:
        """The course's catalog entry, built once per course per batch from the state the
        batch leaves it in (the topic is compacted and its sinks keep the newest)."""
        self._check(catalog_entry.TOPIC)
        self._work.catalog[course_id] = None

    def stage_course_state(self, course_id: str) -> None:
        """Redis gets the course, with its seats, as the batch leaves it (readers see a
        change before its writer does): once per course per batch."""
        self._work.courses[course_id] = None

    def stage_enrollment_state(self, course_id: str, user_id: str) -> None:
        """Redis gets the enrollment as the batch leaves it."""
        self._work.enrollments[(course_id, user_id)] = None

    async def stage_dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
    ) -> None:
        """An input that cannot be applied, kept on `<topic>.dlq`, in the unit's outbox
        with its events. A coroutine, so that it is an infra.dead_letters.DeadLetter; it
        only stages."""
        if self._declared is not None and topic != self._source:
            raise UndeclaredWrite(f"dead letters of {topic!r}: its route reads {self._source!r}")
        log.warning("record dead-lettered", extra={"topic": topic, "reason": reason})
        record = dead_letter_record(topic, key, value, reason, code)
        self._work.records.append(record)
        self.staged_bytes += records_size([record])
        DEAD_LETTERS.labels(topic, code).inc()

    def stage_reply(
        self, reply_to: str, command_id: str, reply: Reply, marks: Marks | None = None
    ) -> None:
        """Answer the request waiting on `reply_to` for `command_id` (with the consistency
        token of `marks`)."""
        if not is_reply_topic(reply_to):
            log.warning("reply address ignored: not a reply topic", extra={"topic": reply_to})
            return
        token = consistency.encode(marks) if marks else None
        answer = CommandReply(command_id, Reply(reply.outcome, reply.body, token))
        self._work.replies.append((reply_to, command_id, command_reply.encode(answer)))

    # -- what the applier takes ------------------------------------------------------------

    def outbox(self, partition: int) -> Outbox:
        """The partition's outbox: its records, then one catalog entry per course staged
        (built from the batch's final state), and the Redis entries to rewrite."""
        work = self.partitions[partition]
        records = list(work.records)
        for course_id in work.catalog:
            seats = self.final(partition, seats_key(course_id)) or EMPTY_SEATS
            entry = entry_of(course_id, self.final(partition, course_id), seats)
            if entry is not None:
                value = self._encode(catalog_entry.SUBJECT, catalog_entry.encode(entry))
                records.append((catalog_entry.TOPIC, course_id.encode(), value, []))
        return Outbox(records, list(work.courses), list(work.enrollments), list(work.replies))

    def views(self, partition: int) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
        """The views the partition's decisions drew of enrollments: (course version, view)."""
        return self.partitions[partition].views

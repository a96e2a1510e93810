"""Applying a decided batch: one unit per partition, then everything that follows from it.

The order (decision 49, which amends decision 3):

1. **Units.** Each partition's writes, tracking and outbox go to the `course-state`
   changelog as one record batch, all partitions at once; each must land where this
   worker expected (tables/units.py). One that did not means another worker appended to
   the partition: this one stops (`Fenced`) before anything else happens.
2. **Local stores.** Each unit is written into its partition's RocksDB store in one
   write batch, with the offset Faust resumes after.
3. **Outboxes.** The events, dead letters, rating and catalog entries, all partitions at
   once; meanwhile
4. **Redis**: each course and enrollment the batch touched, as it left them, then
5. **replies** to the waiting requests; then the outboxes' acks are awaited.

The inputs are acked after that (streams/agent.py). A crash anywhere before 1 is acked
leaves nothing: the inputs are decided again, in whatever order they come, and nothing
of the first decision was published. A crash after it leaves a unit whose outbox may not
be out: whoever opens the partition next publishes it again, byte for byte, before
anything else (`open`), and rewrites its Redis entries. So an event is published only
for a change the table holds, and every change the table holds publishes its events.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiokafka.errors import KafkaError

from course_management.domain.enrollment import EMPTY_SEATS
from course_management.domain.progress import public_view, stale_at
from course_management.domain.ratings import as_read
from course_management.infra.cache import CourseEntry, EnrollmentEntry
from course_management.infra.metrics import AGENT_BATCH_SECONDS, CHANGELOG_RECORDS_WRITTEN
from course_management.infra.retrying import until_cached, until_published
from course_management.streams.batch import Batch
from course_management.streams.crash_points import CrashPoints
from course_management.tables.keys import enrollment_key, outbox_key, seats_key
from course_management.tables.units import (
    Outbox,
    Outgoing,
    UnitRecord,
    decode_value,
    encode_key,
    is_placed,
    unit_records,
    written_by,
)
from course_management.topology import COURSE_COMPLETIONS, REPLY_SUBJECT

log = logging.getLogger(__name__)

PHASE_SECONDS = {
    phase: AGENT_BATCH_SECONDS.labels(phase)
    for phase in ("unit", "local", "publish", "cache", "answer")
}


class Fenced(RuntimeError):
    """Another worker appended to a partition this one was writing: it no longer owns it."""


class Changelog(Protocol):
    """infra.changelog.ChangelogWriter"""

    async def send(
        self, topic: str, partition: int, records: list[UnitRecord]
    ) -> asyncio.Future[Any]: ...
    async def end_offset(self, topic: str, partition: int) -> int: ...
    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Any]: ...


class Store(Protocol):
    """tables.store.UnitStore"""

    def read(self, partition: int, key: bytes) -> bytes | None: ...
    def write_unit(
        self, partition: int, records: Sequence[UnitRecord], last_offset: int
    ) -> None: ...
    def persisted(self, partition: int) -> int | None: ...


class Publishes(Protocol):
    """infra.publisher.Publisher"""

    async def send_outgoing(self, records: list[Outgoing]) -> None: ...
    async def send_replies(self, replies: list[tuple[str, str, str, dict[str, Any]]]) -> None: ...


class CachesCourses(Protocol):
    """infra.cache.CourseCache"""

    async def put_entries(
        self, courses: Sequence[CourseEntry], enrollments: Sequence[EnrollmentEntry]
    ) -> None: ...


Get = Callable[[str], Any]  # a key's decoded value


def cache_entries(
    get: Get,
    courses: Iterable[str],
    enrollments: Iterable[tuple[str, str]],
    views: dict[tuple[str, str], tuple[int, dict[str, Any]]] | None = None,
) -> tuple[list[CourseEntry], list[EnrollmentEntry]]:
    """The Redis entries of these courses and enrollments as `get` holds them. An
    enrollment's view is the one its decision drew when the course is still at the
    version it drew it against (`views`), else drawn now."""
    course_entries: list[CourseEntry] = []
    for course_id in courses:
        record = get(course_id)
        course = (record or {}).get("course")
        if course is None:
            continue
        seats = get(seats_key(course_id)) or EMPTY_SEATS
        shown = as_read(course, record, seats)
        course_entries.append(
            CourseEntry.of(shown, deleted=bool(record.get("deleted")), seq=seats["seq"])
        )
    enrollment_entries: list[EnrollmentEntry] = []
    for course_id, user_id in enrollments:
        enrollment = get(enrollment_key(course_id, user_id))
        if enrollment is None:
            continue
        course_record = get(course_id) or {}
        course = course_record.get("course")
        if course is None or course_record.get("deleted"):
            enrollment_entries.append(EnrollmentEntry(enrollment))
            continue
        version = int(course["version"])
        drawn = (views or {}).get((course_id, user_id))
        view = drawn[1] if drawn is not None and drawn[0] == version else None
        if view is None:
            view = public_view(enrollment, course, datetime.now(UTC))
        fresh_until = stale_at(view, course) or ""  # a time lock opens: drawn again
        enrollment_entries.append(
            EnrollmentEntry(enrollment, orjson.dumps(view), version, fresh_until)
        )
    return course_entries, enrollment_entries


def _reply_records(
    replies: Iterable[tuple[str, str, dict[str, Any]]],
) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(topic, key, REPLY_SUBJECT, value) for topic, key, value in replies]


class BatchApplier:
    """Opens the agent's partitions and applies its batches (see the module's docstring)."""

    def __init__(
        self,
        changelog_topic: str,
        changelog: Changelog,
        store: Store,
        sends: Publishes,
        cache: CachesCourses,
        generation: Callable[[], int],
        crash: CrashPoints | None = None,
    ) -> None:
        self._topic = changelog_topic
        self._changelog = changelog
        self._store = store
        self._sends = sends
        self._cache = cache
        self._generation = generation
        self._crash = crash or CrashPoints(None)
        self._writer = os.urandom(8).hex().encode()  # tells this process's units apart
        self._next: dict[int, int] = {}  # partition -> where its next unit is to land
        self._opened: set[int] = set()  # in the current consumer generation
        self._opened_in = -1
        self._published: dict[int, int] = {}  # partition -> next offset when its outbox left

    # -- what was published ----------------------------------------------------------------

    def published(self) -> dict[int, int]:
        """Each partition's changelog end after the last unit whose outbox this worker
        published."""
        return dict(self._published)

    def trust_published(self, published: dict[int, int]) -> None:
        """What this worker published before a clean stop (its tables were kept): a
        partition whose changelog still ends there is not published again when opened."""
        self._published.update(published)

    # -- opening a partition -----------------------------------------------------------------

    async def open(self, partitions: Iterable[int]) -> None:
        """Before the first batch on a partition in this consumer generation: learn where
        its changelog ends, read into the store what it lacks of it (placed records
        only), and publish the last unit's outbox again unless this worker published it
        itself and nobody appended since."""
        generation = self._generation()
        if generation != self._opened_in:
            self._opened.clear()
            self._opened_in = generation
        for partition in partitions:
            if partition in self._opened:
                continue
            end = await until_published(
                functools.partial(self._changelog.end_offset, self._topic, partition)
            )
            await self._catch_up(partition, end)
            if self._published.get(partition) != end:
                await self._publish_again(partition)
            self._next[partition] = self._published[partition] = end
            self._opened.add(partition)

    async def _catch_up(self, partition: int, end: int) -> None:
        held = self._store.persisted(partition)
        start = 0 if held is None else held + 1
        if start >= end:
            return
        records = await until_published(
            functools.partial(self._changelog.read, self._topic, partition, start, end)
        )
        placed: list[UnitRecord] = [
            (r.key, r.value, []) for r in records if is_placed(r.offset, r.headers)
        ]
        self._store.write_unit(partition, placed, end - 1)
        log.info(
            "course-state partition caught up before its first unit",
            extra={"partition": partition, "from": start, "to": end, "records": len(placed)},
        )

    async def _publish_again(self, partition: int) -> None:
        value = decode_value(self._store.read(partition, encode_key(outbox_key(partition))))
        if not value:
            return
        outbox = Outbox.from_value(value)
        if outbox.records:
            await until_published(functools.partial(self._sends.send_outgoing, outbox.records))
        get = functools.partial(self._stored, partition)
        courses, enrollments = cache_entries(get, outbox.courses, outbox.enrollments)
        if courses or enrollments:
            await until_cached(functools.partial(self._cache.put_entries, courses, enrollments))
        if outbox.replies:  # a request may still wait (on another worker)
            await until_published(
                functools.partial(self._sends.send_replies, _reply_records(outbox.replies))
            )
        log.info(
            "the last unit's outbox published again",
            extra={"partition": partition, "records": len(outbox.records)},
        )

    def _stored(self, partition: int, key: str) -> Any:
        return decode_value(self._store.read(partition, encode_key(key)))

    # -- applying a batch ----------------------------------------------------------------

    async def apply(self, batch: Batch) -> None:
        if not batch.partitions:
            return
        crash = self._crash
        crash.reached("decided")
        started = time.perf_counter()
        outboxes = {p: batch.outbox(p) for p in batch.partitions}
        units: dict[int, list[UnitRecord]] = {}
        for partition, work in batch.partitions.items():
            writes = dict(work.writes)
            outbox = outboxes[partition]
            empty = not (outbox.records or outbox.courses or outbox.enrollments or outbox.replies)
            writes[outbox_key(partition)] = None if empty else outbox.to_value()
            units[partition] = unit_records(writes, self._next[partition], self._writer)
        sent = {p: await self._send(p, records) for p, records in units.items()}
        crash.reached("unit-sent")
        for partition, records in units.items():
            await self._landed(partition, records, sent[partition])
        crash.reached("unit-acked")
        unit_done = time.perf_counter()
        for i, (partition, records) in enumerate(units.items()):
            if i == 1:
                crash.reached("local-partial")
            expected = self._next[partition]
            self._store.write_unit(partition, records, expected + len(records) - 1)
            self._next[partition] = expected + len(records)
            CHANGELOG_RECORDS_WRITTEN.inc(len(records))
        crash.reached("local-written")
        local_done = time.perf_counter()
        # The outbox, Redis and the replies at once: the unit is durable, so none waits
        # for another, except that Redis comes before the replies (decision 22).
        outgoing = [record for p in units for record in outboxes[p].records]
        publishing = asyncio.ensure_future(self._publish(outgoing))
        await asyncio.sleep(0)  # the records are in the producer's hands
        crash.reached("outbox-sent")
        courses: list[CourseEntry] = []
        enrollments: list[EnrollmentEntry] = []
        for partition in units:
            more = cache_entries(
                functools.partial(batch.final, partition),
                outboxes[partition].courses,
                outboxes[partition].enrollments,
                batch.views(partition),
            )
            courses += more[0]
            enrollments += more[1]
        if any(record[0] == COURSE_COMPLETIONS for record in outgoing):
            # A completion is shown (Redis) and answered once its entry is acked: an
            # enrolment decided after either, on any worker, finds it (decision 57).
            await publishing
        if courses or enrollments:
            await until_cached(functools.partial(self._cache.put_entries, courses, enrollments))
        crash.reached("cached")
        cached = time.perf_counter()
        replies = _reply_records([r for p in units for r in outboxes[p].replies])
        if replies:  # to the workers still there (a stopped one deleted its topic)
            await until_published(functools.partial(self._sends.send_replies, replies))
        crash.reached("replied")
        answered = time.perf_counter()
        await publishing
        for partition in units:
            self._published[partition] = self._next[partition]
        crash.reached("outbox-acked")
        PHASE_SECONDS["unit"].observe(unit_done - started)
        PHASE_SECONDS["local"].observe(local_done - unit_done)
        PHASE_SECONDS["cache"].observe(cached - local_done)
        PHASE_SECONDS["answer"].observe(answered - cached)
        PHASE_SECONDS["publish"].observe(time.perf_counter() - local_done)

    async def _publish(self, records: list[Outgoing]) -> None:
        """The outboxes' records, until the broker has them all (a repeat after a timeout
        may send some twice: the same records, the same ids)."""
        if records:
            await until_published(functools.partial(self._sends.send_outgoing, records))

    async def _send(self, partition: int, records: list[UnitRecord]) -> asyncio.Future[Any]:
        return await until_published(
            functools.partial(self._changelog.send, self._topic, partition, records)
        )

    async def _landed(
        self, partition: int, records: list[UnitRecord], sent: asyncio.Future[Any]
    ) -> None:
        """Wait until the unit is in the log where it was expected; `Fenced` if another
        worker's records are there."""
        expected = self._next[partition]
        while True:
            try:
                offset = int((await sent).offset)
            except KafkaError as exc:
                # The answer is lost: whether the unit landed is read from the log.
                log.warning(
                    "a unit's append failed; reading whether it landed",
                    extra={"partition": partition, "error": repr(exc)},
                )
                if await self._found(partition, expected):
                    return
                sent = await self._send(partition, records)
                continue
            if offset != expected:
                raise Fenced(
                    f"the unit for course-state partition {partition} landed at {offset}, "
                    f"not at {expected}: another worker appended to the partition"
                )
            return

    async def _found(self, partition: int, expected: int) -> bool:
        """After a lost answer: True if this writer's unit is at `expected`, False if
        nothing is (send it again); `Fenced` if somebody else's is."""
        end = await until_published(
            functools.partial(self._changelog.end_offset, self._topic, partition)
        )
        if end <= expected:
            return False
        records = await until_published(
            functools.partial(self._changelog.read, self._topic, partition, expected, expected + 1)
        )
        if records and written_by(records[0].headers, self._writer, records[0].offset):
            return True
        raise Fenced(
            f"course-state partition {partition} has records at {expected} "
            "that this worker did not write"
        )

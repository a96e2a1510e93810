"""A batch of the course agent's inputs: decided one by one, their effects applied together.

The course agent (streams/course_commands.py) takes its inputs in batches. Each input is
decided in order against the tables *plus the batch's own earlier writes* (`Overlay`),
so every decision is the one it would be alone; its effects are collected here and
applied once for the whole batch, in the order that keeps decision 3's guarantee:

1. every event and catalog entry is published, and all their acks awaited (one round
   trip for the batch instead of one per input);
2. the table writes, in order, each under its own input's Faust event (Faust takes the
   RocksDB and changelog partition from the current event);
3. Redis: the last course state and seat count of each course touched (waiting for
   Redis, decision 22), so readers never see older than a write returns;
4. the inputs that could not be applied, to their dead-letter topics;
5. the replies to waiting HTTP requests (one round trip).

Only then are the inputs acked. A crash anywhere repeats at most this batch, and its
decisions, being deterministic, repeat with the same event ids (consumers deduplicate).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from faust.streams import _current_event

from course_management.infra.retrying import until_cached, until_published
from course_management.tables.enrollments import seats_key
from course_management.topology import REPLY_SUBJECT, is_reply_topic

if TYPE_CHECKING:
    from course_management.runtime import Runtime

log = logging.getLogger(__name__)

Record = tuple[str, str, str, dict[str, Any]]  # (topic, key, subject, record)
UNAPPLIED_EXIT_CODE = 75  # EX_TEMPFAIL: start again and the batch is applied again


@contextmanager
def as_input(event: Any) -> Iterator[None]:
    """Faust tables read and write the partition of the current event: make it `event`."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


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
        self.pending[key] = value
        self.batch.writes.append((self.table, key, value, self.batch.current))


class Batch:
    """The collected effects of one batch (see the module's docstring for their order)."""

    def __init__(self, runtime: Runtime, courses: Any, enrollments: Any) -> None:
        self.runtime = runtime
        self.courses = Overlay(courses, self)
        self.enrollments = Overlay(enrollments, self)
        self.current: Any = None  # the input being decided
        self.records: list[Record] = []
        self.writes: list[tuple[Any, str, Any, Any]] = []
        self.course_states: dict[str, tuple[dict[str, Any], bool]] = {}
        self.seat_counts: dict[str, int] = {}
        self.replies: list[Record] = []
        self.dead_letters: list[tuple[str, bytes | None, bytes | None, str, str]] = []

    def begin(self) -> None:
        for overlay in (self.courses, self.enrollments):
            overlay.pending.clear()
        self.current = None
        self.records.clear()
        self.writes.clear()
        self.course_states.clear()
        self.seat_counts.clear()
        self.replies.clear()
        self.dead_letters.clear()

    @contextmanager
    def deciding(self, event: Any) -> Iterator[None]:
        self.current = event
        with as_input(event):
            yield

    # -- effects, collected ----------------------------------------------------------

    def publish(self, records: list[Record]) -> None:
        self.records.extend(records)

    def cache_current_course(self, course_id: str) -> None:
        """Redis gets the course as the batch leaves it (readers see a change before its
        writer does). Also after a duplicate input: a crash between the table write and
        Redis is healed by the redelivery (the put is version-guarded)."""
        record = self.courses.get(course_id)
        if record and record.get("course"):
            self.course_states[course_id] = (record["course"], bool(record.get("deleted")))

    def cache_current_seats(self, course_id: str) -> None:
        """Redis gets the course's seat count as the batch leaves it (also after a
        duplicate input, as above)."""
        seats = self.enrollments.get(seats_key(course_id))
        if seats is not None:
            self.seat_counts[course_id] = int(seats["count"])

    def dead_letter(
        self, topic: str, key: bytes | None, value: bytes | None, reason: str, code: str = "invalid"
    ) -> None:
        """An input that cannot be applied, kept on `<topic>.dlq` after the batch's earlier
        inputs took effect (as if it had been processed alone, in order)."""
        self.dead_letters.append((topic, key, value, reason, code))

    def reply(self, reply_to: str, command_id: str, status: int, body: Any) -> None:
        """Answer the HTTP request waiting on `reply_to` for `command_id`."""
        if not is_reply_topic(reply_to):
            log.warning("reply address ignored: not a reply topic", extra={"topic": reply_to})
            return
        record = {
            "command_id": command_id,
            "status": status,
            "body_json": json.dumps(body) if body is not None else None,
        }
        self.replies.append((reply_to, command_id, REPLY_SUBJECT, record))

    # -- applied, together -----------------------------------------------------------

    async def flush(self) -> None:
        runtime = self.runtime
        if self.records:
            await until_published(functools.partial(runtime.publish_all, self.records))
        for table, key, value, event in self.writes:
            with as_input(event):
                table[key] = value
        for course, deleted in self.course_states.values():
            await until_cached(functools.partial(runtime.cache.put, course, deleted=deleted))
        for course_id, count in self.seat_counts.items():
            await until_cached(
                functools.partial(runtime.cache.set_enrollment_count, course_id, count)
            )
        for dead in self.dead_letters:
            await until_published(functools.partial(runtime.dead_letter, *dead))
        if self.replies:
            # A worker that stopped deleted its reply topic: nobody waits there any more,
            # and sending to a missing topic would be retried for ever.
            replies = await until_published(functools.partial(runtime.still_awaited, self.replies))
            if replies:
                await until_published(functools.partial(runtime.publish_all, replies))


def stop_unapplied(exc: BaseException) -> NoReturn:
    """A batch that cannot be applied (not an outage: those are waited out) stops the
    worker at once. Letting the agent go on would ack the batch's inputs unapplied (Faust
    acks a batch when its iterator is closed); stopping without a commit leaves them to
    be applied again after the restart, which a crash is safe for (decision 21)."""
    log.critical(
        "a batch could not be applied; stopping the worker without acking it", exc_info=exc
    )
    logging.shutdown()
    os._exit(UNAPPLIED_EXIT_CODE)

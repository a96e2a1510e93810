"""The course agent: the only writer of the `courses` and `enrollments` tables.

Reads `course-commands` and the enrollment inputs (both keyed by course id, so a course,
its enrollments and its seats are decided by the one worker that owns the partition),
in batches. For each input, in partition order: decode it (undecodable -> `<topic>.dlq`,
counted, the stream goes on), skip it if it was applied before (enrollment inputs are
taken strictly in partition order, once each, and once per source record:
streams/tracking.py), and hand it to the handler of its kind (`HANDLERS`), which
decides (pure domain) against the tables plus the batch's earlier writes and stages the
effects. Then, for the whole batch (streams/batch.py): send the events and wait for the
broker's acks; write the table records (their changelogs make them durable); update
Redis; answer the waiting HTTP requests on their workers' reply topics.

Sending before the table writes means a crash can only cause a repeat of the send for
the same inputs, and every decision is deterministic, so the repeat carries the same
`event_id`s: consumers deduplicate them. A crash never loses an accepted write.

Reads: course-commands, course-management-enrollment-inputs. Writes: course-events,
enrollment-events, course-management-catalog, the tables' changelogs, `<topic>.dlq`,
the reply topics.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol

import faust

from course_management.domain.outcomes import Refusal, RefusalKind, Reply
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.dead_letters import ERROR, INVALID, MALFORMED, decode_or_dead_letter
from course_management.infra.metrics import (
    AGENT_BATCH_INPUTS,
    AGENT_BATCH_SECONDS,
    INPUTS_SKIPPED,
    PARTITION_REWINDS,
)
from course_management.streams import course_handlers, enrollment_handlers
from course_management.streams.batch import Batch
from course_management.streams.inputs import Input, command_from_record, stage_answer
from course_management.streams.tracking import (
    Order,
    already_applied,
    input_order,
    next_offset,
    stage_applied,
    stage_next,
)
from course_management.topology import (
    CORRELATION_HEADER,
    COURSE_COMMANDS,
    COURSE_PROGRESS,
    ENROLLMENT_INPUTS,
    KIND_HEADER,
    REPLY_TO_HEADER,
    SOURCE_KEY_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    USER_ENROLLED,
    spec,
)

log = logging.getLogger(__name__)

DECIDE_SECONDS = AGENT_BATCH_SECONDS.labels("decide")
APPLY_SECONDS = AGENT_BATCH_SECONDS.labels("apply")
BATCH_MAX = 500  # inputs decided before their effects are applied together
BATCH_WITHIN_S = 0.005  # how long a lone input waits for company
UNAPPLIED_EXIT_CODE = 75  # EX_TEMPFAIL: start again and the batch is applied again

Handler = Callable[[Batch, Input], Awaitable[None]]

# Every kind of input and its handler. A command type not listed here is handled as a
# course command, whose decision refuses it.
HANDLERS: dict[str, Handler] = {
    "create_course": course_handlers.course_command,
    "update_course": course_handlers.course_command,
    "delete_course": course_handlers.course_command,
    "rate_course": course_handlers.rate_course,
    "cancel_enrollment": enrollment_handlers.cancel_enrollment,
    "user_enrolled": enrollment_handlers.user_enrolled,
    "item_progress": enrollment_handlers.item_progress,
}

# The enrollment inputs' kinds (the router's `cms-kind` header) and their source topics.
ENROLLMENT_KINDS = {b"user_enrolled": USER_ENROLLED, b"item_progress": COURSE_PROGRESS}


def register_course_agent(app: faust.App, codec: AvroCodec, batch: Batch) -> Any:
    """Define the agent on `app`; `batch` (over the app's tables) stages and applies its
    effects."""
    topic = app.topic(
        COURSE_COMMANDS,
        ENROLLMENT_INPUTS,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    positions = Rewinds(app)

    @app.agent(topic, name="apply-course-commands", concurrency=1)
    async def apply_course_commands(stream: Any) -> None:
        # take_events acks a batch's inputs only when the next batch is asked for, that
        # is after apply() applied all their effects.
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            try:
                started = time.perf_counter()
                batch.begin()
                for event in events:
                    with batch.deciding(event):
                        await handle(codec, batch, event, positions)
                decided = time.perf_counter()
                await batch.apply()
                AGENT_BATCH_INPUTS.observe(len(events))
                DECIDE_SECONDS.observe(decided - started)
                APPLY_SECONDS.observe(time.perf_counter() - decided)
            except Exception as exc:
                stop_unapplied(exc)

    return apply_course_commands


class Positions(Protocol):
    async def earliest(self, tp: Any) -> int | None: ...
    async def rewind(self, tp: Any, offset: int) -> None: ...


class Rewinds:
    """Rewinds a course-agent partition to the offset its tables applied up to, once per
    offset (records already fetched past it arrive meanwhile and are skipped too)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._done: dict[Any, int] = {}

    async def earliest(self, tp: Any) -> int | None:
        try:
            return int((await self._app.consumer.earliest_offsets(tp))[tp])
        except Exception:  # the broker away: not known, rewind anyway
            return None

    async def rewind(self, tp: Any, offset: int) -> None:
        if self._done.get(tp) == offset:
            return
        self._done[tp] = offset
        log.warning(
            "enrollment inputs ahead of the tables: rewinding the partition",
            extra={"partition": tp.partition, "offset": offset},
        )
        PARTITION_REWINDS.labels(tp.topic).inc()
        await self._app.consumer.seek(tp, offset)


async def handle(codec: AvroCodec, batch: Batch, event: Any, positions: Positions) -> None:
    """Decode one input and hand it to its handler. Enrollment inputs are taken strictly
    in partition order and once each (streams/tracking.py): an input past the tables'
    position rewinds its partition to that position."""
    if event.message.topic != ENROLLMENT_INPUTS:
        await _decide(codec, batch, event)
        return
    order = input_order(batch, event)
    if order is Order.AHEAD:
        tp = event.message.tp
        order = input_order(batch, event, await positions.earliest(tp))
        expected = next_offset(batch, event.message.partition)
        if order is Order.AHEAD and expected is not None:
            await positions.rewind(tp, expected)
    if order is not Order.NEXT:
        INPUTS_SKIPPED.labels(ENROLLMENT_INPUTS, order.value).inc()
        if order is Order.REPEAT:
            await _refresh_cache(codec, batch, event)
        return
    await _decide(codec, batch, event)
    stage_next(batch, event)


async def _refresh_cache(codec: AvroCodec, batch: Batch, event: Any) -> None:
    """An input applied already, come again after a crash: the crash may have come
    between the table writes and Redis, so what the tables hold of its course and
    enrollment is put into Redis again (the puts are version-guarded)."""
    course_id = event.key.decode(errors="replace") if event.key else ""
    source = ENROLLMENT_KINDS.get((event.headers or {}).get(KIND_HEADER, b""))
    if not course_id or source is None:
        return
    batch.stage_course_state(course_id)
    batch.stage_seat_count(course_id)
    try:
        fields = await codec.decode(spec(source).subject, event.value)
    except AvroDecodeError:
        return  # it was dead-lettered the first time
    batch.stage_enrollment_state(course_id, str(fields.get("user_id", "")))


async def _decide(codec: AvroCodec, batch: Batch, event: Any) -> None:
    """A handler that raises (a bug) must not stop every course on the partition, nor
    leave the caller waiting."""
    item = await read_input(codec, batch, event)
    if item is None:
        return
    if already_applied(batch, item):
        INPUTS_SKIPPED.labels(item.topic, "replayed").inc()
        return
    handler = HANDLERS.get(item.kind)
    if handler is None:
        if item.command is None:
            reason = f"unknown kind {item.kind!r}"
            await batch.stage_dead_letter(item.topic, item.key, item.raw, reason, INVALID)
            return
        handler = course_handlers.course_command
    try:
        await handler(batch, item)
    except Exception as exc:
        log.exception("course input failed", extra={"topic": item.topic, "kind": item.kind})
        await batch.stage_dead_letter(item.topic, item.key, item.raw, repr(exc), ERROR)
        failed = Refusal(RefusalKind.FAILED, "the command could not be applied")
        stage_answer(batch, item, Reply.refusing(failed))
    stage_applied(batch, item)


async def read_input(codec: AvroCodec, batch: Batch, event: Any) -> Input | None:
    """The input an event carries, or None once it is dead-lettered (staged)."""
    key, raw = event.key, event.value
    if event.message.topic == COURSE_COMMANDS:
        decoded = await decode_or_dead_letter(
            codec,
            spec(COURSE_COMMANDS),
            key,
            raw,
            batch.stage_dead_letter,
            parse=lambda value: (value, command_from_record(value)),
            code=INVALID,
        )
        if decoded is None:
            return None
        value, command = decoded
        return Input(
            kind=command.command_type,
            topic=COURSE_COMMANDS,
            key=key,
            raw=raw,
            value=value,
            reply_to=value.get("reply_to"),
            correlation_id=command.command_id,
            command=command,
        )
    headers = event.headers or {}
    kind = headers.get(KIND_HEADER, b"")
    source = ENROLLMENT_KINDS.get(kind)
    if source is None:
        await batch.stage_dead_letter(
            ENROLLMENT_INPUTS, key, raw, f"unknown kind {kind!r}", INVALID
        )
        return None
    source_key = headers.get(SOURCE_KEY_HEADER, key)  # the key it had on its source topic
    fields = await decode_or_dead_letter(
        codec, spec(source), source_key, raw, batch.stage_dead_letter, parse=dict, code=MALFORMED
    )
    if fields is None:
        return None
    reply_to, correlation = headers.get(REPLY_TO_HEADER), headers.get(CORRELATION_HEADER)
    return Input(
        kind=kind.decode(),
        topic=source,
        key=source_key,
        raw=raw,
        value=fields,
        reply_to=reply_to.decode() if reply_to else None,
        correlation_id=correlation.decode() if correlation else None,
        source=_source_position(event, headers),
    )


def _source_position(event: Any, headers: dict[str, bytes]) -> tuple[int, int, int] | None:
    """(agent partition, source partition, source offset) from the router's headers."""
    partition, offset = headers.get(SOURCE_PARTITION_HEADER), headers.get(SOURCE_OFFSET_HEADER)
    if partition is None or offset is None:
        return None
    try:
        return int(event.message.partition), int(partition), int(offset)
    except ValueError:
        return None


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

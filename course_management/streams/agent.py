"""The course agent: the only writer of the `course-state` table.

Reads `course-commands` and the enrollment inputs (both keyed by course id, so a course,
its enrollments and its seats are decided by the one worker that owns the partition),
in batches as large as the backlog (streams/faust_compat.take_backlog). For each input,
in partition order: decode it (undecodable -> `<topic>.dlq`, counted, the stream goes
on), skip it if it was applied before (enrollment inputs are taken strictly in partition
order, once each, and once per source record: streams/tracking.py), and hand it to the
route of its kind (streams/routes.py: its handler, its source, the topics it may write),
whose handler decides (pure domain) against the table plus the batch's earlier writes and
stages the effects (streams/batch.py). Then the whole batch is
applied (streams/apply.py): one unit per partition on the table's changelog, the local
stores, the outboxes (events, catalog entries, rating entries, dead letters), Redis, the
replies. Only then are the inputs acked.

Reads: course-commands, course-management-enrollment-inputs. Writes: the
course-management-course-state changelog, and through the outboxes what each route
declares (streams/routes.py ROUTES), its dead letters and the reply topics.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

import faust

from course_management.domain.outcomes import Refusal, RefusalKind, Reply
from course_management.infra.avro import AvroCodec
from course_management.infra.dead_letters import ERROR, INVALID, MALFORMED, decode_or_dead_letter
from course_management.infra.metrics import (
    AGENT_BATCH_INPUTS,
    AGENT_BATCH_SECONDS,
    INPUTS_SKIPPED,
    PARTITION_REWINDS,
)
from course_management.messages import course_command
from course_management.streams.apply import BatchApplier
from course_management.streams.batch import Batch
from course_management.streams.faust_compat import take_backlog
from course_management.streams.inputs import INPUT_DECODERS, Input, stage_answer
from course_management.streams.routes import route_of
from course_management.streams.timer import PAUSE_S, Timer
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
    ENROLLMENT_INPUT_SOURCES,
    ENROLLMENT_INPUTS,
    KIND_HEADER,
    REPLY_TO_HEADER,
    SOURCE_KEY_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    spec,
)

log = logging.getLogger(__name__)

DECIDE_SECONDS = AGENT_BATCH_SECONDS.labels("decide")
APPLY_SECONDS = AGENT_BATCH_SECONDS.labels("apply")
BATCH_MAX = 2000  # inputs taken at most in one batch
# Encoded outbox bytes after which a batch is applied before it takes its next input, so
# that a partition's unit stays far under UNIT_MAX_BYTES (each value in a unit is about
# the size of an event in its outbox; a course is at most 256 KiB).
CUT_BYTES = 2 * 1024 * 1024
IDLE_S = 1.0  # without inputs, how often the agent opens new partitions and runs its timer
UNAPPLIED_EXIT_CODE = 75  # EX_TEMPFAIL: start again and the batch is applied again


def register_course_agent(
    app: faust.App,
    codec: AvroCodec,
    batch: Batch,
    applier: BatchApplier,
    recovered_partitions: Callable[[], set[int]],
    positions: Positions,
) -> Any:
    """Define the agent on `app`: `batch` (over the table's store) stages the effects of
    its inputs, `applier` applies them; `recovered_partitions` are the partitions this
    worker owns whose table is recovered (opened when idle); `positions` rewinds the
    agent's consumer (the one PartitionRewinder, shared with the partition watch)."""
    topic = app.topic(
        COURSE_COMMANDS,
        ENROLLMENT_INPUTS,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(topic, name="apply-course-commands", concurrency=1)
    async def apply_course_commands(stream: Any) -> None:
        # take_backlog acks a batch's inputs only when the next batch is asked for, that
        # is after they were applied.
        timer = Timer(batch, applier)
        async for events in take_backlog(stream, BATCH_MAX, lambda: timer_wait(timer)):
            try:
                if events:
                    await applier.open({int(e.message.partition) for e in events})
                    await decide_and_apply(codec, batch, applier, events, positions)
                # then (and when idle) publish what a crashed owner may have left, and
                # release the time locks that are due
                owned = recovered_partitions()
                await applier.open(owned)
                await timer.run(owned)
            except Exception as exc:
                stop_unapplied(exc)

    return apply_course_commands


def timer_wait(timer: Timer) -> float:
    """How long the agent waits for inputs: briefly while the timer has work left."""
    return PAUSE_S if timer.pending else IDLE_S


async def decide_and_apply(
    codec: AvroCodec, batch: Batch, applier: BatchApplier, events: list[Any], positions: Positions
) -> None:
    """Decide the inputs in order and apply their effects; a batch whose outboxes grow
    past CUT_BYTES is applied there and the rest decided as the next."""
    batch.begin()
    started = time.perf_counter()
    taken = 0
    for event in events:
        with batch.deciding(event):
            await handle(codec, batch, event, positions)
        taken += 1
        if batch.staged_bytes > CUT_BYTES:
            await _apply(batch, applier, taken, started)
            batch.begin()
            started, taken = time.perf_counter(), 0
    await _apply(batch, applier, taken, started)


async def _apply(batch: Batch, applier: BatchApplier, taken: int, started: float) -> None:
    decided = time.perf_counter()
    await applier.apply(batch)
    if taken:
        AGENT_BATCH_INPUTS.observe(taken)
        DECIDE_SECONDS.observe(decided - started)
        APPLY_SECONDS.observe(time.perf_counter() - decided)


class Positions(Protocol):
    async def earliest(self, tp: Any) -> int | None: ...
    async def rewind(self, tp: Any, offset: int, *, again: bool = False) -> None: ...


class PartitionRewinder:
    """The one rewinder of the agent's consumer. The agent rewinds a partition whose input
    arrives ahead of the table's position to that position (or the log's start), once per
    offset (records already fetched past it arrive meanwhile and are skipped too). The
    partition watch rewinds a partition to its committed offset when Faust skipped the
    record there (`again=True`: as often as the hole stays)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._done: dict[Any, int] = {}

    async def earliest(self, tp: Any) -> int | None:
        try:
            return int((await self._app.consumer.earliest_offsets(tp))[tp])
        except Exception:  # the broker away: not known, rewind anyway
            return None

    async def rewind(self, tp: Any, offset: int, *, again: bool = False) -> None:
        if not again:  # the watch's seeks leave the agent's own bookkeeping as it was
            if self._done.get(tp) == offset:
                return
            self._done[tp] = offset
        log.warning(
            "rewinding the partition",
            extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
        )
        PARTITION_REWINDS.labels(tp.topic).inc()
        await self._app.consumer.seek(tp, offset)


async def handle(codec: AvroCodec, batch: Batch, event: Any, positions: Positions) -> None:
    """Decode one input and hand it to its handler. Both topics are taken strictly in
    partition order and once each (streams/tracking.py): an input past the table's
    position rewinds its partition to that position."""
    message = event.message
    order = input_order(batch, event)
    if order is Order.AHEAD:
        earliest = await positions.earliest(message.tp)
        order = input_order(batch, event, earliest)
        if order is Order.AHEAD:  # back to the table's position, or the log's start
            expected = next_offset(batch, message.topic, message.partition)
            target = expected if expected is not None else (earliest or 0)
            await positions.rewind(message.tp, target)
    if order is not Order.NEXT:
        # Applied already (a repeat after a crash or a rewind): the unit that applied it
        # holds its effects, and its outbox (events, replies) was published or will be
        # by the partition's next opener (streams/apply.py). Deciding it again would
        # decide it against a later state (a refused cancel would now cancel).
        INPUTS_SKIPPED.labels(message.topic, order.value).inc()
        return
    await _decide(codec, batch, event)
    stage_next(batch, event)


async def _decide(codec: AvroCodec, batch: Batch, event: Any) -> None:
    """A handler that raises (a bug) must not stop every course on the partition, nor
    leave the caller waiting."""
    item = await read_input(codec, batch, event)
    if item is None:
        return
    if already_applied(batch, item):
        INPUTS_SKIPPED.labels(item.source_topic, "replayed").inc()
        return
    route = route_of(item.kind, item.source_topic)
    if route is None:
        reason = f"unknown kind {item.kind!r}"
        await batch.stage_dead_letter(item.source_topic, item.key, item.raw, reason, INVALID)
        stage_answer(batch, item, Reply.refusing(Refusal(RefusalKind.UNKNOWN_COMMAND, reason)))
        stage_applied(batch, item)
        return
    try:
        with batch.routed(route.writes, route.source):
            await route.handler(batch, item)
    except Exception as exc:
        log.exception("course input failed", extra={"topic": item.source_topic, "kind": item.kind})
        await batch.stage_dead_letter(item.source_topic, item.key, item.raw, repr(exc), ERROR)
        failed = Refusal(RefusalKind.FAILED, "the command could not be applied")
        stage_answer(batch, item, Reply.refusing(failed))
    stage_applied(batch, item)


async def read_input(codec: AvroCodec, batch: Batch, event: Any) -> Input | None:
    """The input an event carries, or None once it is dead-lettered (staged)."""
    key, raw = event.key, event.value
    if event.message.topic == COURSE_COMMANDS:
        sent = await decode_or_dead_letter(
            codec,
            spec(COURSE_COMMANDS),
            key,
            raw,
            batch.stage_dead_letter,
            parse=course_command.decode,
            code=INVALID,
        )
        if sent is None:
            return None
        return Input(
            kind=sent.command.command_type,
            source_topic=COURSE_COMMANDS,
            key=key,
            raw=raw,
            message=sent.command,
            reply_to=sent.reply_to,
            correlation_id=sent.command.command_id,
        )
    headers = event.headers or {}
    kind = headers.get(KIND_HEADER, b"")
    source = ENROLLMENT_INPUT_SOURCES.get(kind.decode(errors="replace"))
    if source is None:
        await batch.stage_dead_letter(
            ENROLLMENT_INPUTS, key, raw, f"unknown kind {kind!r}", INVALID
        )
        return None
    source_key = headers.get(SOURCE_KEY_HEADER, key)  # the key it had on its source topic
    message = await decode_or_dead_letter(
        codec,
        spec(source),
        source_key,
        raw,
        batch.stage_dead_letter,
        parse=INPUT_DECODERS[source],
        code=MALFORMED,
    )
    if message is None:
        return None
    reply_to, correlation = headers.get(REPLY_TO_HEADER), headers.get(CORRELATION_HEADER)
    return Input(
        kind=kind.decode(),
        source_topic=source,
        key=source_key,
        raw=raw,
        message=message,
        reply_to=reply_to.decode() if reply_to else None,
        correlation_id=correlation.decode() if correlation else None,
        source_position=_source_position(event, headers),
        received_at=_received_at(event),
    )


def _received_at(event: Any) -> datetime | None:
    """The forwarded record's timestamp (the router's append time), if it has one (Faust
    gives it in seconds)."""
    stamp = getattr(event.message, "timestamp", None)
    if not isinstance(stamp, int | float) or stamp <= 0:
        return None
    return datetime.fromtimestamp(stamp, UTC)


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

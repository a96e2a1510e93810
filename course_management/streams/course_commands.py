"""The course agent: the only writer of the `courses` and `enrollments` tables.

It takes the course-keyed inputs (course commands, enrollment inputs) in batches. For each
input, in partition order: decode it (undecodable -> `<topic>.dlq`, counted, the stream
goes on), and `decide` (pure domain) what it leads to, against the tables plus the
batch's earlier writes. Then, for the whole batch (streams/batch.py): publish the events
and wait for the broker's acks; write the table records (their changelogs make them
durable); update Redis; answer the waiting HTTP requests on their workers' reply topics.

Publishing before the table writes means a crash can only cause a repeat of the publish
for the same inputs, and `decide` is deterministic, so the repeat carries the same
`event_id`s: consumers deduplicate them. A crash never loses an accepted write.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC
from typing import TYPE_CHECKING, Any

import faust

from course_management.domain.commands import Actor, CourseCommand, Decision, Reply, decide
from course_management.domain.problems import Problem
from course_management.infra.avro import AvroDecodeError
from course_management.infra.metrics import COMMANDS_APPLIED
from course_management.streams.batch import Batch, stop_unapplied
from course_management.streams.enrollment_inputs import EnrollmentApplier
from course_management.topology import (
    COURSE_COMMANDS,
    ENROLLMENT_INPUTS,
    KIND_HEADER,
)

if TYPE_CHECKING:
    from course_management.runtime import Runtime

log = logging.getLogger(__name__)

BATCH_MAX = 500  # inputs decided before their effects are applied together
BATCH_WITHIN_S = 0.005  # how long a lone input waits for company


def command_from_record(value: dict[str, Any]) -> CourseCommand:
    actor = value["actor"]
    occurred = value["occurred_at"]
    return CourseCommand(
        command_id=value["command_id"],
        command_type=value["command_type"],
        course_id=value["course_id"],
        occurred_at=occurred.astimezone(UTC),
        actor=Actor(actor["id"], actor["name"], tuple(actor["roles"])),
        payload=json.loads(value["payload_json"] or "{}"),
        payload_hash=value["payload_hash"],
        expected_version=value["expected_version"],
    )


def register_course_commands(
    app: faust.App, courses: Any, enrollments: Any, runtime: Runtime
) -> Any:
    # One agent for every course-keyed input: a course's commands and its enrollment
    # inputs are decided one at a time, in order, by the worker that owns the partition,
    # in batches whose effects are applied together (streams/batch.py).
    topic = app.topic(
        COURSE_COMMANDS,
        ENROLLMENT_INPUTS,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    batch = Batch(runtime, courses, enrollments)
    enrollment = EnrollmentApplier(runtime, batch)

    async def apply(event: Any) -> None:
        raw = event.value
        try:
            value = await runtime.codec.decode(f"{COURSE_COMMANDS}-value", raw)
            command = command_from_record(value)
        except (AvroDecodeError, KeyError, ValueError) as exc:
            batch.dead_letter(COURSE_COMMANDS, event.key, raw, f"undecodable: {exc}")
            return
        if command.command_type == "cancel_enrollment":
            await enrollment.cancel(command, value.get("reply_to"))
            return
        if command.command_type == "rate_course":
            await enrollment.rate(command, value.get("reply_to"))
            return
        try:
            decision: Decision = decide(batch.courses.get(command.course_id), command)
        except Exception as exc:
            # A bug must not stop every course on the partition, nor leave the caller waiting.
            log.exception("course command failed", extra={"command_id": command.command_id})
            batch.dead_letter(COURSE_COMMANDS, event.key, raw, repr(exc), code="error")
            problem = Problem.of(500, "internal", "the command could not be applied")
            decision = Decision(None, None, Reply(500, problem.to_dict()))
        if decision.event is not None and decision.record is not None:
            await enrollment.publish_course_change(
                command.course_id, decision.event, decision.record
            )
        if decision.record is not None:
            batch.courses[command.course_id] = decision.record
            COMMANDS_APPLIED.labels(command.command_type).inc()
        batch.cache_current_course(command.course_id)
        batch.cache_current_seats(command.course_id)
        if value.get("reply_to"):
            batch.reply(
                value["reply_to"], command.command_id, decision.reply.status, decision.reply.body
            )

    async def decide_one(event: Any) -> None:
        if event.message.topic != ENROLLMENT_INPUTS:
            await apply(event)
            return
        kind = (event.headers or {}).get(KIND_HEADER, b"")
        if kind == b"user_enrolled":
            await enrollment.user_enrolled(event)
        elif kind == b"item_progress":
            await enrollment.item_progress(event)
        else:
            batch.dead_letter(ENROLLMENT_INPUTS, event.key, event.value, f"unknown kind {kind!r}")

    async def decide_or_dead_letter(event: Any) -> None:
        """A bug on one input must not stop every course on the partition."""
        try:
            await decide_one(event)
        except Exception as exc:
            log.exception("course input failed", extra={"topic": event.message.topic})
            batch.dead_letter(event.message.topic, event.key, event.value, repr(exc), code="error")

    @app.agent(topic, name="apply-course-commands", concurrency=1)
    async def apply_course_commands(stream: Any) -> None:
        # take_events acks a batch's inputs only when the next batch is asked for, that
        # is after flush() applied all their effects.
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            try:
                batch.begin()
                for event in events:
                    with batch.deciding(event):
                        await decide_or_dead_letter(event)
                await batch.flush()
            except Exception as exc:
                stop_unapplied(exc)

    return apply_course_commands

"""One input of the course agent, decoded: what it is, where it came from, whom to answer.

The agent (streams/agent.py) reads two topics keyed by course id: `course-commands`
(commands from the API) and the enrollment inputs (`user_enrolled` and `item_progress`
records re-keyed by the router). Each becomes an `Input` whose `kind` picks its route
(streams/routes.py), and its route's `Handler` decides it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from course_management.domain.commands import Actor, CourseCommand
from course_management.domain.consistency import Marks
from course_management.domain.outcomes import Reply
from course_management.streams.batch import Batch


@dataclass(frozen=True)
class Input:
    kind: str  # a command type (create_course, ...) or an enrollment input kind
    source_topic: str  # where it was first written (its dead letters go to `<topic>.dlq`)
    key: bytes | None  # its key on `source_topic`
    raw: bytes | None  # its value as read
    value: dict[str, Any]  # decoded
    reply_to: str | None  # the reply topic of the worker waiting for the answer
    correlation_id: str | None  # what that worker waits on
    command: CourseCommand | None = None  # course commands only
    # enrollment inputs: (agent partition, source partition, source offset), where the
    # router read it (streams/tracking.py); None for commands and older forwards
    source_position: tuple[int, int, int] | None = None

    @property
    def from_request(self) -> bool:
        """Sent by this service's API for a request that waits for the answer."""
        return bool(self.reply_to and self.correlation_id)


# Decides one input against the batch's view of the table and stages its effects.
Handler = Callable[[Batch, Input], Awaitable[None]]


def command_from_record(value: dict[str, Any]) -> CourseCommand:
    """A `course-commands` value as the domain's command."""
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


def stage_answer(batch: Batch, item: Input, reply: Reply, marks: Marks | None = None) -> None:
    """Stage the reply to whoever waits for this input (nobody: nothing to do), with the
    marks of its consistency token (none for a refusal)."""
    if item.reply_to and item.correlation_id:
        kept = None if reply.refusal is not None else marks
        batch.stage_reply(item.reply_to, item.correlation_id, reply, kept)


def required_command(item: Input) -> CourseCommand:
    if item.command is None:
        raise TypeError(f"{item.kind} is a course command, but this input has none")
    return item.command

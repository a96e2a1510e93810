"""One input of the course agent, decoded: what it is, where it came from, whom to answer.

The agent (streams/agent.py) reads two topics keyed by course id: `course-commands`
(commands from the API) and the enrollment inputs (`user_enrolled` and `item_progress`
records re-keyed by the router). Each becomes an `Input` whose `kind` picks its handler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from course_management.domain.commands import Actor, CourseCommand
from course_management.domain.outcomes import Reply
from course_management.streams.batch import Batch


@dataclass(frozen=True)
class Input:
    kind: str  # a command type (create_course, ...) or an enrollment input kind
    topic: str  # where a dead letter of it goes (`<topic>.dlq`)
    key: bytes | None  # its key on `topic`
    raw: bytes | None  # its value as read
    value: dict[str, Any]  # decoded
    reply_to: str | None  # the reply topic of the worker waiting for the answer
    correlation_id: str | None  # what that worker waits on
    command: CourseCommand | None = None  # course commands only


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


def stage_answer(batch: Batch, item: Input, reply: Reply) -> None:
    """Stage the reply to whoever waits for this input (nobody: nothing to do)."""
    if item.reply_to and item.correlation_id:
        batch.stage_reply(item.reply_to, item.correlation_id, reply)


def required_command(item: Input) -> CourseCommand:
    if item.command is None:
        raise TypeError(f"{item.kind} is a course command, but this input has none")
    return item.command

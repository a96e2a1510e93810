"""`CourseCommand` on course-commands (schemas/course_command.avsc): a command of the API
for the course agent, with the reply topic of the worker that waits for its answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from course_management.domain.commands import Actor, CourseCommand
from course_management.topology import COURSE_COMMANDS, spec

TOPIC = COURSE_COMMANDS
SUBJECT = spec(TOPIC).subject


@dataclass(frozen=True)
class SentCommand:
    command: CourseCommand
    reply_to: str | None  # the reply topic of the worker waiting (None: nobody waits)


def encode(sent: SentCommand) -> dict[str, Any]:
    command = sent.command
    return {
        "command_id": command.command_id,
        "command_type": command.command_type,
        "occurred_at": command.occurred_at,
        "course_id": command.course_id,
        "actor": {
            "id": command.actor.id,
            "name": command.actor.name,
            "roles": list(command.actor.roles),
        },
        "payload_json": json.dumps(command.payload, ensure_ascii=False),
        "payload_hash": command.payload_hash,
        "expected_version": command.expected_version,
        "reply_to": sent.reply_to,
    }


def decode(value: dict[str, Any]) -> SentCommand:
    actor = value["actor"]
    command = CourseCommand(
        command_id=value["command_id"],
        command_type=value["command_type"],
        course_id=value["course_id"],
        occurred_at=value["occurred_at"].astimezone(UTC),
        actor=Actor(actor["id"], actor["name"], tuple(actor["roles"])),
        payload=json.loads(value["payload_json"] or "{}"),
        payload_hash=value["payload_hash"],
        expected_version=value["expected_version"],
    )
    return SentCommand(command, value.get("reply_to"))

"""`CommandReply` on a worker's reply topic (schemas/command_reply.avsc): the course agent's
answer to a command or input the API sent, keyed by its correlation id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from course_management.domain.outcomes import Outcome, Reply
from course_management.topology import REPLY_SUBJECT

SUBJECT = REPLY_SUBJECT


@dataclass(frozen=True)
class CommandReply:
    command_id: str  # the correlation id the waiting request expects
    reply: Reply  # its `token`: the consistency token (None for a refusal)


def encode(answer: CommandReply) -> dict[str, Any]:
    reply = answer.reply
    return {
        "command_id": answer.command_id,
        # Superseded by `outcome` (2026-11): written as 0 for a worker of the version before
        # it during a rolling upgrade. The field and the `status` branch of `decode` go in
        # the first release after 2027-01-01, when no such worker can still run.
        "status": 0,
        "outcome": reply.outcome,
        "body_json": json.dumps(reply.body) if reply.body is not None else None,
        "consistency_token": reply.token,
    }


def decode(value: dict[str, Any]) -> CommandReply:
    body = json.loads(value["body_json"]) if value["body_json"] else None
    if value.get("outcome"):
        reply = Reply(value["outcome"], body, value.get("consistency_token"))
    else:
        reply = _reply_of_status(int(value["status"]), body)
    return CommandReply(value["command_id"], reply)


_LEGACY_OUTCOMES = {201: Outcome.CREATED, 200: Outcome.APPLIED, 204: Outcome.REMOVED}


def _reply_of_status(status: int, body: dict[str, Any] | None) -> Reply:
    """A reply from a worker of the version before `outcome` (during a rolling upgrade):
    its status, and a problem document as the body of a refusal."""
    if status in _LEGACY_OUTCOMES:
        return Reply(_LEGACY_OUTCOMES[status], body)
    problem = body or {}
    kind = str(problem.get("type", "internal")).rsplit("/", 1)[-1]
    return Reply(
        kind,
        {"kind": kind, "detail": problem.get("detail", ""), "errors": problem.get("errors", [])},
    )

"""One input of the course agent, decoded: what it is, where it came from, whom to answer.

The agent (streams/agent.py) reads two topics keyed by course id: `course-commands`
(commands from the API) and the enrollment inputs (`user_enrolled` and `item_progress`
records re-keyed by the router). Each becomes an `Input` carrying its typed message (the
wire message's decoded value, messages/), whose `kind` picks its route
(streams/routes.py), and its route's `Handler` decides it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from course_management.domain.commands import CourseCommand
from course_management.domain.consistency import Marks
from course_management.domain.enrollment import EnrollInput, ProgressInput
from course_management.domain.outcomes import Reply
from course_management.messages import item_progress, user_enrolled
from course_management.streams.batch import Batch

Message = CourseCommand | EnrollInput | ProgressInput
M = TypeVar("M", CourseCommand, EnrollInput, ProgressInput)

# How the enrollment inputs' values decode, by their source topic (a course command's by
# messages/course_command.py, before its type, and so its route, is known).
INPUT_DECODERS: dict[str, Callable[[dict[str, Any]], Message]] = {
    user_enrolled.TOPIC: user_enrolled.decode,
    item_progress.TOPIC: item_progress.decode,
}


@dataclass(frozen=True)
class Input:
    kind: str  # a command type (create_course, ...) or an enrollment input kind
    source_topic: str  # where it was first written (its dead letters go to `<topic>.dlq`)
    key: bytes | None  # its key on `source_topic`
    raw: bytes | None  # its value as read
    message: Message  # decoded and typed
    reply_to: str | None  # the reply topic of the worker waiting for the answer
    correlation_id: str | None  # what that worker waits on
    # enrollment inputs: (agent partition, source partition, source offset), where the
    # router read it (streams/tracking.py); None for commands and older forwards
    source_position: tuple[int, int, int] | None = None
    # enrollment inputs: when the router forwarded it (its record's timestamp); an input
    # claiming a later moment is taken at this one (decision 56: no date is passed early)
    received_at: datetime | None = None

    def moment(self, claimed: datetime) -> datetime:
        """The moment a decision takes the input at: its own, never after its receipt."""
        return claimed if self.received_at is None else min(claimed, self.received_at)

    @property
    def from_request(self) -> bool:
        """Sent by this service's API for a request that waits for the answer."""
        return bool(self.reply_to and self.correlation_id)


# Decides one input against the batch's view of the table and stages its effects.
Handler = Callable[[Batch, Input], Awaitable[None]]


def message_of(item: Input, kind: type[M]) -> M:
    """The input's message, which its route says is a `kind` (a TypeError if not: a bug)."""
    if not isinstance(item.message, kind):
        raise TypeError(f"{item.kind} carries a {kind.__name__}, not {item.message!r}")
    return item.message


def stage_answer(batch: Batch, item: Input, reply: Reply, marks: Marks | None = None) -> None:
    """Stage the reply to whoever waits for this input (nobody: nothing to do), with the
    marks of its consistency token (none for a refusal)."""
    if item.reply_to and item.correlation_id:
        kept = None if reply.refusal is not None else marks
        batch.stage_reply(item.reply_to, item.correlation_id, reply, kept)

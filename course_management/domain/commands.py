"""Course commands and the pure decision each one leads to. No I/O.

`decide_create`, `decide_update` and `decide_delete` (one per command type; the agent's
route table, streams/routes.py, picks one by the command's type) take the course's table
record (or None) and a command and return what to do: the new record, the event to
publish, the reply to the caller. (Ratings: domain/ratings.py; cancellations:
domain/enrollment.py.)

It is deterministic: ids and timestamps come from the command (`command_id`,
`occurred_at`), never from the clock or a random source. So when a crash makes Kafka
deliver a command again, the worker decides exactly the same thing, and a re-published
event carries the same `event_id`, which consumers deduplicate on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from course_management.domain.access import can_change, can_delete, can_see
from course_management.domain.course import (
    course_size_error,
    new_course,
    updated_course,
    with_new_version,
)
from course_management.domain.course_fields import CourseFields, CourseUpdate
from course_management.domain.events import CourseEvent
from course_management.domain.outcomes import (
    Outcome,
    Refusal,
    RefusalKind,
    Reply,
    invalid,
    invalid_from,
)
from course_management.domain.records import Course, CourseRecord, RememberedReply

RECENT_COMMANDS_KEPT = 16


@dataclass(frozen=True)
class Actor:
    id: str
    name: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass(frozen=True)
class CourseCommand:
    command_id: str
    # create_course | update_course | delete_course | rate_course | cancel_enrollment
    command_type: str
    course_id: str
    occurred_at: datetime
    actor: Actor
    payload: dict[str, Any] = field(default_factory=dict)
    payload_hash: str = ""
    expected_version: int | None = None


@dataclass(frozen=True)
class CourseDecision:
    record: CourseRecord | None  # the new table record; None: leave the table as it is
    event: CourseEvent | None  # the event to publish; None: nothing changed
    reply: Reply


def derived_id(command_id: str, purpose: str) -> str:
    """A stable id for something a command creates (its event, a module, an item)."""
    try:
        base = uuid.UUID(command_id)
    except ValueError:  # ids from other services are not always UUIDs
        base = uuid.uuid5(uuid.NAMESPACE_OID, command_id)
    return str(uuid.uuid5(base, purpose))


def remember(
    record: CourseRecord, command_id: str, reply: Reply, *, course_reply: bool = False
) -> CourseRecord:
    """Keep a command's reply for its repeats. A reply that is the course keeps only the
    version: sixteen copies of a large course would not fit one Kafka record."""
    recent = [r for r in record.get("recent", []) if r["command_id"] != command_id]
    kept: RememberedReply = {"command_id": command_id, "outcome": reply.outcome}
    if course_reply and reply.body is not None:
        kept["course_version"] = reply.body["version"]
    else:
        kept["body"] = reply.body
    recent.append(kept)
    return {**record, "recent": recent[-RECENT_COMMANDS_KEPT:]}


def replayed(record: CourseRecord, seen: RememberedReply) -> Reply:
    """The answer to a repeat of a remembered command: its outcome, and for a course reply
    the course as it is now (at or after the version the command made)."""
    if "course_version" in seen:
        return Reply(seen["outcome"], record.get("course"))
    return Reply(seen["outcome"], seen["body"])


def course_event(
    command: CourseCommand, event_type: str, course: Course | None, version: int
) -> CourseEvent:
    return {
        "event_id": derived_id(command.command_id, "event"),
        "event_type": event_type,
        "occurred_at": command.occurred_at,
        "course_id": command.course_id,
        "version": version,
        "actor_id": command.actor.id,
        "course": course,
    }


def decide_create(record: CourseRecord | None, command: CourseCommand) -> CourseDecision:
    """create_course: a new course from the payload (a repeat gets the first answer)."""
    return _repeat(record, command) or _create(record, command)


def decide_update(record: CourseRecord | None, command: CourseCommand) -> CourseDecision:
    """update_course: the payload's fields over the course, at `expected_version`."""
    return _repeat(record, command) or _update(record, command)


def decide_delete(record: CourseRecord | None, command: CourseCommand) -> CourseDecision:
    """delete_course: the course marked deleted (its record stays, for repeats)."""
    return _repeat(record, command) or _delete(record, command)


def _repeat(record: CourseRecord | None, command: CourseCommand) -> CourseDecision | None:
    """A command this course already answered (a redelivery, a retried request): the
    answer it had, and nothing else."""
    if record is not None:
        for seen in record.get("recent", []):
            if seen["command_id"] == command.command_id:
                return CourseDecision(None, None, replayed(record, seen))
    return None


def _refuse(refusal: Refusal) -> CourseDecision:
    return CourseDecision(None, None, Reply.refusing(refusal))


def _new_ids(command: CourseCommand) -> Callable[[], str]:
    counter = iter(range(1_000_000))
    return lambda: derived_id(command.command_id, f"part-{next(counter)}")


def live_course(record: CourseRecord | None, actor: Actor) -> Course | None:
    """The course in a table record if it exists, is not deleted and the actor may see it."""
    course = record.get("course") if record else None
    if course is None or record is None or record.get("deleted") or not can_see(course, actor):
        return None
    course_: Course = course
    return course_


def _changeable(record: CourseRecord | None, command: CourseCommand) -> Course | Refusal:
    """The live course the actor may change, or why not (unknown, not theirs, stale)."""
    course = live_course(record, command.actor)
    if course is None:
        return Refusal(RefusalKind.COURSE_NOT_FOUND, f"no course {command.course_id}")
    if not can_change(course, command.actor):
        return Refusal(
            RefusalKind.NOT_COURSE_OWNER,
            "only the course's instructor, a co-instructor or an admin may change it",
        )
    if command.expected_version is not None and command.expected_version != course["version"]:
        return Refusal(
            RefusalKind.VERSION_MISMATCH,
            f"If-Match names version {command.expected_version}; "
            f"the course is at {course['version']}",
        )
    return course


def _owners_only(course: Course, command: CourseCommand, doing: str) -> Refusal | None:
    if can_delete(course, command.actor):
        return None
    return Refusal(RefusalKind.NOT_COURSE_OWNER, f"only the course's owner or an admin may {doing}")


def _update(record: CourseRecord | None, command: CourseCommand) -> CourseDecision:
    course = _changeable(record, command)
    if isinstance(course, Refusal):
        return _refuse(course)
    assert record is not None
    if "staff" in command.payload:
        refusal = _owners_only(course, command, "change its staff")
        if refusal is not None:
            return _refuse(refusal)
    try:
        changes = CourseUpdate.model_validate(command.payload)
    except ValidationError as exc:
        return _refuse(invalid_from(exc))
    candidate, errors = updated_course(
        course, changes, set(command.payload), command.occurred_at, _new_ids(command)
    )
    if errors:
        return _refuse(invalid(errors))
    if candidate == course:  # nothing changed: no new version, no event
        same = Reply(Outcome.UNCHANGED, course)
        return CourseDecision(
            remember(record, command.command_id, same, course_reply=True), None, same
        )
    too_large = course_size_error(candidate)
    if too_large:
        return _refuse(invalid([too_large]))
    changed = with_new_version(candidate, command.occurred_at)
    reply = Reply(Outcome.APPLIED, changed)
    return CourseDecision(
        remember({**record, "course": changed}, command.command_id, reply, course_reply=True),
        course_event(command, "course_updated", changed, changed["version"]),
        reply,
    )


def _delete(record: CourseRecord | None, command: CourseCommand) -> CourseDecision:
    course = _changeable(record, command)
    if isinstance(course, Refusal):
        return _refuse(course)
    assert record is not None
    refusal = _owners_only(course, command, "delete it")
    if refusal is not None:
        return _refuse(refusal)
    gone = with_new_version(course, command.occurred_at)
    reply = Reply(Outcome.REMOVED, None)
    return CourseDecision(
        remember({**record, "course": gone, "deleted": True}, command.command_id, reply),
        course_event(command, "course_deleted", None, gone["version"]),
        reply,
    )


def _create(record: CourseRecord | None, command: CourseCommand) -> CourseDecision:
    if record is not None:
        # The course id was derived from an Idempotency-Key: this is a repeat of a create.
        first = record.get("create", {})
        if first.get("payload_hash") == command.payload_hash:
            return CourseDecision(None, None, Reply(Outcome.CREATED, first.get("reply")))
        return _refuse(
            invalid(
                [("Idempotency-Key", "this key was already used with a different request body")]
            )
        )
    try:
        fields = CourseFields.model_validate(command.payload)
    except ValidationError as exc:
        return _refuse(invalid_from(exc))
    course, errors = new_course(
        command.course_id,
        fields,
        instructor_id=command.actor.id,
        instructor_name=command.actor.name,
        now=command.occurred_at,
        new_id=_new_ids(command),
    )
    if errors:
        return _refuse(invalid(errors))
    too_large = course_size_error(course)
    if too_large:
        return _refuse(invalid([too_large]))
    reply = Reply(Outcome.CREATED, course)
    new_record: CourseRecord = {
        "course": course,
        "deleted": False,
        "create": {"payload_hash": command.payload_hash, "reply": course},
        "recent": [],
    }
    return CourseDecision(
        remember(new_record, command.command_id, reply, course_reply=True),
        course_event(command, "course_created", course, course["version"]),
        reply,
    )

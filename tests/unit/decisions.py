"""The course command decision the agent's route for a command's type makes
(streams/routes.py), for tests that build commands of several types."""

from __future__ import annotations

from course_management.domain.commands import (
    CourseCommand,
    CourseDecision,
    decide_create,
    decide_delete,
    decide_update,
)
from course_management.domain.records import CourseRecord

_BY_TYPE = {
    "create_course": decide_create,
    "update_course": decide_update,
    "delete_course": decide_delete,
}


def decide(record: CourseRecord | None, command: CourseCommand) -> CourseDecision:
    return _BY_TYPE[command.command_type](record, command)

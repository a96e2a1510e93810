"""The course agent's routes: every kind of input it takes, the topic it comes from, the
handler that decides it and the topics that handler may write. Read this table to know
what the agent does; nothing else dispatches.

Every route also writes, without naming them: the `course-state` table (its changelog,
through the unit of each batch), the dead letters of its own source (`<source>.dlq`), the
reply topic of a request waiting for the answer, and Redis. Any other record a handler
stages for a topic its route did not declare is refused by the batch
(`streams/batch.UndeclaredWrite`): the input is dead-lettered as an error and the test
that made it fails.

A kind with no route is a dead letter on its source topic (`invalid`).
"""

from __future__ import annotations

from dataclasses import dataclass

from course_management.streams import course_handlers, enrollment_handlers, job_handlers
from course_management.streams.inputs import Handler
from course_management.topology import (
    COURSE_CATALOG,
    COURSE_COMMANDS,
    COURSE_COMPLETIONS,
    COURSE_EVENTS,
    COURSE_RATINGS,
    ENROLLMENT_EVENTS,
    ENROLLMENT_INPUT_SOURCES,
    JOB_PROGRESS,
    LEARNER_MILESTONES,
)


@dataclass(frozen=True)
class Route:
    kind: str  # a command type, or an enrollment input's kind
    source: str  # the topic it is read from (its dead letters go to `<source>.dlq`)
    handler: Handler
    writes: frozenset[str]  # the topics its handler may stage records for


def _route(kind: str, source: str, handler: Handler, *writes: str) -> tuple[str, Route]:
    return kind, Route(kind, source, handler, frozenset(writes))


_COURSE = (COURSE_EVENTS, COURSE_CATALOG)
_ENROLLMENT = (ENROLLMENT_EVENTS, LEARNER_MILESTONES, COURSE_CATALOG, COURSE_COMPLETIONS)

ROUTES: dict[str, Route] = dict(
    (
        _route("create_course", COURSE_COMMANDS, course_handlers.create_course, *_COURSE),
        _route(  # a capacity raised promotes from the waitlist
            "update_course",
            COURSE_COMMANDS,
            course_handlers.update_course,
            *_COURSE,
            *_ENROLLMENT,
        ),
        _route(  # a deleted course's waitlist is emptied
            "delete_course",
            COURSE_COMMANDS,
            course_handlers.delete_course,
            *_COURSE,
            *_ENROLLMENT,
        ),
        _route(  # read-side: no course event (decision 52)
            "rate_course",
            COURSE_COMMANDS,
            course_handlers.rate_course,
            COURSE_CATALOG,
            COURSE_RATINGS,
        ),
        _route(  # a bulk enrolment job's chunk: its rows' enrolments and outcomes
            "enrollment_job",
            COURSE_COMMANDS,
            job_handlers.enrollment_job,
            *_ENROLLMENT,
            JOB_PROGRESS,
        ),
        _route(
            "cancel_enrollment",
            COURSE_COMMANDS,
            enrollment_handlers.cancel_enrollment,
            *_ENROLLMENT,
        ),
        _route(
            "user_enrolled",
            ENROLLMENT_INPUT_SOURCES["user_enrolled"],
            enrollment_handlers.user_enrolled,
            *_ENROLLMENT,
        ),
        _route(
            "item_progress",
            ENROLLMENT_INPUT_SOURCES["item_progress"],
            enrollment_handlers.item_progress,
            *_ENROLLMENT,
        ),
    )
)


def route_of(kind: str, source: str) -> Route | None:
    """The route of an input of `kind` read from `source` (None: not one the agent takes,
    such as a command type on an enrollment topic)."""
    route = ROUTES.get(kind)
    return route if route is not None and route.source == source else None

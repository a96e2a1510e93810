"""The sink that mirrors `course-events` into PostgreSQL (guarded by `version`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import faust

from course_management.infra.avro import AvroDecodeError
from course_management.infra.database import mirror_course_event
from course_management.infra.metrics import EVENTS_MIRRORED
from course_management.topology import COURSE_EVENTS

if TYPE_CHECKING:
    from course_management.runtime import Runtime

log = logging.getLogger(__name__)


def register_course_mirror(app: faust.App, runtime: Runtime) -> Any:
    topic = app.topic(
        COURSE_EVENTS,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(topic, name="mirror-course-events", concurrency=1)
    async def mirror_course_events(stream: Any) -> None:
        async for event in stream.events():
            try:
                value = await runtime.codec.decode(f"{COURSE_EVENTS}-value", event.value)
            except AvroDecodeError as exc:
                await runtime.dead_letter(COURSE_EVENTS, event.key, event.value, str(exc))
                continue
            changed = await runtime.with_db_retry(mirror_course_event, value)
            EVENTS_MIRRORED.labels("course", "applied" if changed else "skipped").inc()

    return mirror_course_events

"""The sink that mirrors `enrollment-events` into PostgreSQL (guarded by `version`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust

from course_management.infra.avro import AvroDecodeError
from course_management.infra.database import mirror_enrollment_event
from course_management.infra.metrics import EVENTS_MIRRORED
from course_management.topology import ENROLLMENT_EVENTS

if TYPE_CHECKING:
    from course_management.runtime import Runtime


def register_enrollment_mirror(app: faust.App, runtime: Runtime) -> Any:
    topic = app.topic(
        ENROLLMENT_EVENTS,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(topic, name="mirror-enrollment-events", concurrency=1)
    async def mirror_enrollment_events(stream: Any) -> None:
        async for event in stream.events():
            try:
                value = await runtime.codec.decode(f"{ENROLLMENT_EVENTS}-value", event.value)
            except AvroDecodeError as exc:
                await runtime.dead_letter(ENROLLMENT_EVENTS, event.key, event.value, str(exc))
                continue
            changed = await runtime.with_db_retry(mirror_enrollment_event, value)
            EVENTS_MIRRORED.labels("enrollment", "applied" if changed else "skipped").inc()

    return mirror_enrollment_events

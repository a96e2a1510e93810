"""Sinks that mirror an event topic into PostgreSQL, one upsert per event (version-guarded).

Undecodable events go to `<topic>.dlq`; while PostgreSQL is unreachable the stream waits
(retries with backoff) rather than skipping an event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import faust

from course_management.infra.avro import AvroDecodeError
from course_management.infra.database import mirror_course_event, mirror_enrollment_event
from course_management.infra.metrics import EVENTS_MIRRORED
from course_management.topology import COURSE_EVENTS, ENROLLMENT_EVENTS

if TYPE_CHECKING:
    from course_management.runtime import Runtime

Writer = Callable[[asyncpg.Pool, dict[str, Any]], Awaitable[bool]]


def register_mirrors(app: faust.App, runtime: Runtime) -> list[Any]:
    return [
        _mirror(app, runtime, COURSE_EVENTS, "course", mirror_course_event),
        _mirror(app, runtime, ENROLLMENT_EVENTS, "enrollment", mirror_enrollment_event),
    ]


def _mirror(app: faust.App, runtime: Runtime, source: str, entity: str, write: Writer) -> Any:
    topic = app.topic(
        source, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def mirror(stream: Any) -> None:
        async for event in stream.events():
            try:
                value = await runtime.codec.decode(f"{source}-value", event.value)
            except AvroDecodeError as exc:
                await runtime.dead_letter(source, event.key, event.value, str(exc))
                continue
            changed = await runtime.with_db_retry(write, value)
            EVENTS_MIRRORED.labels(entity, "applied" if changed else "skipped").inc()

    mirror.__name__ = f"mirror_{entity}_events"
    return app.agent(topic, name=f"mirror-{source}", concurrency=1)(mirror)

"""Re-keys `user-enrolled` and `course-progress` by course id.

Other services may key these topics any way they like. Undecodable or incomplete records
go to `<topic>.dlq` with the reason; the stream goes on. Good records are forwarded as they
are (same bytes, same headers, plus their kind) to the internal enrollment-inputs topic,
keyed by course id, where the agent owning the course applies them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust

from course_management.infra.avro import AvroDecodeError
from course_management.topology import (
    COURSE_PROGRESS,
    ENROLLMENT_INPUTS,
    KIND_HEADER,
    SOURCE_KEY_HEADER,
    USER_ENROLLED,
)

if TYPE_CHECKING:
    from course_management.runtime import Runtime

KINDS = {USER_ENROLLED: b"user_enrolled", COURSE_PROGRESS: b"item_progress"}
REQUIRED = {
    USER_ENROLLED: ("event_id", "course_id", "user_id"),
    COURSE_PROGRESS: ("event_id", "course_id", "user_id", "item_id"),
}


def register_enrollment_router(app: faust.App, runtime: Runtime) -> list[Any]:
    agents = []
    for source in (USER_ENROLLED, COURSE_PROGRESS):
        agents.append(_router(app, runtime, source))
    return agents


def _router(app: faust.App, runtime: Runtime, source: str) -> Any:
    topic = app.topic(
        source, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def route(stream: Any) -> None:
        # One record at a time, each forward acked before the record is: batching with
        # Faust's take_events lost records after a SIGKILL (docs/decisions/0020).
        async for event in stream.events():
            try:
                value = await runtime.codec.decode(f"{source}-value", event.value)
                missing = [name for name in REQUIRED[source] if not value.get(name)]
                if missing:
                    raise AvroDecodeError(f"empty {', '.join(missing)}")
            except AvroDecodeError as exc:
                await runtime.dead_letter(source, event.key, event.value, str(exc), "malformed")
                continue
            own = (KIND_HEADER, SOURCE_KEY_HEADER)
            headers = [(k, v) for k, v in (event.headers or {}).items() if k not in own]
            await runtime.forward_all(
                [
                    (
                        ENROLLMENT_INPUTS,
                        str(value["course_id"]),
                        event.value,
                        [
                            *headers,
                            (KIND_HEADER, KINDS[source]),
                            (SOURCE_KEY_HEADER, event.key or b""),
                        ],
                    )
                ]
            )

    route.__name__ = f"route_{source.replace('-', '_')}"
    return app.agent(topic, name=f"route-{source}", concurrency=1)(route)

"""Re-keys `user-enrolled` by course id (other services may key it any way they like).

Undecodable or incomplete records go to `user-enrolled.dlq` with the reason; the stream
goes on. Good records are forwarded as they are (same bytes, same headers) to the
internal enrollment-inputs topic, keyed by course id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import faust

from course_management.infra.avro import AvroDecodeError
from course_management.topology import ENROLLMENT_INPUTS, KIND_HEADER, USER_ENROLLED

if TYPE_CHECKING:
    from course_management.runtime import Runtime


def register_enrollment_router(app: faust.App, runtime: Runtime) -> Any:
    topic = app.topic(
        USER_ENROLLED,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(topic, name="route-user-enrolled", concurrency=1)
    async def route_user_enrolled(stream: Any) -> None:
        async for event in stream.events():
            try:
                value = await runtime.codec.decode(f"{USER_ENROLLED}-value", event.value)
                course_id = str(value["course_id"])
                if not course_id or not value.get("user_id") or not value.get("event_id"):
                    raise AvroDecodeError("course_id, user_id and event_id are required")
            except AvroDecodeError as exc:
                await runtime.dead_letter(
                    USER_ENROLLED, event.key, event.value, str(exc), "malformed"
                )
                continue
            headers = [(k, v) for k, v in (event.headers or {}).items() if k != KIND_HEADER]
            await runtime.forward(
                ENROLLMENT_INPUTS,
                course_id,
                event.value,
                [*headers, (KIND_HEADER, b"user_enrolled")],
            )

    return route_user_enrolled

"""Re-keys `user-enrolled` and `course-progress` by course id.

Other services may key these topics any way they like. Undecodable or incomplete records
go to `<topic>.dlq` with the reason; the stream goes on. Good records are forwarded as they
are (same bytes, same headers, plus their kind) to the internal enrollment-inputs topic,
keyed by course id, where the agent owning the course applies them.

The router keeps no state, so it is a plain consumer group (`course-management-router`)
that forwards a batch, waits for the broker's acks, and only then commits: a crash
replays at most that batch, and the course agent ignores repeats by `event_id`. (As a
Faust agent it lost records after a SIGKILL: docs/decisions/0020.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiokafka import ConsumerRecord

from course_management.domain.enrollment import malformed_input
from course_management.infra.avro import AvroDecodeError
from course_management.infra.kafka import Headers
from course_management.streams.sinks import GroupConsumer, dead_letters_of
from course_management.topology import (
    APP_ID,
    COURSE_PROGRESS,
    ENROLLMENT_INPUTS,
    KIND_HEADER,
    SOURCE_KEY_HEADER,
    USER_ENROLLED,
)

if TYPE_CHECKING:
    from course_management.runtime import Runtime

ROUTER_GROUP = f"{APP_ID}-router"
KINDS = {USER_ENROLLED: b"user_enrolled", COURSE_PROGRESS: b"item_progress"}
REQUIRED = {
    USER_ENROLLED: ("event_id", "course_id", "user_id"),
    COURSE_PROGRESS: ("event_id", "course_id", "user_id", "item_id"),
}


def enrollment_router(runtime: Runtime) -> GroupConsumer:
    async def route(source: str, records: list[ConsumerRecord]) -> None:
        forwards: list[tuple[str, str, bytes, Headers]] = []
        for record in records:
            try:
                value = await runtime.codec.decode(f"{source}-value", record.value)
                reason = malformed_input(value, REQUIRED[source])
                if reason:
                    raise AvroDecodeError(reason)
            except AvroDecodeError as exc:
                await runtime.dead_letter(source, record.key, record.value, str(exc), "malformed")
                continue
            own = (KIND_HEADER, SOURCE_KEY_HEADER)
            headers = [(k, v) for k, v in (record.headers or ()) if k not in own]
            forwards.append(
                (
                    ENROLLMENT_INPUTS,
                    str(value["course_id"]),
                    record.value,
                    [
                        *headers,
                        (KIND_HEADER, KINDS[source]),
                        (SOURCE_KEY_HEADER, record.key or b""),
                    ],
                )
            )
        await runtime.forward_all(forwards)

    return GroupConsumer(
        runtime.settings.kafka_bootstrap_servers,
        ROUTER_GROUP,
        [USER_ENROLLED, COURSE_PROGRESS],
        route,
        dead_letters_of(runtime),
    )

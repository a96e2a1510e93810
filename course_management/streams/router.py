"""Re-keys `user-enrolled` and `course-progress` by course id (topic -> enrollment inputs).

Other services may key these topics any way they like. Undecodable or incomplete records
go to `<topic>.dlq` with the reason; the stream goes on. Good records are forwarded as they
are (same bytes, same headers, plus their kind and where they were read: source key,
partition and offset) to the internal enrollment-inputs topic, keyed by course id, where
the agent owning the course applies them (and skips what it applied before: a replay of
a source topic changes nothing, streams/tracking.py).

The router keeps no state, so its handlers run in a plain consumer group
(topology.ROUTER_GROUP) that forwards a batch, waits for the broker's acks, and only then
commits: a crash replays at most that batch, and the course agent skips the records it
has applied already, by their source offsets. (As a Faust agent it lost records after a
SIGKILL: docs/decisions/0020.)

Reads: user-enrolled, course-progress. Writes: course-management-enrollment-inputs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord

from course_management.infra.avro import AvroCodec
from course_management.infra.dead_letters import (
    MALFORMED,
    DeadLetter,
    decode_or_dead_letter,
)
from course_management.infra.kafka import RecordsHandler
from course_management.infra.publisher import RawRecord
from course_management.messages import item_progress, user_enrolled
from course_management.topology import (
    ENROLLMENT_INPUT_SOURCES,
    ENROLLMENT_INPUTS,
    KIND_HEADER,
    SOURCE_KEY_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    spec,
)

# source topic -> the kind each forward is named by (topology.ENROLLMENT_INPUT_SOURCES)
KINDS = {source: kind.encode() for kind, source in ENROLLMENT_INPUT_SOURCES.items()}
# What makes each source's record unusable (an empty id, ...): a ValueError naming it.
CHECKS = {user_enrolled.TOPIC: user_enrolled.check, item_progress.TOPIC: item_progress.check}
SendEncoded = Callable[[list[RawRecord]], Awaitable[None]]


class EnrollmentRouter:
    def __init__(
        self, codec: AvroCodec, send_encoded: SendEncoded, dead_letter: DeadLetter
    ) -> None:
        self._codec = codec
        self._send_encoded = send_encoded
        self._dead_letter = dead_letter

    def handlers(self) -> dict[str, RecordsHandler]:
        """The router's consumer group handlers, by source topic."""
        return {source: self._handler(source) for source in KINDS}

    def _handler(self, source: str) -> RecordsHandler:
        async def route(records: list[ConsumerRecord]) -> None:
            await self.route(source, records)

        return route

    async def route(self, source: str, records: list[ConsumerRecord]) -> None:
        check = CHECKS[source]

        def complete(value: dict[str, Any]) -> dict[str, Any]:
            check(value)
            return value

        forwards: list[RawRecord] = []
        for record in records:
            value = await decode_or_dead_letter(
                self._codec,
                spec(source),
                record.key,
                record.value,
                self._dead_letter,
                parse=complete,
                code=MALFORMED,
            )
            if value is None:
                continue
            own = (KIND_HEADER, SOURCE_KEY_HEADER, SOURCE_PARTITION_HEADER, SOURCE_OFFSET_HEADER)
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
                        (SOURCE_PARTITION_HEADER, str(record.partition).encode()),
                        (SOURCE_OFFSET_HEADER, str(record.offset).encode()),
                    ],
                )
            )
        await self._send_encoded(forwards)

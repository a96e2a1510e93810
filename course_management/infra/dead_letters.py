"""Decode a record's value, or dead-letter it: the one way every consumer does it.

The router, the sinks and the course agent all read Avro values they did not write
themselves. A value that does not decode (or that `parse` refuses) is kept on
`<topic>.dlq` with the reason, counted under its reason code, and the stream goes on.
How the dead letter is sent is the caller's: the consumer groups send it at once, the
course agent stages it in its batch (sent with the batch's events, before the table
writes that mark its input applied).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.topology import TopicSpec, dlq

T = TypeVar("T")

# (topic, key, value, reason, reason code): keeps a record on `<topic>.dlq`.
DeadLetter = Callable[[str, bytes | None, bytes | None, str, str], Awaitable[None]]

# The reason codes: the `reason` label of `cms_dead_letters_total` and the first word of
# the `dlq.reason` header (`refused: course-full: all 30 seats are taken`).
INVALID = "invalid"  # our own topics: a value that does not decode
MALFORMED = "malformed"  # another service's input: does not decode, or lacks a field
UNPROCESSABLE = "unprocessable"  # a consumer group failed on it again and again
ERROR = "error"  # deciding it raised (a bug): kept, the partition goes on
REFUSED = "refused"  # another service's input, well formed, that the rules refuse


def dead_letter_record(
    topic: str, key: bytes | None, value: bytes | None, reason: str, code: str
) -> tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """The record that keeps an unprocessable one on `<topic>.dlq`: its key and value as
    they were, and why in its headers (topic, key, value, headers)."""
    return (
        dlq(topic),
        key,
        value,
        [
            ("dlq.reason", f"{code}: {reason}"[:1000].encode()),
            ("dlq.code", code.encode()),
            ("dlq.source_topic", topic.encode()),
        ],
    )


class Malformed(ValueError):
    """Raised by a `parse` function: the value decoded but cannot be used."""


async def decode_or_dead_letter(
    codec: AvroCodec,
    topic: TopicSpec,
    key: bytes | None,
    value: bytes | None,
    dead_letter: DeadLetter,
    *,
    parse: Callable[[dict[str, Any]], T],
    code: str = INVALID,
) -> T | None:
    """`parse(decoded value)`, or None once the record is dead-lettered with the reason.

    `parse` may raise `Malformed`, `KeyError` or `ValueError` for a value it cannot use
    (`dict` keeps the value as it decoded). A registry outage is not a reason:
    `AvroCodec.decode` waits for the registry.
    """
    try:
        return parse(await codec.decode(topic.subject, value))
    except (AvroDecodeError, Malformed, KeyError, ValueError) as exc:
        await dead_letter(topic.name, key, value, str(exc), code)
        return None

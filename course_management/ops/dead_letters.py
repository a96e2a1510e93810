"""`course-management ops dlq show | replay`: the dead-letter topics, read and replayed.

A dead letter is the original record (key and value as they were) on `<topic>.dlq`, with
the headers `dlq.code` (the reason code: malformed, refused, invalid, unprocessable,
error), `dlq.reason` and `dlq.source_topic` (infra/publisher.py).

A replay sends the record back to its source topic, with the header `dlq.replayed_from`
naming its place (`<dlq topic>:<partition>:<offset>`), and then notes that place on the
compacted topic `course-management-dlq-replays`. A record whose place is noted there is
not sent again, so replaying twice changes nothing. (A replay cut between the send and
the note sends it once more; every consumer deduplicates a repeat by its event id.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord

from course_management.domain.times import rfc3339
from course_management.infra.kafka import new_producer, read_to_end
from course_management.topology import DLQ_REPLAYS, DLQ_TOPICS

REPLAYED_FROM = "dlq.replayed_from"


@dataclass(frozen=True)
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    timestamp_ms: int
    source_topic: str
    code: str
    reason: str
    key: bytes | None
    value: bytes | None

    @property
    def place(self) -> str:
        return f"{self.dlq_topic}:{self.partition}:{self.offset}"

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def shown(self) -> dict[str, Any]:
        return {
            "place": self.place,
            "at": rfc3339(self.at),
            "source_topic": self.source_topic,
            "code": self.code,
            "reason": self.reason,
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "value_bytes": len(self.value) if self.value is not None else 0,
        }


def _of(record: ConsumerRecord) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    return DeadLetter(
        dlq_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        source_topic=headers.get("dlq.source_topic", record.topic.removesuffix(".dlq")),
        code=headers.get("dlq.code", ""),
        reason=headers.get("dlq.reason", ""),
        key=record.key,
        value=record.value,
    )


async def read_dead_letters(
    bootstrap: str,
    topics: Iterable[str] = DLQ_TOPICS,
    on_read: Callable[[int, int], None] | None = None,
) -> list[DeadLetter]:
    """Every dead letter now on `topics`, oldest first within each partition."""
    found: list[DeadLetter] = []

    async def keep(records: list[ConsumerRecord]) -> None:
        found.extend(_of(r) for r in records)

    await read_to_end(bootstrap, topics, keep, on_read=on_read)
    return found


def select(
    letters: Iterable[DeadLetter],
    *,
    code: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    places: set[str] | None = None,
) -> list[DeadLetter]:
    """The dead letters matching every filter given."""
    return [
        letter
        for letter in letters
        if (code is None or letter.code == code)
        and (since is None or letter.at >= since)
        and (until is None or letter.at < until)
        and (places is None or letter.place in places)
    ]


def summary(letters: list[DeadLetter]) -> dict[str, Any]:
    by_code: dict[str, int] = {}
    by_topic: dict[str, int] = {}
    for letter in letters:
        by_code[letter.code] = by_code.get(letter.code, 0) + 1
        by_topic[letter.source_topic] = by_topic.get(letter.source_topic, 0) + 1
    return {"dead_letters": len(letters), "by_code": by_code, "by_source_topic": by_topic}


async def replayed_places(bootstrap: str) -> set[str]:
    places: set[str] = set()

    async def note(records: list[ConsumerRecord]) -> None:
        for record in records:
            if record.key is not None and record.value is not None:
                places.add(record.key.decode())

    await read_to_end(bootstrap, [DLQ_REPLAYS], note)
    return places


async def replay(
    bootstrap: str,
    letters: list[DeadLetter],
    on_replayed: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Send each dead letter not replayed before back to its source topic; returns the
    counts (replayed, skipped: replayed before)."""
    done = await replayed_places(bootstrap)
    todo = [letter for letter in letters if letter.place not in done]
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        for n, letter in enumerate(todo, start=1):
            headers = [(REPLAYED_FROM, letter.place.encode())]
            await producer.send_and_wait(
                letter.source_topic, value=letter.value, key=letter.key, headers=headers
            )
            noted = {"replayed_at": rfc3339(datetime.now(UTC)), "to": letter.source_topic}
            await producer.send_and_wait(
                DLQ_REPLAYS, key=letter.place.encode(), value=json.dumps(noted).encode()
            )
            if on_replayed is not None:
                on_replayed(n, len(todo))
    finally:
        await producer.stop()
    return {"replayed": len(todo), "skipped_replayed_before": len(letters) - len(todo)}

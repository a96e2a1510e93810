"""Operators' view of learning paths (issue 25; docs/runbook.md):

- `completions(...)`: each `course_completed` of enrollment-events and each entry of the
  completions topic (what every worker's completions index reads: decision 57);
- `backfill_completions(...)`: publish the entry of every completion that lacks one
  (completions made before the topic existed), idempotent (the topic is compacted by
  "<user id>:<course id>");
- `pending_timers(...)`: the time locks the agent still has to release, from the
  course-state changelog (placed records only), with how late each is.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord

from course_management.config import Settings
from course_management.domain.times import parse_rfc3339, rfc3339
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.kafka import new_producer, read_to_end
from course_management.messages import completion_entry, enrollment_event
from course_management.ops.provisioning import register_schemas
from course_management.tables.keys import DUE_PREFIX
from course_management.tables.units import decode_key, is_placed
from course_management.topology import STATE_TABLE, changelog

Completions = dict[str, str]  # "<user id>:<course id>" -> completed_at


async def completions(settings: Settings, codec: AvroCodec) -> tuple[Completions, Completions]:
    """(completions the enrollment events say, entries the completions topic holds)."""
    await register_schemas(codec)
    said: Completions = {}
    held: Completions = {}

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                if record.topic == completion_entry.TOPIC:
                    if record.value is None:
                        continue
                    entry = completion_entry.decode(
                        await codec.decode(completion_entry.SUBJECT, record.value)
                    )
                    held[entry.key] = entry.completed_at
                    continue
                event = await codec.decode(enrollment_event.SUBJECT, record.value)
            except AvroDecodeError:
                continue
            if event["event_type"] == "course_completed":
                completed_at = event["enrollment"]["progress"].get("completed_at")
                key = f"{event['user_id']}:{event['course_id']}"
                said.setdefault(key, completed_at or rfc3339(event["occurred_at"]))

    topics = [enrollment_event.TOPIC, completion_entry.TOPIC]
    await read_to_end(settings.kafka_bootstrap_servers, topics, keep)
    return said, held


async def backfill_completions(settings: Settings) -> dict[str, int]:
    codec = AvroCodec(settings.schema_registry_url)
    said, held = await completions(settings, codec)
    missing = sorted(set(said) - set(held))
    producer = new_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for key in missing:
            user_id, course_id = key.rsplit(":", 1)
            entry = completion_entry.CompletionEntry(user_id, course_id, said[key])
            value = codec.encode(completion_entry.SUBJECT, completion_entry.encode(entry))
            await producer.send(completion_entry.TOPIC, value=value, key=entry.key.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return {"completions": len(said), "published": len(missing)}


async def pending_timers(settings: Settings, course_id: str | None = None) -> list[dict[str, Any]]:
    """The due time locks of the course-state table (every course, or one), oldest first,
    each with `late_s` (how far past its moment it is now; negative: still ahead)."""
    due: dict[str, dict[str, Any]] = {}

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            key = decode_key(record.key) if record.key else ""
            if not key.startswith(DUE_PREFIX) or not is_placed(record.offset, record.headers):
                continue
            if record.value is None:
                due.pop(key, None)
            else:
                due[key] = json.loads(record.value)

    await read_to_end(settings.kafka_bootstrap_servers, [changelog(STATE_TABLE)], keep)
    now = datetime.now(UTC)
    shown = [
        {**value, "late_s": round((now - parse_rfc3339(value["moment"])).total_seconds(), 1)}
        for value in due.values()
        if value and (course_id is None or value.get("course_id") == course_id)
    ]
    return sorted(shown, key=lambda v: (v["moment"], v["course_id"], v.get("user_id") or ""))

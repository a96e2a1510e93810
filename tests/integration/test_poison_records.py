"""A record a consumer group cannot process, for a reason that is not an outage, is
dead-lettered after a few attempts instead of stopping the group for ever."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaProducer

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import OWNER, eventually_async, read_topic


async def test_a_course_event_the_mirror_cannot_store_is_dead_lettered(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    template = await http.post("/api/v1/courses/create", json={"title": "T"}, headers=OWNER)
    course = await template.json()

    def mine(records: list[Any], course_id: str) -> list[Any]:
        return [r for r in records if r.key == course_id.encode()]

    events = await read_topic(settings, "course-events", lambda rs: mine(rs, course["id"]))
    event = await codec.decode("course-events-value", mine(events, course["id"])[0].value)
    # PostgreSQL cannot store a NUL character in text: the mirror's write fails every time.
    poison_id = str(uuid.uuid4())
    poison = {
        **event,
        "event_id": str(uuid.uuid4()),
        "course_id": poison_id,
        "course": {**event["course"], "id": poison_id, "tags": ["bad\x00tag"]},
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            "course-events",
            value=codec.encode("course-events-value", poison),
            key=poison_id.encode(),
        )
    finally:
        await producer.stop()
    after = await http.post("/api/v1/courses/create", json={"title": "After"}, headers=OWNER)
    assert after.status == 201
    after_id = (await after.json())["id"]

    dead = await read_topic(
        settings, "course-events.dlq", lambda rs: mine(rs, poison_id), deadline_s=60
    )
    reason = dict(mine(dead, poison_id)[0].headers)["dlq.reason"].decode()
    assert "Error" in reason  # the database's refusal, named
    conn = await asyncpg.connect(settings.database_url)
    try:

        async def mirrored() -> bool:
            query = "SELECT count(*) FROM courses WHERE id = $1"
            return bool(await conn.fetchval(query, after_id) == 1)

        await eventually_async(mirrored, deadline_s=30, what="the next course mirrored")
    finally:
        await conn.close()

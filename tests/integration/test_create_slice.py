"""The thin slice, against the real stack: HTTP -> Avro command on Kafka -> Faust agent ->
RocksDB table -> course_created on course-events -> PostgreSQL mirror -> HTTP read."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import fastavro
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from tests.support import ONE_MODULE, WorkerProcess, auth, eventually_async, read_topic

INSTRUCTOR = auth("instructor-1", "instructor", name="Ada Instructor")


async def create_course(
    http: aiohttp.ClientSession, body: dict[str, Any], **headers: str
) -> aiohttp.ClientResponse:
    return await http.post("/api/v1/courses/create", json=body, headers={**INSTRUCTOR, **headers})


def test_readyz_answered_not_ready_before_recovery_then_ready(worker: WorkerProcess) -> None:
    statuses = [status for status, _ in worker.readiness_seen]
    assert statuses[-1] == 200
    early = [body for status, body in worker.readiness_seen if status == 503]
    assert early, "the API should answer /readyz (503) while tables recover"
    assert early[0]["checks"]["tables_recovered"] is False
    assert worker.readiness_seen[-1][1]["checks"] == {
        "tables_recovered": True,
        "kafka": True,
        "postgres": True,
        "schema_registry": True,
        "redis": True,
        "search": True,
    }


async def test_create_then_read_back(http: aiohttp.ClientSession) -> None:
    response = await create_course(http, {"title": "Streams 101", "description": "Kafka at work"})
    assert response.status == 201, await response.text()
    course = await response.json()
    assert response.headers["Location"] == f"/api/v1/courses/{course['id']}"
    assert response.headers["ETag"] == '"1.0.0.0"'
    assert course["title"] == "Streams 101"
    assert course["instructor"] == {"id": "instructor-1", "name": "Ada Instructor"}
    assert course["version"] == 1 and course["status"] == "draft"

    read = await http.get(f"/api/v1/courses/{course['id']}", headers=INSTRUCTOR)
    assert read.status == 200
    assert await read.json() == course
    assert read.headers["ETag"] == '"1.0.0.0"'

    cached = await http.get(
        f"/api/v1/courses/{course['id']}", headers={**INSTRUCTOR, "If-None-Match": '"1.0.0.0"'}
    )
    assert cached.status == 304


async def test_a_draft_is_hidden_from_others_but_not_from_admins(
    http: aiohttp.ClientSession,
) -> None:
    course = await (await create_course(http, {"title": "Secret draft"})).json()
    path = f"/api/v1/courses/{course['id']}"
    assert (await http.get(path)).status == 404
    assert (await http.get(path, headers=auth("instructor-2", "instructor"))).status == 404
    assert (await http.get(path, headers=auth("root", "admin"))).status == 200


async def test_a_published_course_is_readable_anonymously(http: aiohttp.ClientSession) -> None:
    body = {"title": "Open course", "status": "published", "modules": [ONE_MODULE]}
    course = await (await create_course(http, body)).json()
    response = await http.get(f"/api/v1/courses/{course['id']}")
    assert response.status == 200
    assert (await response.json())["status"] == "published"


async def test_unknown_course_is_404_problem(http: aiohttp.ClientSession) -> None:
    for course_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = await http.get(f"/api/v1/courses/{course_id}")
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_course_created_is_on_course_events_and_decodes_through_the_registry(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await (await create_course(http, {"title": "Evented"})).json()

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == course["id"].encode()]

    records = mine(await read_topic(settings, "course-events", mine))
    assert len(records) == 1
    raw = records[0].value
    assert raw[0] == 0  # Confluent wire format: magic byte, then the schema id
    registry = SchemaRegistryClient({"url": settings.schema_registry_url, "timeout": 10})
    latest = registry.get_latest_version("course-events-value")
    schema_id = int.from_bytes(raw[1:5], "big")
    assert schema_id == latest.schema_id
    # Decoded with the writer's schema as the registry serves it for that id, independent of
    # the service's codec. (Confluent's AvroDeserializer asks Apicurio for "associations",
    # an endpoint Apicurio never answers, so it is not used here.)
    writer = fastavro.parse_schema(json.loads(registry.get_schema(schema_id).schema_str))
    event = fastavro.schemaless_reader(io.BytesIO(raw[5:]), writer, None)
    assert event["event_type"] == "course_created"
    assert event["course_id"] == course["id"]
    assert event["version"] == 1
    assert event["actor_id"] == "instructor-1"
    assert event["course"]["title"] == "Evented"
    uuid.UUID(str(event["event_id"]))


async def test_the_mirror_row_exists_once_when_a_command_is_delivered_twice(
    settings: Settings, http: aiohttp.ClientSession
) -> None:
    """The same command record, delivered twice: one table change, one event, one row."""
    course_id, command_id, reply_topic = (
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        f"course-management-replies-test-{uuid.uuid4().hex[:8]}",  # a reply topic by name
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(reply_topic, 1, 1)])
    await admin.close()
    codec = AvroCodec(settings.schema_registry_url)
    from course_management.ops.provisioning import register_schemas

    await register_schemas(codec)
    value = codec.encode(
        "course-commands-value",
        {
            "command_id": command_id,
            "command_type": "create_course",
            "occurred_at": datetime.now(UTC),
            "course_id": course_id,
            "actor": {"id": "instructor-7", "name": "Dup", "roles": ["instructor"]},
            "payload_json": json.dumps({"title": "Delivered twice"}),
            "payload_hash": "same",
            "expected_version": None,
            "reply_to": reply_topic,
        },
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    for _ in range(2):
        await producer.send_and_wait("course-commands", value=value, key=course_id.encode())
    await producer.stop()

    replies = await read_topic(settings, reply_topic, lambda rs: len(rs) >= 2)
    decoded = [await codec.decode("course-management-replies-value", r.value) for r in replies]
    assert [d["outcome"] for d in decoded] == ["created", "created"]
    assert decoded[0]["body_json"] == decoded[1]["body_json"]

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == course_id.encode()]

    events = mine(await read_topic(settings, "course-events", mine))
    assert len(events) == 1

    pool = await asyncpg.connect(settings.database_url)
    try:

        async def row_count() -> int:
            return int(await pool.fetchval("SELECT count(*) FROM courses WHERE id = $1", course_id))

        await eventually_async(row_count, what="the mirror row")
        assert await row_count() == 1
        row = await pool.fetchrow(
            "SELECT version, title, instructor_id FROM courses WHERE id = $1", course_id
        )
        assert dict(row) == {
            "version": 1,
            "title": "Delivered twice",
            "instructor_id": "instructor-7",
        }
    finally:
        await pool.close()


async def test_a_mirror_row_follows_each_create(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await (await create_course(http, {"title": "Mirrored", "tags": ["a", "b"]})).json()
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await eventually_async(
            lambda: conn.fetchrow("SELECT * FROM courses WHERE id = $1", course["id"]),
            what="the mirror row",
        )
        assert row["title"] == "Mirrored" and list(row["tags"]) == ["a", "b"]
        assert json.loads(row["snapshot"]) == course
    finally:
        await conn.close()


async def test_idempotency_key_returns_the_first_result(http: aiohttp.ClientSession) -> None:
    key = f"key-{uuid.uuid4()}"
    first = await create_course(http, {"title": "Once"}, **{"Idempotency-Key": key})
    again = await create_course(http, {"title": "Once"}, **{"Idempotency-Key": key})
    assert first.status == again.status == 201
    assert await first.json() == await again.json()
    other = await create_course(http, {"title": "Twice?"}, **{"Idempotency-Key": key})
    assert other.status == 422
    assert (await other.json())["errors"][0]["field"] == "Idempotency-Key"

"""The schema registry stopped and started again under a running worker: a record whose
writer schema the worker has never seen waits for the registry, and is applied after;
it is never dead-lettered as undecodable. (The registry keeps its schemas in an H2 file,
so it comes back with them, as a real one would.)"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import fastavro
from confluent_kafka.schema_registry import Schema

from course_management.config import Settings
from course_management.infra.avro import AvroCodec, load_schema_text
from tests.support import ADMIN, WorkerProcess, eventually_async, produce, published_course

SUBJECT = "user-enrolled-value"


def evolved_user_enrolled() -> dict[str, Any]:
    """`UserEnrolled` as another service might evolve it (BACKWARD compatible)."""
    schema = json.loads(load_schema_text("user_enrolled.avsc"))
    extra = {"name": "referrer", "type": ["null", "string"], "default": None}
    schema["fields"].append(extra)
    return dict(schema)


def wire(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


async def test_a_record_with_an_unseen_schema_waits_for_the_registry_then_is_applied(
    http: aiohttp.ClientSession, settings: Settings, local_stack: Any, worker: WorkerProcess
) -> None:
    course = await published_course(http, title="Enrolled across a registry outage")
    schema = evolved_user_enrolled()
    codec = AvroCodec(settings.schema_registry_url)
    schema_id = await codec.client.register_schema(SUBJECT, Schema(json.dumps(schema), "AVRO"))
    user = f"referred-{uuid.uuid4().hex[:8]}"
    record = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC),
        "user_id": user,
        "course_id": course["id"],
        "source": "campaigns",
        "referrer": "newsletter",
    }
    registry = local_stack.server("schema-registry")
    log_before = len(worker.log_text())
    registry.stop()
    try:
        await produce(settings, "user-enrolled", [(user.encode(), wire(schema_id, schema, record))])

        # The worker waits: its fetch of the writer schema is retried with backoff, here
        # for longer than a consumer group's three quick attempts before a dead letter.
        async def waited_for_the_registry() -> bool:
            lines = worker.log_text()[log_before:].splitlines()
            return sum("Retrying" in line and "ConnectError" in line for line in lines) >= 4

        await eventually_async(waited_for_the_registry, what="the writer-schema fetch retried")
    finally:
        registry.restart()

    path = f"/api/v1/courses/{course['id']}/enrollments/{user}"

    async def enrolled() -> bool:
        return (await http.get(path, headers=ADMIN)).status == 200

    # Applied, so not dead-lettered (the router does one or the other).
    await eventually_async(enrolled, deadline_s=60, what="the enrollment applied")

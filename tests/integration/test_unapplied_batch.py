"""A batch Kafka refuses for good stops the worker (exit 75, EX_TEMPFAIL) without acking
its inputs, and after the restart its effects go out: nothing accepted is lost.

Since decision 49 the table's unit is durable before the events go out: the update is
applied (and may be answered) before the broker refuses its event; the restarted worker
publishes the unit's outbox again, and the event goes out once.

Outages are waited out (test_kafka_outage.py); this is the other case, an error Kafka
calls final. Here the broker refuses every `course-events` record: the topic's
`max.message.bytes` is set below the size of any course event while an update is
decided. Runs with the tests that restart the session's worker (last).
"""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from course_management.streams.agent import UNAPPLIED_EXIT_CODE
from course_management.topology import COURSE_EVENTS, TOPICS
from tests.support import (
    OWNER,
    TopicSettings,
    WorkerProcess,
    eventually,
    eventually_async,
    published_course,
    read_topic,
)

TOO_SMALL = "200"  # bytes: smaller than any course event


@pytest.mark.rebalances
async def test_a_batch_kafka_refuses_stops_the_worker_and_is_applied_after_the_restart(
    http: aiohttp.ClientSession, settings: Settings, worker: WorkerProcess
) -> None:
    course = await published_course(http, title="Before the refusal")
    usual = next(spec.config for spec in TOPICS if spec.name == COURSE_EVENTS)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    events = TopicSettings(admin, COURSE_EVENTS)
    try:
        await events.set(
            {**usual, "max.message.bytes": TOO_SMALL},
            then=("max.message.bytes", lambda v: v == TOO_SMALL),
        )
        update = {"json": {"title": "After the refusal"}, "headers": OWNER}
        # The command is accepted onto course-commands and applied (its unit is durable);
        # the worker then stops at its event, before or after answering.
        with contextlib.suppress(aiohttp.ClientError):
            response = await http.put(f"/api/v1/courses/{course['id']}/update", **update)
            assert response.status == 200 or response.status >= 500, await response.text()
        proc = worker.proc
        assert proc is not None
        exit_code = eventually(proc.poll, deadline_s=60, what="the worker stopped")
        assert exit_code == UNAPPLIED_EXIT_CODE
        assert "a batch could not be applied" in worker.log_text()
    finally:
        await events.set(usual, then=("max.message.bytes", lambda v: v != TOO_SMALL))
        await admin.close()

    worker.start().wait_ready()  # as an orchestrator restarts a stopped container

    async def updated() -> bool:
        response = await http.get(f"/api/v1/courses/{course['id']}", headers=OWNER)
        body: dict[str, Any] = await response.json()
        return body["title"] == "After the refusal" and body["version"] == course["version"] + 1

    await eventually_async(updated, deadline_s=60, what="the refused update applied")
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)  # the reader schemas

    key = course["id"].encode()
    records = await read_topic(  # its course_created, then at least one course_updated
        settings, COURSE_EVENTS, lambda rs: sum(r.key == key for r in rs) >= 2
    )
    decoded = [
        await codec.decode(f"{COURSE_EVENTS}-value", r.value) for r in records if r.key == key
    ]
    published = [e for e in decoded if e["event_type"] == "course_updated"]
    assert {e["version"] for e in published} == {course["version"] + 1}
    assert len({e["event_id"] for e in published}) == 1  # decided once, whatever the repeats

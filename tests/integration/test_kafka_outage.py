"""The broker stopped and started again under a running worker: writes answer 503 while
it is down (never hang, never 500), reads go on, and afterwards the same worker, without a
restart, applies writes again, and a write retried with its Idempotency-Key makes one
course."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from course_management.config import Settings
from tests.support import (
    OWNER,
    WorkerProcess,
    enroll,
    enrollments_under_way,
    eventually_async,
    published_course,
    read_topic,
    readiness_says,
)


@pytest.mark.rebalances
async def test_writes_answer_503_while_kafka_is_down_and_work_again_after(
    http: aiohttp.ClientSession, local_stack: Any, worker: WorkerProcess
) -> None:
    course = await published_course(http, title="Before the outage")
    kafka = local_stack.server("kafka")
    key = str(uuid.uuid4())
    body = {"title": "Created across the outage"}
    create = {"json": body, "headers": {**OWNER, "Idempotency-Key": key}}
    kafka.stop()
    try:
        response = await http.post("/api/v1/courses/create", **create)
        assert response.status == 503, await response.text()
        assert response.content_type == "application/problem+json"
        assert (await response.json())["type"].endswith("/kafka-unavailable")
        await readiness_says(http, "kafka", False)
        assert (await http.get("/readyz")).status == 503
        # Reads need no broker.
        read = await http.get(f"/api/v1/courses/{course['id']}")
        assert read.status == 200
    finally:
        kafka.restart()

    # The same worker recovers by itself: the retried create, then an enrollment.
    answers: list[str] = []

    async def created() -> dict[str, Any] | None:
        retry = await http.post("/api/v1/courses/create", **create)
        if retry.status in (200, 201):
            return dict(await retry.json())
        answers.append(f"{retry.status} {await retry.text()}")
        return None

    try:
        first = await eventually_async(created, deadline_s=90, what="a create after the outage")
    except AssertionError as exc:
        raise AssertionError(f"answers after the outage: {answers[:3]} ... {answers[-3:]}") from exc
    again = await http.post("/api/v1/courses/create", **create)
    assert again.status in (200, 201)
    assert (await again.json())["id"] == first["id"]  # one course for one key
    assert (await enroll(http, course["id"], "after-outage")).status == 201
    assert worker.proc is not None and worker.proc.poll() is None  # never restarted


N = 2000


@pytest.mark.rebalances
async def test_the_broker_stopped_mid_stream_loses_and_doubles_no_enrollment(
    http: aiohttp.ClientSession, settings: Settings, local_stack: Any, worker: WorkerProcess
) -> None:
    """The course agent has a batch in hand when the broker goes: it waits (no exit, no
    ack of an unapplied batch), and every accepted enrollment is applied once after."""
    burst = await enrollments_under_way(http, settings, N, "outage")
    course, codec, users, mine = burst.course, burst.codec, burst.users, burst.mine
    kafka = local_stack.server("kafka")
    kafka.stop()
    kafka.restart()

    async def seats() -> int:
        body = await (await http.get(f"/api/v1/courses/{course['id']}")).json()
        return int(body["enrollment_count"])

    async def all_seats() -> bool:
        return await seats() == N

    await eventually_async(all_seats, deadline_s=180, what=f"{N} seats taken")
    created: dict[str, set[str]] = {}
    events = await read_topic(settings, "enrollment-events", lambda rs: len(mine(rs)) >= N)
    for record in mine(events):
        event = await codec.decode("enrollment-events-value", record.value)
        created.setdefault(event["user_id"], set()).add(event["event_id"])
    assert sorted(created) == users  # every accepted enrollment has its event...
    assert all(len(ids) == 1 for ids in created.values())  # ...one, by event_id
    assert worker.proc is not None and worker.proc.poll() is None  # waited, never exited

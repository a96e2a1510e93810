"""Enrollment against the real stack: seats under concurrency, duplicates, the DLQ."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import delete_topic, ensure_topics
from course_management.infra.publisher import Publisher
from course_management.ops.provisioning import register_schemas
from course_management.topology import REPLY_SUBJECT, REPLY_TOPIC_CONFIG, TopicSpec, reply_topic
from tests.support import (
    ADMIN,
    OWNER,
    SERVICE,
    WorkerProcess,
    auth,
    enroll,
    eventually_async,
    produce,
    published_course,
    read_topic,
    user_enrolled_value,
)


async def test_a_student_enrolls_once_and_the_access_check_follows(
    http: aiohttp.ClientSession,
) -> None:
    course = await published_course(http)
    first = await enroll(http, course["id"], "student-a")
    assert first.status == 201, await first.text()
    body = await first.json()
    assert body["status"] == "active" and body["user_id"] == "student-a"
    assert body["progress"]["total_items"] == 1
    assert body["progress"]["next_item_id"] == course["modules"][0]["items"][0]["id"]
    assert (await enroll(http, course["id"], "student-a")).status == 200
    check = await http.get(f"/api/v1/courses/{course['id']}/enrollments/student-a", headers=SERVICE)
    assert check.status == 200
    missing = await http.get(f"/api/v1/courses/{course['id']}/enrollments/nobody", headers=SERVICE)
    assert missing.status == 404
    read = await (await http.get(f"/api/v1/courses/{course['id']}")).json()
    assert read["enrollment_count"] == 1


async def test_refusals_say_why(http: aiohttp.ClientSession) -> None:
    draft = await (
        await http.post("/api/v1/courses/create", json={"title": "d"}, headers=OWNER)
    ).json()
    closed = await published_course(
        http,
        enrollment_closes_at="2020-01-01T00:00:00Z",
        enrollment_opens_at="2019-01-01T00:00:00Z",
    )
    full = await published_course(http, capacity=1)
    assert (await enroll(http, full["id"], "first")).status == 201
    for course_id, kind in (
        (closed["id"], "enrollment-closed"),
        (full["id"], "course-full"),
    ):
        response = await enroll(http, course_id, "student-b")
        assert response.status == 409
        assert (await response.json())["type"].endswith(f"/{kind}")
    # A draft does not exist for a student (as on a read); an admin is told why.
    as_student = await enroll(http, draft["id"], "student-b")
    assert as_student.status == 404
    assert (await as_student.json())["type"].endswith("/course-not-found")
    as_admin = await http.post(
        f"/api/v1/courses/{draft['id']}/enroll",
        json={"user_id": "student-b"},
        headers=ADMIN,
    )
    assert as_admin.status == 409
    assert (await as_admin.json())["type"].endswith("/course-not-published")
    assert (await enroll(http, str(uuid.uuid4()), "student-b")).status == 404


async def test_fifty_concurrent_enrollments_into_ten_seats_make_exactly_ten(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await published_course(http, capacity=10)
    responses = await asyncio.gather(*(enroll(http, course["id"], f"racer-{n}") for n in range(50)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(201) == 10
    assert statuses.count(409) == 40
    read = await (await http.get(f"/api/v1/courses/{course['id']}")).json()
    assert read["enrollment_count"] == 10
    conn = await asyncpg.connect(settings.database_url)
    try:
        count = await eventually_async(
            lambda: conn.fetchval(
                "SELECT count(*) FROM enrollments WHERE course_id = $1 HAVING count(*) = 10",
                course["id"],
            ),
            what="ten mirrored enrollments",
        )
        assert count == 10
    finally:
        await conn.close()


async def test_cancel_frees_the_seat_and_enrolling_again_works(http: aiohttp.ClientSession) -> None:
    course = await published_course(http, capacity=1)
    assert (await enroll(http, course["id"], "s1")).status == 201
    assert (await enroll(http, course["id"], "s2")).status == 409
    path = f"/api/v1/courses/{course['id']}/enrollments/s1"
    assert (await http.delete(path, headers=auth("s2", "student"))).status == 403
    assert (await http.delete(path, headers=auth("s1", "student"))).status == 204
    assert (await http.get(path, headers=ADMIN)).status == 404
    assert (await http.delete(path, headers=ADMIN)).status == 404
    assert (await enroll(http, course["id"], "s2")).status == 201
    assert (await enroll(http, course["id"], "s1")).status == 409


async def test_who_may_enroll_and_read(http: aiohttp.ClientSession) -> None:
    course = await published_course(http)
    url = f"/api/v1/courses/{course['id']}/enroll"
    assert (await http.post(url)).status == 401
    assert (await http.post(url, headers=OWNER)).status == 403
    assert (
        await http.post(url, json={"user_id": "other"}, headers=auth("s9", "student"))
    ).status == 403
    assert (await http.post(url, json={}, headers=SERVICE)).status == 422
    assert (await http.post(url, json={"user_id": "via-service"}, headers=SERVICE)).status == 201
    assert (await http.post(url, json={"user_id": "via-admin"}, headers=ADMIN)).status == 201
    read = f"/api/v1/courses/{course['id']}/enrollments/via-service"
    assert (await http.get(read, headers=auth("via-service", "student"))).status == 200
    assert (await http.get(read, headers=OWNER)).status == 200
    assert (await http.get(read, headers=auth("instructor-2", "instructor"))).status == 403
    assert (await http.get(read, headers=auth("someone", "student"))).status == 403


async def test_the_same_user_enrolled_three_times_makes_one_enrollment(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await published_course(http)
    value = await user_enrolled_value(settings, user_id="triple", course_id=course["id"])
    # Keyed by user (as another service might), delivered three times.
    await produce(settings, "user-enrolled", [(b"triple", value)] * 3)

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == course["id"].encode()]

    events = mine(await read_topic(settings, "enrollment-events", mine))
    assert len(events) == 1
    read = f"/api/v1/courses/{course['id']}/enrollments/triple"
    assert (await http.get(read, headers=ADMIN)).status == 200
    assert (await (await http.get(f"/api/v1/courses/{course['id']}")).json())[
        "enrollment_count"
    ] == 1


async def test_poisoned_records_go_to_the_dlq_and_the_stream_goes_on(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await published_course(http, capacity=1)
    marker = uuid.uuid4().hex
    await produce(
        settings,
        "user-enrolled",
        [
            (marker.encode(), b"not avro at all"),
            (
                marker.encode(),
                await user_enrolled_value(
                    settings, user_id=f"{marker}-u1", course_id=str(uuid.uuid4())
                ),
            ),
            (  # ids are copied into events and records: an absurd one is refused
                marker.encode(),
                await user_enrolled_value(
                    settings, user_id=f"{marker}-{'x' * 300}", course_id=course["id"]
                ),
            ),
            (
                marker.encode(),
                await user_enrolled_value(settings, user_id=f"{marker}-u2", course_id=course["id"]),
            ),
            (
                marker.encode(),
                await user_enrolled_value(settings, user_id=f"{marker}-u3", course_id=course["id"]),
            ),
        ],
    )

    def dead(records: list[Any]) -> list[Any]:
        return [
            r for r in records if r.key == marker.encode() or marker.encode() in (r.value or b"")
        ]

    dlq = dead(await read_topic(settings, "user-enrolled.dlq", lambda rs: len(dead(rs)) >= 4))
    # `dlq.reason` starts with its code: a refusal is told from a malformed record.
    reasons = sorted(dict(r.headers)["dlq.reason"].decode() for r in dlq)
    assert len(reasons) == 4
    malformed = [r for r in reasons if r.startswith("malformed: ")]
    assert len(malformed) == 2 and "malformed: user_id over 200 characters" in malformed
    undecodable = next(r for r in malformed if "user_id" not in r)
    assert any(word in undecodable for word in ("magic", "truncated", "unknown"))
    assert reasons[2].startswith("refused: course-full: ")
    assert reasons[3].startswith("refused: course-not-found: ")
    assert sorted(dict(r.headers)["dlq.code"] for r in dlq) == [b"malformed"] * 2 + [b"refused"] * 2
    good = f"/api/v1/courses/{course['id']}/enrollments/{marker}-u2"
    assert (await http.get(good, headers=ADMIN)).status == 200
    metrics = await (await http.get("/metrics")).text()
    assert 'cms_dead_letters_total{reason="refused",topic="user-enrolled"}' in metrics
    assert 'cms_dead_letters_total{reason="malformed",topic="user-enrolled"}' in metrics


async def test_a_record_at_the_size_limit_is_dead_lettered_whole(
    http: aiohttp.ClientSession, settings: Settings, worker: WorkerProcess
) -> None:
    """Its dead letter (the record plus its reason) is over 1 MiB: the DLQ topics allow it,
    so the stream goes on instead of failing to publish the dead letter."""
    course = await published_course(http)
    marker = uuid.uuid4().hex.encode()
    garbage = marker + b"\xff" * (1_048_400 - len(marker))  # near the 1 MiB limit
    good = await user_enrolled_value(settings, user_id="after-the-giant", course_id=course["id"])
    await produce(settings, "user-enrolled", [(marker, garbage), (marker, good)])

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == marker]

    dead = mine(await read_topic(settings, "user-enrolled.dlq", lambda rs: len(mine(rs)) >= 1))
    assert dead[0].value == garbage  # whole
    access = f"/api/v1/courses/{course['id']}/enrollments/after-the-giant"
    await eventually_async(
        lambda: _status_is(http, access, 200), deadline_s=30, what="the next record applied"
    )
    assert worker.proc is not None and worker.proc.poll() is None


async def _status_is(http: aiohttp.ClientSession, path: str, status: int) -> bool:
    return (await http.get(path, headers=ADMIN)).status == status


async def test_a_reply_for_a_worker_that_is_gone_does_not_stall_the_course(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    """An input carries its asking worker's reply topic; that worker may have stopped (and
    deleted the topic) before the input is applied. The reply is dropped, not retried for
    ever, and a header naming any other topic is never answered."""
    course = await published_course(http)
    user = "asked-by-a-gone-worker"
    value = await user_enrolled_value(settings, user_id=user, course_id=course["id"])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for reply_to in ("course-management-replies-gone-worker", "course-events"):
            await producer.send_and_wait(
                "user-enrolled",
                value=value,
                key=course["id"].encode(),
                headers=[
                    ("cms-reply-to", reply_to.encode()),
                    ("cms-correlation-id", str(uuid.uuid4()).encode()),
                ],
            )
    finally:
        await producer.stop()
    started = asyncio.get_running_loop().time()
    after = await enroll(http, course["id"], "enrolled-right-after")
    took = asyncio.get_running_loop().time() - started
    assert after.status == 201, f"{after.status} after {took:.1f} s"
    access = f"/api/v1/courses/{course['id']}/enrollments/{user}"
    assert (await http.get(access, headers=ADMIN)).status == 200


async def test_ids_with_a_nul_character_are_422_naming_them(http: aiohttp.ClientSession) -> None:
    course = await published_course(http)
    enrolled = await http.post(
        f"/api/v1/courses/{course['id']}/enroll", json={"user_id": "a\x00b"}, headers=ADMIN
    )
    assert enrolled.status == 422
    assert [e["field"] for e in (await enrolled.json())["errors"]] == ["user_id"]


async def test_a_reply_topic_deleted_after_its_metadata_was_read_does_not_stall_replies(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publisher knows the reply topics from its last background reading. A worker
    that stops after it deletes a topic the publisher still believes in: its replies are
    dropped after a bounded wait, and the others in the same batch still arrive."""
    bootstrap = settings.kafka_bootstrap_servers
    gone, live = (
        reply_topic(f"gone-{uuid.uuid4().hex[:8]}"),
        reply_topic(f"live-{uuid.uuid4().hex[:8]}"),
    )
    specs = [TopicSpec(t, None, REPLY_TOPIC_CONFIG, partitions=1) for t in (gone, live)]
    await ensure_topics(bootstrap, specs, 1)
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    publisher = Publisher(bootstrap, codec)
    await publisher.start()
    # Nothing reads the topics again in the background here: the publisher goes on
    # trusting what it read when the topics first appeared in a reply.

    def reply(topic: str) -> Any:
        command_id = str(uuid.uuid4())
        value = {"command_id": command_id, "status": 0, "outcome": "applied", "body_json": None,
                 "consistency_token": None}  # fmt: skip
        return (topic, command_id, REPLY_SUBJECT, value)

    try:
        await publisher.send_replies([reply(gone), reply(live)])  # both topics now known
        await delete_topic(bootstrap, gone)
        last = reply(live)
        # A deadline, not a timing: unbounded, the send would wait for the topic for ever.
        await asyncio.wait_for(publisher.send_replies([reply(gone), last]), timeout=20)
        records = await read_topic(settings, live, lambda rs: len(rs) >= 2)
        assert records[-1].key == last[1].encode()
    finally:
        await publisher.stop()
        await delete_topic(bootstrap, live)

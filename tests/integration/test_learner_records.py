"""A learner's record through cancel and re-enrolment, ratings, the ETag, dead letters, and
a replay of the source topics from the beginning (issue 11), on the real stack."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.infra.kafka import topic_partitions
from course_management.ops.provisioning import register_schemas
from course_management.topology import (
    APP_ID,
    COURSE_COMMANDS,
    COURSE_PROGRESS,
    ROUTER_GROUP,
    USER_ENROLLED,
)
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

TWO_ITEMS = {
    "title": "Week 1",
    "position": 0,
    "items": [
        {"type": "lesson", "title": "Intro", "position": 0},
        {"type": "lesson", "title": "Check", "position": 1},
    ],
}


async def _progress(
    http: aiohttp.ClientSession, course_id: str, user: str, item: str, status: str = "completed"
) -> aiohttp.ClientResponse:
    return await http.post(
        f"/api/v1/courses/{course_id}/progress",
        json={"item_id": item, "status": status, "score": None},  # lessons take none
        headers=auth(user, "student"),
    )


async def _rate(
    http: aiohttp.ClientSession, course_id: str, user: str, stars: int
) -> aiohttp.ClientResponse:
    return await http.post(
        f"/api/v1/courses/{course_id}/ratings",
        json={"stars": stars, "review": f"{stars} stars"},
        headers=auth(user, "student"),
    )


async def _cancel(http: aiohttp.ClientSession, course_id: str, user: str) -> int:
    r = await http.delete(
        f"/api/v1/courses/{course_id}/enrollments/{user}", headers=auth(user, "student")
    )
    return r.status


async def test_cancel_and_re_enrol_keep_the_record_and_complete_once(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    """Findings 1, 2 and 9: progress, completion and the rating survive a re-enrolment;
    `course_completed` is published once; the mirror keeps every transition."""
    course = await published_course(http, modules=[TWO_ITEMS])
    cid = course["id"]
    items = [i["id"] for i in course["modules"][0]["items"]]
    assert (await enroll(http, cid, "learner")).status == 201
    for item in items:
        assert (await _progress(http, cid, "learner", item)).status == 200
    for stars in (5, 3):
        assert (await _rate(http, cid, "learner", stars)).status == 200
    assert await _cancel(http, cid, "learner") == 204
    refused = await _progress(http, cid, "learner", items[0])
    assert refused.status == 409
    assert (await refused.json())["type"].endswith("/enrollment-cancelled")
    again = await enroll(http, cid, "learner")
    assert again.status == 201
    body = await again.json()
    assert body["status"] == "completed"
    assert body["progress"]["completed_items"] == 2 and body["progress"]["completed_at"]
    assert [i["status"] for i in body["progress"]["items"]] == ["completed", "completed"]
    assert [i["item_id"] for i in body["progress"]["items"]] == items
    rated = await (await _rate(http, cid, "learner", 1)).json()
    assert rated["course_rating"] == {"average": 1.0, "count": 1}
    read = await (
        await http.get(f"/api/v1/courses/{cid}/enrollments/learner", headers=SERVICE)
    ).json()
    assert read["progress"]["items"][0]["score"] is None
    assert read["progress"]["items"][0]["completed_at"] is not None

    events = await read_topic(
        settings,
        "enrollment-events",
        lambda rs: sum(r.key == cid.encode() for r in rs) >= 6,
    )
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    mine = [
        await codec.decode("enrollment-events-value", r.value)
        for r in events
        if r.key == cid.encode()
    ]
    assert [e["event_type"] for e in mine].count("course_completed") == 1
    conn = await asyncpg.connect(settings.database_url)
    try:
        transitions = await eventually_async(
            lambda: conn.fetch(
                "SELECT array_agg(status ORDER BY version) AS s FROM enrollment_transitions"
                " WHERE course_id = $1 AND user_id = 'learner' HAVING count(*) >= 4",
                cid,
            ),
            what="four transitions in the mirror",
        )
        assert list(transitions[0]["s"]) == ["enrolled", "completed", "cancelled", "enrolled"]
    finally:
        await conn.close()


async def test_the_ratings_list_pages_newest_first(http: aiohttp.ClientSession) -> None:
    course = await published_course(http)
    cid = course["id"]
    last_token = None
    for user, stars in (("r1", 4), ("r2", 5), ("r3", 2)):
        assert (await enroll(http, cid, user)).status == 201
        rated = await _rate(http, cid, user, stars)
        assert rated.status == 200
        last_token = rated.headers["Consistency-Token"]
    assert last_token
    url = f"/api/v1/courses/{cid}/ratings?limit=2"
    first = await (await http.get(url, headers={"Consistency-Token": last_token})).json()
    assert [r["user_id"] for r in first["items"]] == ["r3", "r2"]
    assert first["items"][0] == {
        "user_id": "r3",
        "stars": 2,
        "review": "2 stars",
        "rated_at": first["items"][0]["rated_at"],
    }
    assert first["next_cursor"]
    second = await (await http.get(f"{url}&cursor={first['next_cursor']}")).json()
    assert [r["user_id"] for r in second["items"]] == ["r1"] and second["next_cursor"] is None
    bad = await http.get(f"/api/v1/courses/{cid}/ratings?cursor=bm9wZQ")
    assert bad.status == 422 and (await bad.json())["errors"][0]["field"] == "cursor"
    out_of_range = await _rate(http, cid, "r1", 6)
    assert out_of_range.status == 422
    assert (await out_of_range.json())["errors"][0]["field"] == "stars"


async def test_the_etag_replies_and_events_carry_the_true_seat_count(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    """Finding 3."""
    course = await published_course(http)
    cid = course["id"]
    first = await http.get(f"/api/v1/courses/{cid}")
    etag = first.headers["ETag"]
    assert (await enroll(http, cid, "etag-student")).status == 201
    again = await http.get(f"/api/v1/courses/{cid}", headers={"If-None-Match": etag})
    assert again.status == 200 and (await again.json())["enrollment_count"] == 1
    assert again.headers["ETag"] != etag
    updated = await http.put(
        f"/api/v1/courses/{cid}/update",
        json={"title": "Renamed"},
        headers={**OWNER, "If-Match": again.headers["ETag"]},
    )
    assert updated.status == 200, await updated.text()
    assert (await updated.json())["enrollment_count"] == 1
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)

    async def update_event() -> dict[str, Any] | None:
        for r in await read_topic(settings, "course-events", lambda rs: True, deadline_s=5):
            if r.key == cid.encode():
                event = await codec.decode("course-events-value", r.value)
                if event["event_type"] == "course_updated":
                    return event
        return None

    event = await eventually_async(update_event, what="the course_updated event")
    assert event["course"]["enrollment_count"] == 1


async def test_a_rating_makes_no_course_version_so_the_instructors_edit_goes_through(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    """Issue 24, item 1 (decision 52): the instructor read version 1; a student rates (and
    re-rates); the course is still version 1, its read shows the rating with a new ETag,
    the edit with `If-Match: "1"` succeeds, `course-events` holds no event for the
    ratings, and the ratings list and catalog show the re-rating after its token."""
    word = "w" + uuid.uuid4().hex[:10]
    course = await published_course(http, title=f"Rated {word}")
    cid = course["id"]
    read = await http.get(f"/api/v1/courses/{cid}")
    etag = read.headers["ETag"]
    assert (await enroll(http, cid, "rating-student")).status == 201
    assert (await _rate(http, cid, "rating-student", 5)).status == 200
    again = await _rate(http, cid, "rating-student", 3)  # a re-rating: same count
    assert again.status == 200, await again.text()
    token = again.headers["Consistency-Token"]
    now = await http.get(f"/api/v1/courses/{cid}", headers={"Consistency-Token": token})
    body = await now.json()
    assert body["version"] == 1 and body["updated_at"] == course["updated_at"]
    assert body["rating"] == {"average": 3.0, "count": 1} and body["enrollment_count"] == 1
    assert now.headers["ETag"] == '"1.1.1.300"' and now.headers["ETag"] != etag
    modules = await http.get(f"/api/v1/courses/{cid}/modules", headers={"If-None-Match": etag})
    assert modules.status == 200 and modules.headers["ETag"] == now.headers["ETag"]
    listed = await http.get(f"/api/v1/courses/{cid}/ratings", headers={"Consistency-Token": token})
    assert [r["stars"] for r in (await listed.json())["items"]] == [3]
    catalog = await http.get(
        f"/api/v1/courses?q={word}",
        headers={"Consistency-Token": token},
    )
    assert catalog.status == 200, await catalog.text()
    [doc] = [c for c in (await catalog.json())["items"] if c["id"] == cid]
    assert doc["rating"] == {"average": 3.0, "count": 1}
    updated = await http.put(
        f"/api/v1/courses/{cid}/update",
        json={"title": "Edited after ratings"},
        headers={**OWNER, "If-Match": '"1"'},
    )
    assert updated.status == 200, await updated.text()
    edited = await updated.json()
    assert edited["version"] == 2 and edited["rating"] == {"average": 3.0, "count": 1}
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)

    async def events() -> list[dict[str, Any]] | None:
        found = []
        for r in await read_topic(settings, "course-events", lambda rs: True, deadline_s=5):
            if r.key == cid.encode():
                found.append(await codec.decode("course-events-value", r.value))
        return found if any(e["event_type"] == "course_updated" for e in found) else None

    seen = await eventually_async(events, what="the edit's course_updated")
    assert [(e["event_type"], e["version"]) for e in seen] == [
        ("course_created", 1),
        ("course_updated", 2),
    ]
    assert seen[1]["course"]["rating"] == {"average": 3.0, "count": 1}  # as read then


async def test_refused_api_requests_are_not_dead_lettered_but_other_services_are(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    """Finding 7: the caller of a 409 has its answer; a refused event from another
    service is kept, with a reason that says it was refused."""
    full = await published_course(http, capacity=1)
    marker = uuid.uuid4().hex
    assert (await enroll(http, full["id"], f"{marker}-first")).status == 201
    assert (await enroll(http, full["id"], f"{marker}-api")).status == 409
    other = await user_enrolled_value(settings, user_id=f"{marker}-other", course_id=full["id"])
    await produce(settings, "user-enrolled", [(marker.encode(), other)])
    dead = await read_topic(
        settings,
        "user-enrolled.dlq",
        lambda rs: any(marker.encode() in (r.value or b"") for r in rs),
    )
    mine = [r for r in dead if marker.encode() in (r.value or b"")]
    assert [r.key for r in mine] == [marker.encode()]  # only the other service's record
    assert dict(mine[0].headers)["dlq.reason"].startswith(b"refused: course-full")


async def _committed(settings: Settings, group: str, topics: list[str]) -> dict[Any, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        out = {}
        for topic in topics:
            for tp in await topic_partitions(settings.kafka_bootstrap_servers, topic):
                out[tp] = await consumer.committed(tp) or 0
        return out
    finally:
        await consumer.stop()


async def _end_offsets(settings: Settings, topics: list[str]) -> dict[Any, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        tps = [
            tp
            for topic in topics
            for tp in await topic_partitions(settings.kafka_bootstrap_servers, topic)
        ]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _rewind(settings: Settings, group: str, topics: tuple[str, ...]) -> int:
    """A group back to the beginning of its topics (the group is empty: its worker is
    stopped). Returns how many records will be replayed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        for topic in topics:
            tps.extend(await topic_partitions(settings.kafka_bootstrap_servers, topic))
        consumer.assign(tps)
        beginning = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(beginning[tp], "") for tp in tps})
        return sum(ends[tp] - beginning[tp] for tp in tps)
    finally:
        await consumer.stop()


@pytest.mark.rebalances
async def test_replaying_the_source_topics_from_the_beginning_changes_nothing(
    http: aiohttp.ClientSession, settings: Settings, worker: WorkerProcess
) -> None:
    """Finding 6: after enrol, progress, cancel, re-enrol and complete (through the API and
    from another service), the router's offsets are lost and every source record is read
    again, and the course agent's group too reads both its topics from the beginning
    (issue 22): no table, mirror row, seat count or event changes. (Runs with the tests that
    restart workers: it stops the session's.)"""
    course = await published_course(http, modules=[TWO_ITEMS], capacity=5)
    cid = course["id"]
    items = [i["id"] for i in course["modules"][0]["items"]]
    assert (await enroll(http, cid, "replayed")).status == 201
    assert (await _progress(http, cid, "replayed", items[0])).status == 200
    assert await _cancel(http, cid, "replayed") == 204
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    external = await user_enrolled_value(settings, user_id="replayed", course_id=cid)
    await produce(settings, "user-enrolled", [(b"someone-else", external)])
    path = f"/api/v1/courses/{cid}/enrollments/replayed"

    async def active() -> dict[str, Any] | None:
        r = await http.get(path, headers=SERVICE)
        return await r.json() if r.status == 200 else None

    await eventually_async(active, what="the re-enrolment from another service")
    assert (await _progress(http, cid, "replayed", items[1])).status == 200
    # Another learner, cancelled for good after more inputs than a window of recent event
    # ids would hold: a replay must not bring them back.
    assert (await enroll(http, cid, "gone")).status == 201
    for _ in range(40):
        assert (await _progress(http, cid, "gone", items[0], status="started")).status == 200
    assert await _cancel(http, cid, "gone") == 204

    inputs = f"{APP_ID}-enrollment-inputs"
    outputs = ["enrollment-events", "course-events", f"{APP_ID}-catalog"]

    async def quiet() -> bool:
        ends = await _end_offsets(
            settings, [USER_ENROLLED, COURSE_PROGRESS, inputs, COURSE_COMMANDS]
        )
        routed = await _committed(settings, ROUTER_GROUP, [USER_ENROLLED, COURSE_PROGRESS])
        applied = await _committed(settings, APP_ID, [inputs, COURSE_COMMANDS])
        return all(routed.get(tp, ends[tp]) >= ends[tp] for tp in routed) and all(
            applied[tp] >= ends[tp] for tp in applied
        )

    await eventually_async(quiet, deadline_s=120, what="every input routed and applied")
    conn = await asyncpg.connect(settings.database_url)
    try:

        async def state_via(client: aiohttp.ClientSession) -> tuple[Any, ...]:
            enrollment = await (await client.get(path, headers=SERVICE)).json()
            gone_path = f"/api/v1/courses/{cid}/enrollments/gone"
            gone = (await client.get(gone_path, headers=ADMIN)).status
            read = await (await client.get(f"/api/v1/courses/{cid}")).json()
            rows = await conn.fetch(
                "SELECT user_id, version, status, snapshot FROM enrollments"
                " WHERE course_id = $1 ORDER BY user_id",
                cid,
            )
            return enrollment, gone, read["enrollment_count"], [tuple(r) for r in rows]

        async def state() -> tuple[Any, ...]:
            return await state_via(http)

        before = await eventually_async(
            lambda: _settled(conn, cid, state), what="the mirror caught up"
        )
        produced = await _end_offsets(settings, outputs)
        assert before[1] == 404 and before[2] == 1
        assert before[0]["status"] == "completed"

        worker.stop()
        # The router's group and the course agent's, both from the beginning.
        assert await _rewind(settings, ROUTER_GROUP, (USER_ENROLLED, COURSE_PROGRESS)) > 0
        assert await _rewind(settings, APP_ID, (COURSE_COMMANDS, inputs)) > 0
        worker.start().wait_ready()
        await eventually_async(quiet, deadline_s=180, what="the replay routed and applied")
        async with aiohttp.ClientSession(base_url=worker.base_url) as fresh:
            metrics = await (await fresh.get("/metrics")).text()
            assert 'cms_inputs_skipped_total{reason="replayed"' in metrics  # re-forwards
            assert 'cms_inputs_skipped_total{reason="repeat"' in metrics  # the agent's own
            assert await state_via(fresh) == before
        assert await _end_offsets(settings, outputs) == produced  # no event at all
    finally:
        await conn.close()


async def _settled(conn: asyncpg.Connection, course_id: str, state: Any) -> Any:
    """The state once the mirror holds both learners at their final versions."""
    rows = await conn.fetch(
        "SELECT user_id, status FROM enrollments WHERE course_id = $1 ORDER BY user_id",
        course_id,
    )
    if [tuple(r) for r in rows] != [("gone", "cancelled"), ("replayed", "completed")]:
        return None
    return await state()

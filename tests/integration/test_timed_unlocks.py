"""Time locks against the real stack (issue 25, item 5): a date opens a module for every
learner it concerns with one `module_unlocked` milestone each, not before its moment,
also when the worker was down across the moment and when the course's partition moved
to another worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from course_management.config import Settings
from course_management.domain.records import EnrollmentRecord
from course_management.domain.times import parse_rfc3339, rfc3339
from course_management.infra.avro import AvroCodec
from course_management.infra.cache import CourseCache, CourseEntry, EnrollmentEntry
from course_management.ops.provisioning import register_schemas
from course_management.topology import APP_ID
from tests.support import (
    OWNER,
    WorkerProcess,
    auth,
    eventually,
    eventually_async,
    produce,
    read_topic,
)


def dated_modules(moment: datetime) -> list[dict[str, Any]]:
    return [
        {"title": "Now", "position": 0, "items": [{"type": "lesson", "title": "A", "position": 0}]},
        {
            "title": "Later",
            "position": 1,
            "unlock_at": rfc3339(moment),
            "items": [{"type": "lesson", "title": "B", "position": 0}],
        },
    ]


async def dated_course(
    client: aiohttp.ClientSession, base: str, seconds: float, learners: list[str]
) -> tuple[dict[str, Any], datetime]:
    moment = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    answer = await client.post(
        f"{base}/api/v1/courses/create",
        json={
            "title": f"Dated {uuid.uuid4().hex[:6]}",
            "status": "published",
            "modules": dated_modules(moment),
        },
        headers=OWNER,
    )
    assert answer.status == 201, await answer.text()
    course: dict[str, Any] = await answer.json()
    for user in learners:
        enrolled = await client.post(
            f"{base}/api/v1/courses/{course['id']}/enroll", headers=auth(user, "student")
        )
        assert enrolled.status == 201, await enrolled.text()
    return course, moment


async def milestones_of(
    settings: Settings, course_id: str, count: int, deadline_s: float = 90
) -> list[tuple[Any, dict[str, Any]]]:
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == course_id.encode()]

    records = mine(
        await read_topic(
            settings, "learner-milestones", lambda rs: len(mine(rs)) >= count, deadline_s
        )
    )
    return [(r, await codec.decode("learner-milestones-value", r.value)) for r in records]


def check_once_after(
    found: list[tuple[Any, dict[str, Any]]], learners: list[str], module_id: str, moment: datetime
) -> None:
    assert sorted(m["user_id"] for _, m in found) == sorted(learners)
    for record, milestone in found:
        assert milestone["event_type"] == "module_unlocked"
        assert milestone["module_id"] == module_id
        assert milestone["occurred_at"] >= moment  # not before its moment...
        assert record.timestamp >= moment.timestamp() * 1000  # ...nor published before


async def test_a_date_opens_a_module_for_each_learner_once_and_not_before(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    learners = ["d-1", "d-2", "d-3"]
    base = ""  # the session has the worker as its base URL
    course, moment = await dated_course(http, base, 6, learners)
    later = course["modules"][1]
    assert later["unlock_at"] == rfc3339(moment)
    item_b = later["items"][0]["id"]
    early = await http.post(
        f"/api/v1/courses/{course['id']}/progress",
        json={"item_id": item_b, "status": "started"},
        headers=auth("d-1", "student"),
    )
    assert early.status == 409, await early.text()
    assert rfc3339(moment) in (await early.json())["detail"]
    view = await (
        await http.get(f"/api/v1/courses/{course['id']}/enrollments/d-2", headers=OWNER)
    ).json()
    assert view["progress"]["modules"][1] == {
        "module_id": later["id"],
        "state": "locked",
        "unlocks_at": rfc3339(moment),
    }
    # a sentinel a little later: once its milestone is out, the timer has passed the first
    sentinel, _ = await dated_course(http, base, 9, ["d-sentinel"])

    found = await milestones_of(settings, course["id"], len(learners))
    check_once_after(found, learners, later["id"], moment)
    await milestones_of(settings, sentinel["id"], 1)
    assert len(await milestones_of(settings, course["id"], len(learners))) == len(learners)

    view = await (
        await http.get(f"/api/v1/courses/{course['id']}/enrollments/d-2", headers=OWNER)
    ).json()
    assert view["progress"]["modules"][1]["state"] == "unlocked"
    opened = await http.post(
        f"/api/v1/courses/{course['id']}/progress",
        json={"item_id": item_b, "status": "started"},
        headers=auth("d-1", "student"),
    )
    assert opened.status == 200, await opened.text()


async def alone_in_the_group(settings: Settings, members: int = 1) -> None:
    """The agent's group is stable with `members` members: no member that stopped still
    holds partitions (a static member that left keeps them until its session expires,
    as test_static_membership's does), so the live workers own every course."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})

    async def stable() -> bool:
        future = admin.describe_consumer_groups([APP_ID], request_timeout=20)[APP_ID]
        group = await asyncio.to_thread(future.result, 30)
        return bool(group.state == ConsumerGroupState.STABLE and len(group.members) == members)

    await eventually_async(stable, deadline_s=240, what=f"the agent's group with {members}")


def _past(moment: datetime) -> bool:
    return datetime.now(UTC) > moment + timedelta(seconds=1)


@pytest.mark.rebalances
async def test_a_date_that_passes_while_the_worker_is_killed_opens_after_its_restart(
    settings: Settings, worker: WorkerProcess
) -> None:
    learners = ["k-1", "k-2"]
    await alone_in_the_group(settings)
    async with aiohttp.ClientSession() as client:
        course, moment = await dated_course(client, worker.base_url, 5, learners)
    worker.kill()
    eventually(lambda: _past(moment), 30, "the moment passed with the worker down")
    worker.start().wait_ready()
    found = await milestones_of(settings, course["id"], len(learners))
    check_once_after(found, learners, course["modules"][1]["id"], moment)


@pytest.fixture
def other_worker(
    stack_env: dict[str, str], worker: WorkerProcess, workdir: Path
) -> Iterator[WorkerProcess]:
    other = WorkerProcess(stack_env, workdir, worker_id="test-worker-timer").start()
    try:
        yield other.wait_ready()
    finally:
        other.stop()
        other.keep_log()


@pytest.mark.rebalances
async def test_a_date_opens_on_the_worker_its_partition_moved_to(
    settings: Settings, worker: WorkerProcess, other_worker: WorkerProcess
) -> None:
    learners = ["p-1", "p-2"]
    await alone_in_the_group(settings, members=2)
    async with aiohttp.ClientSession() as client:
        course, moment = await dated_course(client, worker.base_url, 12, learners)
        worker.stop()  # every partition moves to the other worker
        try:

            async def ready_alone() -> bool:
                async with client.get(f"{other_worker.base_url}/readyz") as answer:
                    return answer.status == 200

            await eventually_async(ready_alone, deadline_s=60, what="the other worker ready")
            found = await milestones_of(settings, course["id"], len(learners))
            check_once_after(found, learners, course["modules"][1]["id"], moment)
            view = await (
                await client.get(
                    f"{other_worker.base_url}/api/v1/courses/{course['id']}/enrollments/p-1",
                    headers=OWNER,
                )
            ).json()
            assert view["progress"]["modules"][1]["state"] == "unlocked"
            assert parse_rfc3339(view["progress"]["modules"][1]["unlocks_at"]) == moment
        finally:
            worker.start().wait_ready()


async def test_redis_serves_a_drawn_view_only_until_its_time_lock_opens(
    settings: Settings,
) -> None:
    """infra/cache.py against real Redis: an enrolment's entry keeps the moment its view
    stops being true (`fresh_until`); the read script returns the view before it and the
    record (with the course's body, to draw it again) from it on, and an entry with
    `opened` grown replaces one of the same version (the timer's release)."""
    client = aioredis.from_url(settings.redis_url)
    cache = CourseCache(client)
    course_id = f"fu-{uuid.uuid4().hex}"
    course = {"id": course_id, "version": 2, "status": "published", "instructor": {"id": "i"}}
    record: EnrollmentRecord = {
        "course_id": course_id,
        "user_id": "s",
        "status": "active",
        "version": 1,
        "opened": ["m1"],
    }
    past, future = "2000-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z"
    try:
        entry = CourseEntry.of({**course, "enrollment_count": 1}, deleted=False, seq=1)
        await cache.put_entries([entry], [EnrollmentEntry(record, b'{"v":1}', 2, future)])
        _, hit = await cache.spend_and_get_enrollment(course_id, "s")
        assert hit is not None and hit.view == b'{"v":1}' and hit.record is None
        opened: EnrollmentRecord = {**record, "opened": ["m1", "m2"]}
        await cache.put_entries([], [EnrollmentEntry(opened, b'{"v":2}', 2, past)])
        found, hit = await cache.spend_and_get_enrollment(course_id, "s")
        assert hit is not None and hit.view is None and hit.record == opened
        assert found is not None and found.body is not None  # to draw the view again
    finally:
        await client.aclose()


@pytest.mark.crash
@pytest.mark.rebalances
@pytest.mark.parametrize("phase", ["unit-acked", "outbox-sent"])
async def test_a_milestone_comes_once_after_a_sigkill_between_decision_and_publication(
    phase: str, settings: Settings, worker: WorkerProcess
) -> None:
    """The completion that opens a module lands in its unit, then the worker is killed
    before (unit-acked) or while (outbox-sent) its outbox, the milestone included, goes
    out: the partition's next opener publishes it, and the same report sent again (a
    replay of the source topic) sends nothing new."""
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    await alone_in_the_group(settings)
    async with aiohttp.ClientSession() as client:
        answer = await client.post(
            f"{worker.base_url}/api/v1/courses/create",
            json={
                "title": f"Crash path {phase}",
                "status": "published",
                "modules": [
                    {**dated_modules(datetime.now(UTC))[0], "id": "first"},
                    {
                        "title": "Second",
                        "position": 1,
                        "prerequisite_module_ids": ["first"],
                        "items": [{"type": "lesson", "title": "B", "position": 0}],
                    },
                ],
            },
            headers=OWNER,
        )
        assert answer.status == 201, await answer.text()
        course = await answer.json()
        enrolled = await client.post(
            f"{worker.base_url}/api/v1/courses/{course['id']}/enroll",
            headers=auth("crash-walker", "student"),
        )
        assert enrolled.status == 201
    report = codec.encode(
        "course-progress-value",
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC),
            "user_id": "crash-walker",
            "course_id": course["id"],
            "item_id": course["modules"][0]["items"][0]["id"],
            "status": "completed",
            "score": None,
        },
    )
    worker.stop()
    await produce(settings, "course-progress", [(b"crash-walker", report)])
    worker.start({"TEST_CRASH_AT": f"{phase}:1"})

    def killed() -> bool:
        assert worker.proc is not None
        return worker.proc.poll() is not None

    eventually(killed, 90, f"the worker crashing at {phase}")
    assert f'"phase": "{phase}"' in worker.log_tail(200), "crashed elsewhere"
    worker.start().wait_ready()
    found = await milestones_of(settings, course["id"], 1)
    before = datetime.now(UTC) - timedelta(minutes=5)
    check_once_after(found, ["crash-walker"], course["modules"][1]["id"], before)
    await produce(settings, "course-progress", [(b"crash-walker", report)])  # a replay
    sentinel, _ = await dated_course_at(worker.base_url, settings)
    await milestones_of(settings, sentinel["id"], 1)  # the agent went past the replay
    again = await milestones_of(settings, course["id"], 1)
    assert {m["event_id"] for _, m in again} == {m["event_id"] for _, m in found}
    assert all(r.value == found[0][0].value for r, _ in again)  # repeats, byte for byte


async def dated_course_at(base: str, settings: Settings) -> tuple[dict[str, Any], datetime]:
    async with aiohttp.ClientSession() as client:
        return await dated_course(client, base, 2, ["sentinel-learner"])

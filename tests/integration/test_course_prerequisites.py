"""Course prerequisites against the real stack (issue 25, item 6; CONTRACT §5.1): an
enrolment before the required course is completed is a 409 `prerequisites-not-met`
naming it; the moment a completion is answered, an enrolment in a course on another
partition (and on another worker) is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.partitioner import murmur2

from course_management.config import Settings
from tests.support import (
    ONE_MODULE,
    OWNER,
    WorkerProcess,
    auth,
    enroll,
    published_course,
)


def partition_of(course_id: str, settings: Settings) -> int:
    return (murmur2(course_id.encode()) & 0x7FFFFFFF) % settings.topic_partitions


async def course_elsewhere(
    create: Any, required: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """A course requiring `required`, on another partition than it."""
    for _ in range(20):
        course: dict[str, Any] = await create(prerequisite_course_ids=[required["id"]])
        if partition_of(course["id"], settings) != partition_of(required["id"], settings):
            return course
    raise AssertionError("no course landed on another partition in 20 tries")


async def complete(
    client: aiohttp.ClientSession, base: str, course: dict[str, Any], user: str
) -> dict[str, Any]:
    answer = None
    for module in course["modules"]:
        for item in module["items"]:
            answer = await client.post(
                f"{base}/api/v1/courses/{course['id']}/progress",
                json={"item_id": item["id"], "status": "completed", "score": None},
                headers=auth(user, "student"),
            )
            assert answer.status == 200, await answer.text()
    assert answer is not None
    progress: dict[str, Any] = await answer.json()
    assert progress["completed_at"] is not None
    return progress


async def test_a_completion_answered_is_honoured_by_the_next_enrolment_at_once(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    basics = await published_course(http, title="Basics")

    async def create(**fields: Any) -> dict[str, Any]:
        return await published_course(http, title="Sequel", **fields)

    sequel = await course_elsewhere(create, basics, settings)
    assert sequel["prerequisite_course_ids"] == [basics["id"]]
    refused = await enroll(http, sequel["id"], "climber")
    assert refused.status == 409, await refused.text()
    problem = await refused.json()
    assert problem["type"].endswith("/prerequisites-not-met")
    assert basics["id"] in problem["detail"]

    assert (await enroll(http, basics["id"], "climber")).status == 201
    await complete(http, "", basics, "climber")
    accepted = await enroll(http, sequel["id"], "climber")  # at once: no wait, no retry
    assert accepted.status == 201, await accepted.text()
    other = await enroll(http, sequel["id"], "newcomer")
    assert other.status == 409


@pytest.fixture
def second(stack_env: dict[str, str], worker: WorkerProcess, workdir: Path) -> Any:
    other = WorkerProcess(stack_env, workdir, worker_id="test-worker-prereq").start()
    try:
        yield other.wait_ready()
    finally:
        other.stop()
        other.keep_log()


@pytest.mark.rebalances
async def test_a_completion_on_one_worker_is_honoured_by_an_enrolment_on_another(
    settings: Settings, worker: WorkerProcess, second: WorkerProcess
) -> None:
    """With two workers each owning some partitions, the required course and six sequels
    on other partitions: at least one sequel is decided by the other worker's agent (all
    six on the same worker as the required course: 1 in 64)."""
    async with aiohttp.ClientSession() as client:

        async def create(**fields: Any) -> dict[str, Any]:
            body = {"title": "Two", "status": "published", "modules": [ONE_MODULE], **fields}
            answer = await client.post(
                f"{worker.base_url}/api/v1/courses/create", json=body, headers=OWNER
            )
            assert answer.status == 201, await answer.text()
            created: dict[str, Any] = await answer.json()
            return created

        required = await create()
        sequels = [await course_elsewhere(create, required, settings) for _ in range(6)]
        answer = await client.post(
            f"{worker.base_url}/api/v1/courses/{required['id']}/enroll",
            headers=auth("hopper", "student"),
        )
        assert answer.status == 201
        await complete(client, worker.base_url, required, "hopper")
        for sequel in sequels:  # through the other worker's API, at once
            enrolled = await client.post(
                f"{second.base_url}/api/v1/courses/{sequel['id']}/enroll",
                headers=auth("hopper", "student"),
            )
            assert enrolled.status == 201, await enrolled.text()

"""Learning paths against the real stack (issue 25, CONTRACT §5.1 and §5.5): a locked
report refused over HTTP and dead-lettered from Kafka, `failed` below `min_score`, the
learner's state in reads, a `module_unlocked` milestone once, and every bad path a 422
naming its field that changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp

from course_management.config import Settings
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import (
    OWNER,
    auth,
    enroll,
    eventually_async,
    produce,
    published_course,
    read_topic,
)

M1 = {
    "title": "Basics",
    "position": 0,
    "items": [
        {"type": "lesson", "title": "Read", "position": 0},
        {
            "type": "quiz",
            "title": "Check",
            "position": 1,
            "max_score": 10,
            "completion": {"type": "min_score", "min_score": 6},
        },
    ],
}
M2 = {
    "title": "Advanced",
    "position": 1,
    "sequential": True,
    "items": [
        {"type": "lesson", "title": "Deep", "position": 0},
        {"type": "lesson", "title": "Deeper", "position": 1, "completion": {"type": "view"}},
    ],
}


async def gated_course(http: aiohttp.ClientSession) -> dict[str, Any]:
    """M2 requires M1 (prerequisites name module ids: create, then update)."""
    course = await published_course(http, title=f"Gated {uuid.uuid4().hex[:6]}", modules=[M1, M2])
    m1, m2 = course["modules"]
    modules = [
        {**M1, "id": m1["id"], "items": _with_ids(M1["items"], m1["items"])},
        {
            **M2,
            "id": m2["id"],
            "items": _with_ids(M2["items"], m2["items"]),
            "prerequisite_module_ids": [m1["id"]],
        },
    ]
    answer = await http.put(
        f"/api/v1/courses/{course['id']}/update", json={"modules": modules}, headers=OWNER
    )
    assert answer.status == 200, await answer.text()
    updated: dict[str, Any] = await answer.json()
    return updated


def _with_ids(items: list[dict[str, Any]], made: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**given, "id": m["id"]} for given, m in zip(items, made, strict=True)]


def ids(course: dict[str, Any]) -> tuple[str, str, str, str]:
    a, b, c, d = (i["id"] for m in course["modules"] for i in m["items"])
    return a, b, c, d


async def report(
    http: aiohttp.ClientSession, course_id: str, user: str, **body: Any
) -> aiohttp.ClientResponse:
    return await http.post(
        f"/api/v1/courses/{course_id}/progress", json=body, headers=auth(user, "student")
    )


async def test_a_path_over_http_locks_fails_unlocks_and_sends_one_milestone(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await gated_course(http)
    m1, m2 = (m["id"] for m in course["modules"])
    assert course["modules"][1]["prerequisite_module_ids"] == [m1]
    assert course["modules"][1]["sequential"] is True
    assert course["modules"][0]["items"][1]["completion"] == {"type": "min_score", "min_score": 6}
    read, quiz, deep, deeper = ids(course)
    assert (await enroll(http, course["id"], "walker")).status == 201

    locked = await report(http, course["id"], "walker", item_id=deep, status="started")
    assert locked.status == 409, await locked.text()
    problem = await locked.json()
    assert problem["type"].endswith("/item-locked") and m1 in problem["detail"]

    view = await (
        await http.get(f"/api/v1/courses/{course['id']}/enrollments/walker", headers=OWNER)
    ).json()
    progress = view["progress"]
    assert [(i["item_id"], i["locked"]) for i in progress["items"]] == [
        (read, False),
        (quiz, False),
        (deep, True),
        (deeper, True),
    ]
    assert progress["modules"] == [
        {"module_id": m1, "state": "unlocked", "unlocks_at": None},
        {"module_id": m2, "state": "locked", "unlocks_at": None},
    ]
    assert progress["next_item_id"] == read

    assert (await report(http, course["id"], "walker", item_id=read, status="completed")).ok
    failed = await (
        await report(http, course["id"], "walker", item_id=quiz, status="completed", score=4)
    ).json()
    assert [i["status"] for i in failed["items"]][:2] == ["completed", "failed"]
    assert failed["next_item_id"] == quiz and failed["modules"][1]["state"] == "locked"
    passed = await (
        await report(http, course["id"], "walker", item_id=quiz, status="completed", score=6)
    ).json()
    assert passed["modules"][1]["state"] == "unlocked" and passed["next_item_id"] == deep
    # sequential: the second item waits for the first
    second = await report(http, course["id"], "walker", item_id=deeper, status="started")
    assert second.status == 409 and deep in (await second.json())["detail"]
    assert (await report(http, course["id"], "walker", item_id=deep, status="completed")).ok
    done = await (
        await report(http, course["id"], "walker", item_id=deeper, status="started")
    ).json()
    assert done["percent"] == 100.0 and done["completed_at"] is not None
    # a worse retake takes nothing back
    worse = await (
        await report(http, course["id"], "walker", item_id=quiz, status="completed", score=1)
    ).json()
    assert worse["items"][1]["status"] == "completed" and worse["items"][1]["score"] == 6

    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == course["id"].encode()]

    records = mine(await read_topic(settings, "learner-milestones", lambda rs: bool(mine(rs))))
    milestones = [await codec.decode("learner-milestones-value", r.value) for r in records]
    assert [(m["event_type"], m["user_id"], m["module_id"]) for m in milestones] == [
        ("module_unlocked", "walker", m2)
    ]


async def test_a_locked_report_from_kafka_is_dead_lettered_and_changes_nothing(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await gated_course(http)
    read, _, deep, _ = ids(course)
    assert (await enroll(http, course["id"], "consumer")).status == 201
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    marker = uuid.uuid4().hex

    def value(item_id: str) -> bytes:
        return codec.encode(
            "course-progress-value",
            {
                "event_id": str(uuid.uuid4()),
                "occurred_at": datetime.now(UTC),
                "user_id": "consumer",
                "course_id": course["id"],
                "item_id": item_id,
                "status": "completed",
                "score": None,
            },
        )

    await produce(
        settings,
        "course-progress",
        [(marker.encode(), value(deep)), (marker.encode(), value(read))],
    )
    dlq = [
        r
        for r in await read_topic(
            settings, "course-progress.dlq", lambda rs: any(r.key == marker.encode() for r in rs)
        )
        if r.key == marker.encode()
    ]
    assert len(dlq) == 1
    assert dict(dlq[0].headers)["dlq.reason"].startswith(b"refused: item-locked")

    async def applied() -> dict[str, Any] | None:
        view = await (
            await http.get(f"/api/v1/courses/{course['id']}/enrollments/consumer", headers=OWNER)
        ).json()
        progress: dict[str, Any] = view["progress"]
        return progress if progress["completed_items"] == 1 else None

    progress = await eventually_async(applied, what="the unlocked report applied after")
    assert {i["item_id"]: i["status"] for i in progress["items"]}[deep] == "not_started"


async def test_every_bad_path_is_a_422_naming_its_field_and_changes_nothing(
    http: aiohttp.ClientSession,
) -> None:
    course = await gated_course(http)
    m1, m2 = course["modules"]
    lesson = {"type": "lesson", "title": "L", "position": 0}
    quiz = {"type": "quiz", "title": "Q", "position": 0, "max_score": 10}

    def two(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"id": m1["id"], "title": "A", "position": 0, "items": [lesson], **first},
            {"id": m2["id"], "title": "B", "position": 1, "items": [lesson], **second},
        ]

    cases = {
        "modules[0].prerequisite_module_ids": two(
            {"prerequisite_module_ids": [m2["id"]]}, {"prerequisite_module_ids": [m1["id"]]}
        ),
        "modules[1].prerequisite_module_ids": two({}, {"prerequisite_module_ids": [m2["id"]]}),
        "modules[1].prerequisite_module_ids ": two(
            {}, {"prerequisite_module_ids": ["module-of-another-course"]}
        ),
        "modules[0].unlock_after_days": two({"unlock_after_days": -1}, {}),
        "modules[0].items[0].completion": two(
            {"items": [{**lesson, "completion": {"type": "min_score", "min_score": 1}}]}, {}
        ),
        "modules[0].items[0].completion ": two(
            {"items": [{**quiz, "completion": {"type": "min_score", "min_score": 11}}]}, {}
        ),
        "modules[0].items[0].completion.type": two(
            {"items": [{**lesson, "completion": {"type": "watch"}}]}, {}
        ),
    }
    for field, modules in cases.items():
        answer = await http.put(
            f"/api/v1/courses/{course['id']}/update", json={"modules": modules}, headers=OWNER
        )
        assert answer.status == 422, (field, await answer.text())
        fields = [e["field"] for e in (await answer.json())["errors"]]
        assert any(f.startswith(field.strip()) for f in fields), (field, fields)
    itself = await http.put(
        f"/api/v1/courses/{course['id']}/update",
        json={"prerequisite_course_ids": [course["id"]]},
        headers=OWNER,
    )
    assert itself.status == 422
    assert [e["field"] for e in (await itself.json())["errors"]] == ["prerequisite_course_ids"]
    now = await (await http.get(f"/api/v1/courses/{course['id']}", headers=OWNER)).json()
    assert now["version"] == course["version"] and now["modules"] == course["modules"]


async def test_a_path_is_set_in_the_create_itself_with_module_ids_of_the_callers_choice(
    http: aiohttp.ClientSession,
) -> None:
    """Review of issue 25: prerequisites name module ids, so a create may name its
    modules by references of its own (the mirror keys modules by id across courses: the
    server's ids stay)."""
    course = await published_course(
        http,
        title="One request",
        modules=[
            {**M1, "id": "basics"},
            {**M2, "id": "advanced", "prerequisite_module_ids": ["basics"]},
        ],
    )
    basics, advanced = course["modules"]
    assert "basics" not in (basics["id"], advanced["id"])  # references, not ids
    assert advanced["prerequisite_module_ids"] == [basics["id"]]
    assert (await enroll(http, course["id"], "early")).status == 201
    view = await (
        await http.get(f"/api/v1/courses/{course['id']}/enrollments/early", headers=OWNER)
    ).json()
    assert [m["state"] for m in view["progress"]["modules"]] == ["unlocked", "locked"]
    twice = await http.post(
        "/api/v1/courses/create",
        json={"title": "Twice", "modules": [{**M1, "id": "same"}, {**M2, "id": "same"}]},
        headers=OWNER,
    )
    assert twice.status == 422
    assert [e["field"] for e in (await twice.json())["errors"]] == ["modules[1].id"]

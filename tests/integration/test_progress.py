"""Progress against the real stack: sums, next item through a course edit, one completion."""

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

TWO_ITEMS = {
    "title": "M1",
    "position": 0,
    "items": [
        {"type": "lesson", "title": "Read", "position": 0},
        {"type": "quiz", "title": "Check", "position": 1, "max_score": 10},
    ],
}


async def report(
    http: aiohttp.ClientSession, course_id: str, user: str, **body: Any
) -> aiohttp.ClientResponse:
    return await http.post(
        f"/api/v1/courses/{course_id}/progress", json=body, headers=auth(user, "student")
    )


async def test_progress_adds_up_through_a_course_edit_and_completes_once(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await published_course(http, title="Progressive", modules=[TWO_ITEMS])
    read_id, quiz_id = (i["id"] for i in course["modules"][0]["items"])
    assert (await enroll(http, course["id"], "learner")).status == 201

    started = await report(http, course["id"], "learner", item_id=read_id, status="started")
    assert started.status == 200, await started.text()
    done = await (
        await report(http, course["id"], "learner", item_id=read_id, status="completed")
    ).json()
    assert (done["completed_items"], done["total_items"], done["percent"]) == (1, 2, 50.0)
    assert done["next_item_id"] == quiz_id and done["completed_at"] is None

    # The instructor adds an item: the percent drops, the next item is still the quiz.
    module = course["modules"][0]
    edited = await http.put(
        f"/api/v1/courses/{course['id']}/update",
        json={
            "modules": [
                {
                    **TWO_ITEMS,
                    "id": module["id"],
                    "items": [
                        {**TWO_ITEMS["items"][0], "id": read_id},
                        {**TWO_ITEMS["items"][1], "id": quiz_id},
                        {"type": "lesson", "title": "Extra", "position": 2},
                    ],
                }
            ]
        },
        headers=OWNER,
    )
    assert edited.status == 200
    view = await (
        await http.get(f"/api/v1/courses/{course['id']}/enrollments/learner", headers=OWNER)
    ).json()
    assert (view["progress"]["completed_items"], view["progress"]["total_items"]) == (1, 3)
    assert view["progress"]["percent"] == 33.33

    # The lists (read from the mirror) follow the edit too, once the mirror has the
    # progress event.
    async def listed(url: str) -> dict[str, Any] | None:
        body = await (await http.get(url, headers=auth("learner", "student"))).json()
        mine = [e for e in body.get("items", []) if e["course_id"] == course["id"]]
        return mine[0]["progress"] if mine and mine[0]["progress"]["completed_items"] else None

    for url in (
        f"/api/v1/courses/{course['id']}/enrollments",
        "/api/v1/users/learner/enrollments",
    ):
        progress = await eventually_async(lambda u=url: listed(u), deadline_s=10, what=url)
        assert (progress["completed_items"], progress["total_items"]) == (1, 3), url
        assert progress["percent"] == 33.33 and progress["next_item_id"] == quiz_id
        assert "completed_item_ids" not in progress
    assert view["progress"]["next_item_id"] == quiz_id
    extra_id = (await edited.json())["modules"][0]["items"][2]["id"]

    await report(http, course["id"], "learner", item_id=quiz_id, status="completed", score=9)
    final = await (
        await report(http, course["id"], "learner", item_id=extra_id, status="completed")
    ).json()
    assert (
        final["percent"] == 100.0
        and final["completed_at"] is not None
        and final["next_item_id"] is None
    )
    again = await (
        await report(http, course["id"], "learner", item_id=extra_id, status="completed")
    ).json()
    assert again["completed_at"] == final["completed_at"]

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key == course["id"].encode()]

    # created, started, read done, quiz done, extra done (+ completed), extra again
    records = mine(await read_topic(settings, "enrollment-events", lambda rs: len(mine(rs)) >= 7))
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    kinds = [
        (await codec.decode("enrollment-events-value", r.value))["event_type"] for r in records
    ]
    assert kinds == ["enrollment_created"] + ["progress_updated"] * 4 + [
        "course_completed",
        "progress_updated",
    ]
    assert kinds.count("course_completed") == 1
    assert kinds[0] == "enrollment_created"


async def test_progress_refusals_on_the_route(http: aiohttp.ClientSession) -> None:
    course = await published_course(http, title="Strict", modules=[TWO_ITEMS])
    item = course["modules"][0]["items"][0]["id"]
    stranger = await report(http, course["id"], "stranger", item_id=item, status="started")
    assert stranger.status == 404  # not-enrolled is 404 on every route (issue 24)
    assert (await stranger.json())["type"].endswith("/not-enrolled")
    assert (await enroll(http, course["id"], "member")).status == 201
    unknown = await report(http, course["id"], "member", item_id="no-such-item", status="started")
    assert unknown.status == 422
    assert (await unknown.json())["errors"][0]["field"] == "item_id"
    bad = await report(http, course["id"], "member", item_id=item, status="finished")
    assert bad.status == 422
    by_service = await http.post(
        f"/api/v1/courses/{course['id']}/progress",
        json={"item_id": item, "status": "completed", "user_id": "member", "score": None},
        headers=auth("assessment", "service"),
    )
    assert by_service.status == 200


async def test_a_score_is_checked_against_its_item_and_the_best_counts(
    http: aiohttp.ClientSession,
) -> None:
    """Issue 25, item 2, over HTTP: 5,000 on a quiz out of 10 and any score on a lesson
    are 422 naming `score`, changing nothing; of 9 and then 4, 9 counts."""
    course = await published_course(http, title="Scored", modules=[TWO_ITEMS])
    lesson_id, quiz_id = (i["id"] for i in course["modules"][0]["items"])
    assert (await enroll(http, course["id"], "scorer")).status == 201
    for item_id, score in ((quiz_id, 5000), (quiz_id, 10.01), (lesson_id, 3)):
        refused = await report(
            http, course["id"], "scorer", item_id=item_id, status="completed", score=score
        )
        assert refused.status == 422, await refused.text()
        assert [e["field"] for e in (await refused.json())["errors"]] == ["score"]
    for score in (9, 4):
        answer = await report(
            http, course["id"], "scorer", item_id=quiz_id, status="completed", score=score
        )
        assert answer.status == 200, await answer.text()
    progress = await answer.json()
    assert [(i["item_id"], i["score"]) for i in progress["items"]] == [
        (lesson_id, None),
        (quiz_id, 9),
    ]


async def test_consumed_progress_for_an_unknown_item_goes_to_the_dlq(
    http: aiohttp.ClientSession, settings: Settings
) -> None:
    course = await published_course(http, title="Consumed", modules=[TWO_ITEMS])
    assert (await enroll(http, course["id"], "reader")).status == 201
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    marker = uuid.uuid4().hex
    bad = codec.encode(
        "course-progress-value",
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC),
            "user_id": "reader",
            "course_id": course["id"],
            "item_id": f"missing-{marker}",
            "status": "completed",
            "score": None,
        },
    )
    good_item = course["modules"][0]["items"][1]["id"]  # the quiz: it takes a score
    too_high = codec.encode(  # issue 25, item 2: above the quiz's max_score of 10
        "course-progress-value",
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC),
            "user_id": "reader",
            "course_id": course["id"],
            "item_id": good_item,
            "status": "completed",
            "score": 5000.0,
        },
    )
    good = codec.encode(
        "course-progress-value",
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC),
            "user_id": "reader",
            "course_id": course["id"],
            "item_id": good_item,
            "status": "completed",
            "score": 1.0,
        },
    )
    await produce(
        settings,
        "course-progress",
        [(marker.encode(), bad), (marker.encode(), too_high), (marker.encode(), good)],
    )
    dlq = [
        r
        for r in await read_topic(
            settings, "course-progress.dlq", lambda rs: any(r.key == marker.encode() for r in rs)
        )
        if r.key == marker.encode()
    ]
    assert dict(dlq[0].headers)["dlq.reason"].startswith(b"refused: validation")

    async def both_refused() -> bool:
        found = await read_topic(
            settings,
            "course-progress.dlq",
            lambda rs: sum(r.key == marker.encode() for r in rs) >= 2,
        )
        return sum(r.key == marker.encode() for r in found) == 2

    await eventually_async(both_refused, what="the score above max_score dead-lettered too")

    async def completed() -> bool:
        view = await (
            await http.get(f"/api/v1/courses/{course['id']}/enrollments/reader", headers=OWNER)
        ).json()
        return bool(view["progress"]["completed_items"] == 1)

    assert await eventually_async(completed, what="the good record applied after the bad one")

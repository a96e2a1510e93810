"""Live event streams against the real stack (issue 28, item 1; CONTRACT §5.4), read with
httpx-sse (a client no one here wrote): every event of the course once, in each topic's
order; a reconnection with `Last-Event-ID` gets exactly what came after, on another
worker and across a SIGKILL; `?since=` starts at a moment; an idle stream gets comment
lines; the stream ends cleanly when the worker stops."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from httpx_sse import aconnect_sse

from course_management.config import Settings
from course_management.domain.stream_ids import StreamPosition, scope_of
from course_management.infra.avro import AvroCodec
from course_management.ops.provisioning import register_schemas
from tests.support import (
    OWNER,
    SERVICE,
    WorkerProcess,
    auth,
    enroll,
    published_course,
    read_topic,
)

TOPICS = ("course-events", "enrollment-events", "learner-milestones")
Seen = list[tuple[str, str, dict[str, Any]]]  # (id, event type, data)


async def read_stream(
    base_url: str,
    path: str,
    headers: dict[str, str],
    until: Callable[[Seen], bool],
    deadline_s: float = 30,
    last_id: str | None = None,
    opened: asyncio.Event | None = None,
) -> Seen:
    """Events of a stream until `until(seen)` (deadline), with httpx-sse."""
    seen: Seen = []
    if last_id is not None:
        headers = {**headers, "Last-Event-ID": last_id}
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0)) as client:

        async def take() -> None:
            async with aconnect_sse(client, "GET", path, headers=headers) as source:
                assert source.response.status_code == 200, await source.response.aread()
                if opened is not None:
                    opened.set()
                async for sse in source.aiter_sse():
                    if not sse.data:  # httpx-sse hands on the comment lines as empty events
                        continue
                    seen.append((sse.id, sse.event, json.loads(sse.data)))
                    if until(seen):
                        return

        await asyncio.wait_for(take(), deadline_s)
    return seen


async def course_records(settings: Settings, course_id: str, count: int) -> list[dict[str, Any]]:
    """Every event of the course on the three topics, decoded (at least `count`)."""
    codec = AvroCodec(settings.schema_registry_url)
    await register_schemas(codec)
    found: list[dict[str, Any]] = []
    for topic in TOPICS:
        records = await read_topic(settings, topic, lambda rs: True)
        for record in records:
            if record.key == course_id.encode():
                found.append(
                    {**await codec.decode(f"{topic}-value", record.value), "_topic": topic}
                )
    assert len(found) >= count
    return found


def ids_of(seen: Seen) -> list[str]:
    return [str(data["event_id"]) for _, _, data in seen]


async def changes(http: aiohttp.ClientSession, course_id: str, tag: str, n: int) -> None:
    """`n` learners enrolled, and the course renamed: 2n + 1 events at least."""
    for i in range(n):
        user = f"live-{tag}-{i}"
        assert (await enroll(http, course_id, user)).status == 201
    answer = await http.put(
        f"/api/v1/courses/{course_id}/update", json={"title": f"Live {tag}"}, headers=OWNER
    )
    assert answer.status == 200, await answer.text()


async def test_a_course_stream_resumes_exactly_after_its_last_event(
    http: aiohttp.ClientSession, worker: WorkerProcess, settings: Settings
) -> None:
    course = await published_course(http, title="Live")
    cid = course["id"]
    path = f"/api/v1/courses/{cid}/events"
    # from the course's beginning (`since` before it was created): its creation first
    since = (datetime.now(UTC) - timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    first = await read_stream(
        worker.base_url, f"{path}?since={since}", OWNER, lambda s: len(s) >= 1
    )
    assert first[0][1] == "course_created" and first[0][2]["course"]["id"] == cid
    reader = asyncio.create_task(
        read_stream(worker.base_url, path, SERVICE, lambda s: len(s) >= 3, last_id=first[-1][0])
    )
    await changes(http, cid, "a", 2)  # 2 enrolments (and their milestones, if any), 1 update
    seen = await reader
    # two topics: their events interleave as the tail fetches them
    assert sorted(t for _, t, _ in seen) == [
        "course_updated",
        "enrollment_created",
        "enrollment_created",
    ]
    # the stream is gone; more happens; a reconnection gets exactly the rest
    await changes(http, cid, "b", 3)
    rest = await read_stream(
        worker.base_url,
        path,
        OWNER,
        lambda s: "course_updated" in [t for _, t, _ in s] and len(s) >= 4,
        last_id=seen[2][0],
    )
    every = await course_records(settings, cid, 8)
    expected = [str(e["event_id"]) for e in every]
    got = ids_of(first) + ids_of(seen) + ids_of(rest)
    assert len(got) == len(set(got))  # nothing twice
    assert set(got) == set(expected)  # every event, and nothing never published
    # nothing skipped: each topic's events in their order, none missing up to the last
    for topic in TOPICS:
        # an event published again after a crash is one event (its first place)
        in_topic = list(dict.fromkeys(str(e["event_id"]) for e in every if e["_topic"] == topic))
        delivered = [i for i in got if i in in_topic]
        assert delivered == in_topic[: len(delivered)], topic
    # a learner's stream: that learner's events only
    learner = f"/api/v1/courses/{cid}/enrollments/live-b-0/events"
    mine = await read_stream(
        worker.base_url,
        f"{learner}?since={since}",
        auth("live-b-0", "student"),
        lambda s: len(s) >= 1,
    )
    assert {d["user_id"] for _, _, d in mine} == {"live-b-0"}


async def test_an_idle_stream_gets_comment_lines(
    worker: WorkerProcess, http: aiohttp.ClientSession
) -> None:
    course = await published_course(http, title="Quiet")
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{worker.base_url}/api/v1/courses/{course['id']}/events", headers=OWNER) as r,
    ):
        assert r.status == 200 and r.content_type == "text/event-stream"

        async def first_comment() -> bytes:
            # the course's own creation may come first: the reply can precede the event
            while not (line := await r.content.readline()).startswith(b":"):
                assert line, "the stream ended"
            return line

        line = await asyncio.wait_for(first_comment(), 20)
    assert line.startswith(b": ping")  # nothing happens: a comment keeps the stream open
    assert time.monotonic() - started < 20


async def test_a_bad_start_is_a_400_naming_it(http: aiohttp.ClientSession) -> None:
    course = await published_course(http, title="Refusals")
    path = f"/api/v1/courses/{course['id']}/events"
    answer = await http.get(path, headers={**OWNER, "Last-Event-ID": "not-an-id"})
    assert answer.status == 400 and (await answer.json())["errors"][0]["field"] == "Last-Event-ID"
    ahead = StreamPosition(scope_of(course["id"]), (10**12, 0, 0)).encode()  # never reached
    answer = await http.get(path, headers={**OWNER, "Last-Event-ID": ahead})
    assert answer.status == 400 and (await answer.json())["errors"][0]["field"] == "Last-Event-ID"
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    answer = await http.get(path, params={"since": future}, headers=OWNER)
    assert answer.status == 400 and (await answer.json())["errors"][0]["field"] == "since"
    assert (await http.get(path, headers=auth("nosy", "student"))).status == 403


@pytest.mark.rebalances
@pytest.mark.crash
async def test_a_stream_resumes_on_another_worker_and_after_a_sigkill(
    http: aiohttp.ClientSession,
    worker: WorkerProcess,
    settings: Settings,
    stack_env: dict[str, str],
    workdir: Path,
) -> None:
    course = await published_course(http, title="Live, killed")
    cid = course["id"]
    path = f"/api/v1/courses/{cid}/events"
    since = (datetime.now(UTC) - timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    first = await read_stream(
        worker.base_url, f"{path}?since={since}", OWNER, lambda s: len(s) >= 1
    )
    other = WorkerProcess(stack_env, workdir, worker_id="test-worker-live").start()
    try:
        other.wait_ready()
        await changes(http, cid, "c", 2)
        on_other = await read_stream(
            other.base_url, path, OWNER, lambda s: len(s) >= 3, last_id=first[-1][0]
        )
        # a clean stop ends the stream: the client sees its end, not an error
        ended: list[bool] = []
        opened = asyncio.Event()

        async def until_stopped() -> None:
            await read_stream(
                other.base_url,
                path,
                OWNER,
                lambda s: False,
                deadline_s=60,
                last_id=on_other[-1][0],
                opened=opened,
            )
            ended.append(True)

        reading = asyncio.create_task(until_stopped())
        await asyncio.wait_for(opened.wait(), 20)  # the stream is open (its headers came)
        assert await _connected(other)()
        other.stop()
        await asyncio.wait_for(reading, 30)
        assert ended == [True]
    finally:
        other.stop()
        other.keep_log()
    worker.kill()  # SIGKILL
    worker.start().wait_ready()
    # a new session: the shared one's pooled connections went with the killed process
    async with aiohttp.ClientSession(base_url=worker.base_url) as fresh:
        await changes(fresh, cid, "d", 2)
    after = await read_stream(
        worker.base_url,
        path,
        OWNER,
        lambda s: "course_updated" in [t for _, t, _ in s] and len(s) >= 3,
        last_id=on_other[-1][0],
        deadline_s=60,
    )
    got = ids_of(first) + ids_of(on_other) + ids_of(after)
    assert len(got) == len(set(got))
    every = await course_records(settings, cid, 7)
    assert set(got) == {str(e["event_id"]) for e in every}
    for topic in TOPICS:
        # an event published again after a crash is one event (its first place)
        in_topic = list(dict.fromkeys(str(e["event_id"]) for e in every if e["_topic"] == topic))
        delivered = [i for i in got if i in in_topic]
        assert delivered == in_topic[: len(delivered)], topic


def _connected(process: WorkerProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with aiohttp.ClientSession() as session:
            metrics = await (await session.get(f"{process.base_url}/metrics")).text()
        return any(
            line.startswith("cms_sse_streams_open ") and float(line.split()[1]) >= 1
            for line in metrics.splitlines()
        )

    return check

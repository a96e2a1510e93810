"""After the faults: wait until the service is quiet, then read what every store holds.

Quiet means every worker answers `/readyz` with 200, and every consumer group has
committed up to the end of every partition it reads (twice in a row, a few seconds
apart: Faust commits on an interval). The wait is bounded; what is still behind at the
deadline shows up as anomalies.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from chaos.verify import Observed
from course_management.config import Settings
from course_management.infra.avro import AvroCodec, AvroDecodeError
from course_management.infra.kafka import read_to_end
from course_management.ops.check import check
from course_management.ops.provisioning import register_schemas
from course_management.topology import (
    COURSE_EVENTS,
    COURSE_PROGRESS,
    DLQ_TOPICS,
    ENROLLMENT_EVENTS,
    ENROLLMENT_INPUTS,
    LEARNER_MILESTONES,
    REQUEST_ID_HEADER,
    USER_ENROLLED,
    spec,
)

INPUT_TOPICS = (USER_ENROLLED, COURSE_PROGRESS, ENROLLMENT_INPUTS)


async def group_lag(bootstrap: str) -> dict[str, int]:
    """Each consumer group's records not yet committed (end minus committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = [g[0] for g in await admin.list_consumer_groups()]
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            committed[group] = {tp: m.offset for tp, m in offsets.items() if m.offset >= 0}
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        every = {tp for offsets in committed.values() for tp in offsets}
        ends = await consumer.end_offsets(list(every)) if every else {}
    finally:
        await consumer.stop()
    return {
        group: sum(max(0, ends[tp] - offset) for tp, offset in offsets.items())
        for group, offsets in committed.items()
    }


async def wait_quiet(
    bootstrap: str, urls: Iterable[str], deadline_s: float
) -> tuple[bool, dict[str, Any]]:
    """(quiet, what was seen last) once quiet twice in a row, or at the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    quiet_before = False
    last: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        while loop.time() < end:
            ready = {url: await _ready(http, url) for url in urls}
            try:
                lag = await group_lag(bootstrap)
            except Exception as exc:
                lag = {"?": -1}
                last = {"error": repr(exc)}
            busy = {g: n for g, n in lag.items() if n != 0}
            last = {"ready": ready, "groups behind": busy}
            quiet = all(ready.values()) and not busy
            if quiet and quiet_before:
                return True, last
            quiet_before = quiet
            await asyncio.sleep(3)  # commits happen on an interval: look again
    return False, last


async def _ready(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=3)) as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


Events = list[dict[str, Any]]


async def read_events(
    settings: Settings, codec: AvroCodec
) -> tuple[Events, Events, Events, dict[str, list[str]], Events]:
    """Every course event, enrollment event and dead letter, as the checker needs them."""
    await register_schemas(codec)
    course: list[dict[str, Any]] = []
    enrollment: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    milestones: list[dict[str, Any]] = []
    subjects = {
        COURSE_EVENTS: course,
        ENROLLMENT_EVENTS: enrollment,
        LEARNER_MILESTONES: milestones,
    }
    inputs: dict[str, list[str]] = {}  # a value's sha256 -> where it is (for diagnosis)

    async def keep(records: list[ConsumerRecord]) -> None:
        for record in records:
            if record.topic in INPUT_TOPICS:
                where = f"{record.topic}/{record.partition}/{record.offset}"
                inputs.setdefault(hashlib.sha256(record.value or b"").hexdigest(), []).append(where)
            elif record.topic in subjects:
                value = await codec.decode(spec(record.topic).subject, record.value)
                headers = dict(record.headers or ())
                raw = headers.get(REQUEST_ID_HEADER)
                value["request_id"] = raw.decode() if raw else None
                value["partition"], value["offset"] = record.partition, record.offset
                value["timestamp_ms"] = record.timestamp
                subjects[record.topic].append(value)
            else:
                dead.append(await _dead_letter(codec, record))

    topics = [COURSE_EVENTS, ENROLLMENT_EVENTS, LEARNER_MILESTONES, *DLQ_TOPICS, *INPUT_TOPICS]
    await read_to_end(settings.kafka_bootstrap_servers, topics, keep)
    return course, enrollment, dead, inputs, milestones


async def _dead_letter(codec: AvroCodec, record: ConsumerRecord) -> dict[str, Any]:
    value = record.value or b""
    event_id = None
    try:
        decoded = await codec.decode(spec(record.topic.removesuffix(".dlq")).subject, value)
        event_id = decoded.get("event_id")
    except (AvroDecodeError, KeyError, ValueError):
        pass
    return {
        "topic": record.topic,
        "sha256": hashlib.sha256(value).hexdigest(),
        "event_id": event_id,
    }


async def observe(
    settings: Settings,
    url: str,
    admin_token: str,
    course_ids: set[str],
    learners: set[str],
    job_ids: set[str] = frozenset(),  # type: ignore[assignment]
) -> Observed:
    """Read the topics first, then the stores (a store can only be ahead if it is wrong)."""
    codec = AvroCodec(settings.schema_registry_url)
    course_events, enrollment_events, dead, inputs, milestones = await read_events(settings, codec)
    course_ids = course_ids | {e["course_id"] for e in course_events}
    learners = learners | {f"{e['course_id']}:{e['user_id']}" for e in enrollment_events}
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(base_url=url, headers=headers) as http:
        courses = {cid: await _get(http, f"/api/v1/courses/{cid}") for cid in sorted(course_ids)}
        enrollments = {}
        for key in sorted(learners):
            cid, user = key.split(":", 1)
            enrollments[key] = await _get(http, f"/api/v1/courses/{cid}/enrollments/{user}")
        catalog = {c["id"]: c for c in await _pages(http, "/api/v1/courses", {"category": "chaos"})}
        jobs = {}
        for job_id in sorted(job_ids):
            job = await _get(http, f"/api/v1/jobs/{job_id}")
            rows = await _pages(http, f"/api/v1/jobs/{job_id}/rows", {})
            jobs[job_id] = {"job": job, "rows": rows}
        ratings = {}
        for cid in sorted(course_ids):
            rows = await _pages(http, f"/api/v1/courses/{cid}/ratings", {})
            if rows:
                ratings[cid] = {r["user_id"]: r["stars"] for r in rows}
    conn = await asyncpg.connect(settings.database_url)
    try:
        mirror_courses = {
            r["id"]: {"version": r["version"]}
            for r in await conn.fetch("SELECT id, version FROM courses")
        }
        mirror_enrollments = {
            f"{r['course_id']}:{r['user_id']}": {
                "status": r["status"],
                "version": r["version"],
                "completed_items": r["completed_items"],
            }
            for r in await conn.fetch(
                "SELECT course_id, user_id, status, version, completed_items FROM enrollments"
            )
        }
    finally:
        await conn.close()
    differences = [d.shown() for d in await check(settings)]
    return Observed(
        course_events,
        enrollment_events,
        dead,
        courses,
        enrollments,
        mirror_courses,
        mirror_enrollments,
        catalog,
        ratings,
        differences,
        inputs,
        milestones,
        jobs,
    )


async def _get(http: aiohttp.ClientSession, path: str) -> dict[str, Any] | None:
    for _ in range(5):
        async with http.get(path) as response:
            if response.status == 404:
                return None
            if response.status == 200:
                return dict(await response.json())
        await asyncio.sleep(1)
    raise RuntimeError(f"GET {path} kept failing")


async def _pages(http: aiohttp.ClientSession, path: str, params: dict[str, str]) -> list[Any]:
    rows: list[Any] = []
    cursor = None
    while True:
        query = {**params, "limit": "100", **({"cursor": cursor} if cursor else {})}
        async with http.get(path, params=query) as response:
            if response.status == 404:
                return rows
            response.raise_for_status()
            page = await response.json()
        rows.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return rows


def shown(observed: Observed) -> dict[str, Any]:
    return asdict(observed)
